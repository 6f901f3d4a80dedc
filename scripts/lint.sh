#!/usr/bin/env bash
# `make lint`: rustfmt (with the kernel's .rustfmt.toml) and a CLIPPY=1 build of the modules
# that fails on any warning.
set -euo pipefail
. "$(dirname "$0")/env.sh"
prepare_kernel

mapfile -t files < <(cd "$SVM_TOP" && git ls-files '*.rs' 2>/dev/null || find . -name '*.rs' -not -name '*_generated.rs')
log "rustfmt --check (${#files[@]} files)"
(cd "$SVM_TOP" && rustfmt --check --edition 2021 --config-path "$KSRC/.rustfmt.toml" "${files[@]}")

log "clippy build"
kbuild -s clean >/dev/null
clog=$(mktemp)
kbuild CLIPPY=1 modules 2>&1 | tee "$clog"
rc=${PIPESTATUS[0]}
# Rebuild without clippy so the tree is left with ordinary objects.
kbuild -s clean >/dev/null
if [ "$rc" != 0 ] || grep -qE '^(warning|error)(\[|:)' "$clog"; then
	grep -E -A8 '^(warning|error)(\[|:)' "$clog" | head -100
	rm -f "$clog"
	die "lint: clippy or compiler warnings"
fi
rm -f "$clog"
log "lint clean"
