#!/usr/bin/env bash
# Configures and builds the test kernel (or, with the argument bench, the bench kernel:
# the same without the detectors) into the cache, keyed by kernel version,
# config fragment and toolchain, so a second run costs nothing. Also builds the
# kernel's own HMM selftest binary (hmm-tests) for the initramfs.
# Prints the build directory (KDIR) on stdout.
set -euo pipefail
. "$(dirname "$0")/env.sh"
. "$SVM_CACHE/setup.env"

# FLAVOUR: test (the default: with the detectors) or bench (without them).
flavour=${1:-test}
frag="$SVM_TOP/scripts/kernel.config"
case $flavour in
test) ;;
bench)
	# The fragment down to the marker; a release of its own, so that modules built for one
	# kernel are refused by the other (their layouts differ: lockdep grows every lock); and
	# none of the Rust checks (overflow checks are on by default).
	grep -qx -- '# --- test kernel only ---' "$frag" || die "no test-only marker in $frag"
	bench_frag=$(mktemp)
	trap 'rm -f "$bench_frag"' EXIT
	{
		sed '/^# --- test kernel only ---$/q' "$frag"
		echo 'CONFIG_LOCALVERSION="-bench"'
		echo '# CONFIG_RUST_OVERFLOW_CHECKS is not set'
	} >"$bench_frag"
	frag=$bench_frag
	;;
*) die "unknown kernel flavour '$flavour'" ;;
esac
key=$( { echo "$KVER"; rustc --version; echo "$SVM_LLVM"; cat "$frag"; } | sha256sum | cut -c1-16)
kdir="$SVM_CACHE/kernel/$KVER-$key"
kmake=(make -C "$KSRC" O="$kdir" LLVM="$SVM_LLVM" RUST_LIB_SRC="$RUST_LIB_SRC" -j"$SVM_JOBS")

# .done holds the hash of the patches the tree had (setup.sh): built again, incrementally,
# when they change.
if [ "$(cat "$kdir/.done" 2>/dev/null)" = "$KSRC_PATCHES" ]; then
	echo "$kdir"
	exit 0
fi

log "building kernel $KVER into $kdir (config key $key)"
mkdir -p "$kdir"
"${kmake[@]}" -s allnoconfig >&2
"$KSRC/scripts/kconfig/merge_config.sh" -m -O "$kdir" "$kdir/.config" "$frag" >/dev/null
"${kmake[@]}" -s olddefconfig >&2

# Kconfig silently drops options whose dependencies are missing: refuse that.
dropped=0
while IFS= read -r line; do
	case "$line" in CONFIG_*=*) ;; *) continue ;; esac
	if ! grep -qxF "$line" "$kdir/.config"; then
		echo "error: '$line' from $frag did not land in .config (have: $(grep -E "^(# )?${line%%=*}[= ]" "$kdir/.config" || echo nothing))" >&2
		dropped=1
	fi
done <"$frag"
[ "$dropped" = 0 ] || die "kernel configuration incomplete"

"${kmake[@]}" rustavailable >&2
"${kmake[@]}" >&2
"${kmake[@]}" -s headers_install INSTALL_HDR_PATH="$kdir/usr-headers" >&2
# The kernel's modules (xe and what it needs) for the VM, stripped; its modprobe indexes them.
rm -rf "$kdir/modroot"
"${kmake[@]}" -s modules_install INSTALL_MOD_PATH="$kdir/modroot" INSTALL_MOD_STRIP=1 \
	DEPMOD=true >&2

# The kernel's own HMM selftest, built unmodified and static.
selftests="$KSRC/tools/testing/selftests/mm"
(cd "$selftests" && gcc -static -O2 -I "$kdir/usr-headers/include" -I ../../../../ -I ../ \
	-I ../../../../tools/include -o "$kdir/hmm-tests" hmm-tests.c vm_util.c hugepage_settings.c -lpthread) >&2

echo "$KSRC_PATCHES" >"$kdir/.done"
log "kernel built: $kdir"
echo "$kdir"
