#!/usr/bin/env bash
# `make bench`: one VM boot with vgpu and test_hmm loaded side by side; prints the migration
# throughput table (ours, test_hmm, memcpy, ratios). Not part of `make check`: timings under
# TCG vary between boots, so only figures from the same boot are compared.
set -euo pipefail
. "$(dirname "$0")/env.sh"
prepare_kernel
build_modules_and_tests
out="$SVM_TOP/build"
SVM_VM_TIMEOUT=${SVM_VM_TIMEOUT:-1500} bash "$SVM_TOP/scripts/vm.sh" bench "$KDIR" "$out"
log="$out/vm-bench.log"
if ! grep -q '^SVM-BENCH-END' "$log"; then
	grep -E 'SVM-|bench|BUG|WARNING|Oops' "$log" | tail -20 >&2
	die "benchmark did not complete; see $log"
fi
sed -n '/^SVM-BENCH-BEGIN/,/^SVM-BENCH-END/p' "$log" | sed '1d;$d'
