#!/usr/bin/env bash
# `make stress [SECONDS=N]`: one VM boot running vgpu_stress for N seconds (default 120):
# threads racing migrations to both GPUs and back, CPU and GPU reads and writes and
# evictions, every read checked; then the ioctl fuzzer vgpu_fuzz for N seconds more
# (`make stress SEED=S` repeats the seed a run printed).
# Judged like `make check`: any failed check, missed deadline or kernel splat (lockdep,
# KASAN, kmemleak...) fails it. `make check` runs the same tests for 4 s and 20 s.
set -euo pipefail
. "$(dirname "$0")/env.sh"
prepare_kernel
build_modules_and_tests
out="$SVM_TOP/build"
secs=${SECONDS_TO_RUN:-120}
SVM_SECONDS=$secs SVM_VM_TIMEOUT=$((2 * secs + 600)) bash "$SVM_TOP/scripts/vm.sh" stress "$KDIR" "$out"
python3 "$SVM_TOP/scripts/results.py" "$out/vm-stress.log" --expected <(printf '%s\n' vgpu_stress vgpu_fuzz)
