#!/usr/bin/env bash
# `make stress [SECONDS=N]`: one VM boot running vgpu_stress for N seconds (default 120):
# threads racing migrations to both GPUs and back, CPU and GPU reads and writes and
# evictions, every read checked. Judged like `make check`: any failed check or kernel splat
# (lockdep, KASAN, kmemleak...) fails it. `make check` runs the same test for 4 s.
set -euo pipefail
. "$(dirname "$0")/env.sh"
prepare_kernel
build_modules_and_tests
out="$SVM_TOP/build"
secs=${SECONDS_TO_RUN:-120}
SVM_SECONDS=$secs SVM_VM_TIMEOUT=$((secs + 600)) bash "$SVM_TOP/scripts/vm.sh" stress "$KDIR" "$out"
python3 "$SVM_TOP/scripts/results.py" "$out/vm-stress.log" --expected <(echo vgpu_stress)
