#!/usr/bin/env bash
# `make run`: the VM with the modules and the virtual GPUs loaded, running the demo.
set -euo pipefail
. "$(dirname "$0")/env.sh"
bash "$SVM_TOP/scripts/setup.sh"
kdir=$(bash "$SVM_TOP/scripts/build-kernel.sh")
. "$SVM_CACHE/setup.env"
out="$SVM_TOP/build"
make -s -C "$kdir" M="$SVM_TOP" LLVM="$SVM_LLVM" RUST_LIB_SRC="$RUST_LIB_SRC" -j"$SVM_JOBS" modules
bash "$SVM_TOP/scripts/build-tests.sh" "$kdir" "$out/tests"
bash "$SVM_TOP/scripts/vm.sh" run "$kdir" "$out"
