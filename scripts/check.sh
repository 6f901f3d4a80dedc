#!/usr/bin/env bash
# `make check`: set-up, test kernel, modules, test programs, the VM run and its verdict.
set -euo pipefail
. "$(dirname "$0")/env.sh"
t0=$(date +%s)

prepare_kernel
t1=$(date +%s)

out="$SVM_TOP/build"
mkdir -p "$out/tests"

log "runner self-tests"
python3 "$SVM_TOP/scripts/test_results.py"

log "building the modules and the test programs"
build_modules_and_tests
bash "$SVM_TOP/scripts/compile-fail.sh"
t2=$(date +%s)

bash "$SVM_TOP/scripts/vm.sh" check "$KDIR" "$out"
t3=$(date +%s)

log "set-up and kernel $((t1 - t0))s, modules and tests $((t2 - t1))s, VM $((t3 - t2))s"
# With ONLY=..., just the programs named there must report (KUnit suites run at insmod
# whatever ONLY says, and are checked when they do).
expected="$SVM_TOP/tests/expected"
if [ -n "${SVM_ONLY:-}" ]; then
	expected="$out/expected-only"
	printf '%s\n' ${SVM_ONLY//,/ } | sed 's/:.*//' >"$expected"
fi
rc=0
python3 "$SVM_TOP/scripts/results.py" "$out/vm-check.log" --expected "$expected" \
	--known-failures "$SVM_TOP/tests/known-failures" \
	--conformance hmm-tests/test_hmm=hmm-tests/vgpu | tee "$out/results-check.txt" || rc=1
[ -z "${SVM_ONLY:-}" ] || exit $rc

# The migrations again with every DMA mapping bounced (swiotlb=force): a second, short boot.
t3=$(date +%s)
bash "$SVM_TOP/scripts/vm.sh" bounce "$KDIR" "$out"
log "bounce run: VM $(($(date +%s) - t3))s"
python3 "$SVM_TOP/scripts/results.py" "$out/vm-bounce.log" \
	--expected "$SVM_TOP/tests/expected-bounce" | tee "$out/results-bounce.txt" || rc=1
# One summary line over both boots.
tail -n1 -q "$out/results-check.txt" "$out/results-bounce.txt" | awk '
	{ p += $1; f += $3; s += $5; k += $7 }
	END { printf "%d passed, %d failed, %d skipped, %d known failures\n", p, f, s, k }'
exit $rc
