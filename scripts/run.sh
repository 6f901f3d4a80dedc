#!/usr/bin/env bash
# `make run`: the VM with the modules and the virtual GPUs loaded; prints what each GPU is
# (vgpu_info). There is no SVM demo yet (README).
set -euo pipefail
. "$(dirname "$0")/env.sh"
prepare_kernel
build_modules_and_tests
bash "$SVM_TOP/scripts/vm.sh" run "$KDIR" "$SVM_TOP/build"
