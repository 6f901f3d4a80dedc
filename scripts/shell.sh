#!/usr/bin/env bash
# `make shell`: the VM of `make run` (the modules loaded, vgpu num_devices=3 links=0-1) with an
# interactive shell (busybox sh) on its serial console, on this terminal; no time limit.
# Ending the shell (exit, Ctrl-D) or poweroff powers the VM off. The console is also logged
# to build/vm-shell.log. Stdin may be a pipe too: the shell reads what came meanwhile once it
# runs, but the first few bytes can be lost while the VM boots (its serial port is not set up
# yet), so lead piped commands with a few empty lines.
set -euo pipefail
. "$(dirname "$0")/env.sh"
prepare_kernel
build_modules_and_tests
SVM_VM_TIMEOUT=${SVM_VM_TIMEOUT:-0} SVM_BUDGET=${SVM_BUDGET:-86400} \
	bash "$SVM_TOP/scripts/vm.sh" shell "$KDIR" "$SVM_TOP/build"
