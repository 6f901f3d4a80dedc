#!/usr/bin/env bash
# `make run`: the VM with the modules and three virtual GPUs loaded (vgpu num_devices=3
# links=0-1: GPU0 and GPU1 linked, GPU2 alone); prints what each GPU is (vgpu_info), runs the
# SVM demo (tests/svm_demo.c), and powers off. The console is shown as it comes from the
# start of /init on, without the boot's kernel messages before it and the kernel log dumped
# at the end (the whole serial log is in build/vm-run.log). Fails if the demo failed or did
# not finish, or the log holds a kernel splat (judged by results.py, as make check's log).
set -euo pipefail
. "$(dirname "$0")/env.sh"
prepare_kernel
build_modules_and_tests
out="$SVM_TOP/build"
bash "$SVM_TOP/scripts/vm.sh" run "$KDIR" "$out" |
	sed -u -e '1,/^SVM-BOOT-DONE /d' -e '/^SVM-DMESG-BEGIN/,/^SVM-DMESG-END/d' \
		-e '/^SVM-\(TEST-BEGIN\|TEST-END\) /d' -e '/^SVM-RUN-END$/d' \
		-e '/\] reboot: Restarting system$/d'
vmlog="$out/vm-run.log"
if verdict=$(python3 "$SVM_TOP/scripts/results.py" "$vmlog" --expected <(echo svm_demo)); then
	log "make run: the demo passed (serial log: $vmlog)"
else
	grep -v '^  ok ' <<<"$verdict" >&2 || true
	die "make run: the demo failed (serial log: $vmlog)"
fi
