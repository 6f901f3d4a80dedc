#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian 12 machine, idempotently:
#   - build dependencies, clang/LLVM 19, QEMU and busybox from the system's own suite;
#   - the newest linux-source-7.3 (or a newer series, with a warning) and the
#     rust-src matching `rustc --version`, both arch-all packages downloaded
#     from trixie-backports and only unpacked into the cache, never installed;
#   - bindgen-cli, built by cargo into the cache.
# Writes $SVM_CACHE/setup.env with KSRC and RUST_LIB_SRC for the other scripts.
set -euo pipefail
. "$(dirname "$0")/env.sh"

mkdir -p "$SVM_CACHE"

# --- 1. Debian packages from the system's own suite ---------------------------
pkgs=(clang-19 lld-19 llvm-19 libclang-19-dev flex bison bc libelf-dev libssl-dev
      cpio qemu-system-x86 busybox-static rsync xz-utils make gcc libc6-dev patch)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- 2. A private apt view of trixie-backports (nothing installed from it) ----
# The archive's URI comes from the system's own sources, never from this repo.
archive_uri() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk '
			/^[[:space:]]*$/ { if (uri != "" && suites ~ /(^| )(bookworm|trixie|sid)( |$)/) { print uri; exit } uri=""; suites=""; next }
			/^URIs:/ { uri=$2 }
			/^Suites:/ { $1=""; suites=$0 }
			END { if (uri != "" && suites ~ /(^| )(bookworm|trixie|sid)( |$)/) print uri }' "$f"
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' "$f"
	done
}
uri=$(archive_uri | grep -v security | head -n 1)
[ -n "$uri" ] || die "no Debian archive URI found in /etc/apt sources"

aptdir="$SVM_CACHE/apt"
mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial" "$aptdir/parts"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri trixie-backports main" \
	>"$aptdir/sources.list"
aptopts=(-o APT::Sandbox::User=root -o "Dir::Etc::SourceList=$aptdir/sources.list" -o "Dir::Etc::SourceParts=$aptdir/parts"
	 -o "Dir::State::Lists=$aptdir/lists" -o "Dir::Cache=$aptdir/cache"
	 -o "APT::Get::List-Cleanup=0")
stamp="$aptdir/updated"
if [ ! -f "$stamp" ] || [ -n "$(find "$stamp" -mmin +720)" ] || [ -n "${SVM_REFRESH:-}" ]; then
	log "reading the trixie-backports index"
	apt-get "${aptopts[@]}" -qq update
	touch "$stamp"
fi

# Newest version of a package in the private view.
newest() { apt-cache "${aptopts[@]}" madison "$1" 2>/dev/null | awk -F'|' '{gsub(/ /,"",$2); print $2}' |
	sort -V | tail -n 1; }

# Unpacks package $1 at version $2 into $3 (once).
fetch_unpack() {
	local pkg=$1 ver=$2 dest=$3 deb
	[ -f "$dest/.done" ] && return 0
	rm -rf "$dest" && mkdir -p "$dest"
	(cd "$aptdir/cache/archives" && apt-get "${aptopts[@]}" -qq download "$pkg=$ver")
	deb=$(ls "$aptdir/cache/archives/${pkg}_"*.deb | head -n 1)
	dpkg-deb -x "$deb" "$dest"
	rm -f "$deb"
	touch "$dest/.done"
}

# Kernel source: newest 7.3.x; else the newest later series, with a warning.
series=$SVM_KERNEL_SERIES
kver=$(newest "linux-source-$series")
if [ -z "$kver" ]; then
	series=$(apt-cache "${aptopts[@]}" pkgnames linux-source- 2>/dev/null |
		sed -n 's/^linux-source-\([0-9]*\.[0-9]*\)$/\1/p' | sort -V |
		awk -v want="$SVM_KERNEL_SERIES" '{ split($0,a,"."); split(want,b,"."); if (a[1]>b[1] || (a[1]==b[1] && a[2]>b[2])) print }' | tail -n 1)
	[ -n "$series" ] || die "no linux-source-$SVM_KERNEL_SERIES or newer in trixie-backports"
	kver=$(newest "linux-source-$series")
	log "WARNING: linux-source-$SVM_KERNEL_SERIES is gone from the archive; using linux-source-$series $kver"
fi
ksrc_pkg="$SVM_CACHE/pkg/linux-source-$kver"
fetch_unpack "linux-source-$series" "$kver" "$ksrc_pkg"
tarball=$(ls "$ksrc_pkg"/usr/src/linux-source-*.tar.xz | head -n 1)
kname=$(basename "$tarball" .tar.xz)
ksrc="$SVM_CACHE/src/$kname-$kver"
if [ ! -f "$ksrc/.done" ]; then
	log "unpacking $kname ($kver)"
	rm -rf "$ksrc" && mkdir -p "$ksrc"
	tar -xJf "$tarball" -C "$ksrc" --strip-components=1
	touch "$ksrc/.done"
fi

# The tree the kernel is built from: that source with the patches the project applies
# (patches/apply/*.patch, in order: the xe backend API of xe_svm), in a copy of its own, made
# again whenever the patches change. The files of the directories the patches touch, now or in
# the version before, are made newer than any object built from them, so that an incremental
# build cannot keep an object of an earlier version of a patch.
patches=("$SVM_TOP"/patches/apply/*.patch)
phash=$(cat "${patches[@]}" | sha256sum | cut -c1-16)
psrc="$ksrc-patched"
if [ "$(cat "$psrc/.patched" 2>/dev/null)" != "$phash" ]; then
	log "applying ${#patches[@]} kernel patch(es) to a copy of $kname"
	new_dirs=$(sed -n 's|^+++ b/\([^[:space:]]*\)/[^/[:space:]]*.*$|\1|p' "${patches[@]}" | sort -u)
	old_dirs=$(cat "$psrc/.patched-dirs" 2>/dev/null || true)
	rm -rf "$psrc"
	cp -a "$ksrc" "$psrc"
	rm -f "$psrc/.done"
	for p in "${patches[@]}"; do
		patch -p1 -s -N -d "$psrc" <"$p" || die "$(basename "$p") does not apply to $kname"
	done
	for d in $(printf '%s\n' $new_dirs $old_dirs | sort -u); do
		[ ! -d "$psrc/$d" ] || find "$psrc/$d" -type f -exec touch {} +
	done
	printf '%s\n' $new_dirs >"$psrc/.patched-dirs"
	echo "$phash" >"$psrc/.patched"
fi

# rust-src equal to rustc's version.
rv=$(rustc_version)
rsver=$(apt-cache "${aptopts[@]}" madison rust-src 2>/dev/null | awk -F'|' '{gsub(/ /,"",$2); print $2}' |
	grep -E "^([0-9]+:)?${rv//./\\.}([+~-]|$)" | sort -V | tail -n 1 || true)
[ -n "$rsver" ] || die "no rust-src $rv in trixie-backports (rustc is $rv)"
rsdir="$SVM_CACHE/pkg/rust-src-$rsver"
fetch_unpack rust-src "$rsver" "$rsdir"
rust_lib_src=$(ls -d "$rsdir"/usr/src/rustc-*/library | head -n 1)
[ -d "$rust_lib_src" ] || die "rust-src $rsver has no library/ directory"

# --- 3. bindgen ----------------------------------------------------------------
if ! "$SVM_CACHE/tools/bin/bindgen" --version 2>/dev/null | grep -q "$SVM_BINDGEN_VERSION"; then
	log "building bindgen-cli $SVM_BINDGEN_VERSION"
	cargo install -q --locked --root "$SVM_CACHE/tools" bindgen-cli --version "$SVM_BINDGEN_VERSION"
fi

cat >"$SVM_CACHE/setup.env" <<EOF
KSRC=$psrc
KSRC_PATCHES=$phash
KVER=$kver
RUST_LIB_SRC=$rust_lib_src
LIBCLANG_PATH=/usr/lib/llvm-19/lib
EOF
log "set-up done: kernel $kver, rust-src $rsver, bindgen $SVM_BINDGEN_VERSION"
