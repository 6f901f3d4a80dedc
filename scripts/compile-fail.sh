#!/usr/bin/env bash
# Compile-fail checks (tests/compile_fail/*.rs): contracts the type system enforces, which no
# runtime test can show. Each file is built against the modules' crates with kbuild's own
# rustc command line for vgpu (from vgpu/.vgpu.o.cmd, so the modules must be built): once
# as is, which must compile (the control: the file is otherwise sound), and once with
# `--cfg svm_bad`, which must fail with the text of the file's `expect:` line.
set -euo pipefail
. "$(dirname "$0")/env.sh"

cmdfile="$SVM_TOP/vgpu/.vgpu.o.cmd"
[ -f "$cmdfile" ] || die "compile-fail: $cmdfile missing (build the modules first)"
cmd=$(sed -n 's|^savedcmd_vgpu/vgpu.o := ||p' "$cmdfile")
base=${cmd%% --out-dir *}
[ "$base" != "$cmd" ] || die "compile-fail: unexpected rustc command line in $cmdfile"
# As kbuild runs it (the kernel builds with unstable options on a stable compiler).
export RUSTC_BOOTSTRAP=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# compile FILE [EXTRA-FLAGS...]: rustc's output in $tmp/out; its exit status.
compile() {
	local file=$1
	shift
	# `base` is kbuild's own command line (shell words, quoted as kbuild quotes them); what
	# is added to it is quoted here.
	(cd "$SVM_TOP" && eval "$base --crate-name svm_compile_fail $(printf '%q ' \
		--out-dir "$tmp" --emit=metadata="$tmp/libsvm_compile_fail.rmeta" "$@" "$file")") \
		>"$tmp/out" 2>&1
}

n=0
for f in "$SVM_TOP"/tests/compile_fail/*.rs; do
	name=$(basename "$f" .rs)
	expect=$(sed -n 's|^//! expect: ||p' "$f")
	[ "$(printf '%s\n' "$expect" | wc -l)" = 1 ] && [ -n "$expect" ] ||
		die "compile-fail: $name needs exactly one expect: line"
	if ! compile "$f"; then
		cat "$tmp/out" >&2
		die "compile-fail: $name: the control (without --cfg svm_bad) does not compile"
	fi
	if compile "$f" --cfg svm_bad; then
		die "compile-fail: $name: compiles with --cfg svm_bad; expected: $expect"
	fi
	if ! grep -qF -- "$expect" "$tmp/out"; then
		cat "$tmp/out" >&2
		die "compile-fail: $name: fails, but not with: $expect"
	fi
	log "compile-fail: $name: $(grep -m1 -F -- "$expect" "$tmp/out")"
	n=$((n + 1))
done
log "compile-fail: $n of $n contracts refused as expected"
