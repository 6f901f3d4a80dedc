#!/bin/busybox sh
# /init of the test VM. The plan comes from the kernel command line: svm.mode=check|run|bench|stress
# (stress: svm.seconds=N).
# Every test program's output is framed by SVM-TEST-BEGIN/END lines for scripts/results.py,
# and the kernel log (KUnit results, splats) is dumped between SVM-DMESG-BEGIN/END at the end.
/bin/busybox --install -s /bin
export PATH=/bin:/tests
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs tmp /tmp
M=/lib/svm
mode=$(sed -n 's/.*svm\.mode=\([a-z]*\).*/\1/p' /proc/cmdline)
echo "SVM-BOOT-DONE mode=$mode"

# t NAME CMD...: runs one test program between markers.
t() {
	name=$1
	shift
	echo "SVM-TEST-BEGIN $name"
	"$@"
	echo "SVM-TEST-END $name rc=$?"
}

# load_stack [vgpu parameters...]
load_stack() {
	for m in drm_pagemap pagemap_util gpusvm; do
		insmod $M/$m.ko || echo "SVM-ERROR insmod $m failed"
	done
	insmod $M/vgpu.ko "$@" || echo "SVM-ERROR insmod vgpu failed"
}

unload_stack() {
	for m in vgpu gpusvm pagemap_util drm_pagemap; do
		[ -d /sys/module/$m ] || continue
		rmmod $m 2>/dev/null || { sleep 1; rmmod $m; } || echo "SVM-ERROR rmmod $m failed"
	done
}

if [ "$mode" = run ]; then
	load_stack
	/tests/vgpu_info
elif [ "$mode" = stress ]; then
	load_stack
	secs=$(sed -n 's/.*svm\.seconds=\([0-9]*\).*/\1/p' /proc/cmdline)
	VGPU_STRESS_SECONDS=${secs:-120} t vgpu_stress /tests/vgpu_stress
elif [ "$mode" = bench ]; then
	load_stack num_devices=1 vram_mib=160
	insmod $M/test_hmm.ko || echo "SVM-ERROR insmod test_hmm failed"
	/tests/bench_migrate
else
	load_stack
	t vgpu_basic /tests/vgpu_basic
	t vgpu_migrate /tests/vgpu_migrate
	t vgpu_vm /tests/vgpu_vm
	t vgpu_core /tests/vgpu_core
	t vgpu_stress /tests/vgpu_stress
	t module_lifecycle sh /tests/module_lifecycle.sh

	# The kernel's own HMM selftest, unmodified, against our stack (vgpu's dmirror nodes),
	# then against the C reference driver, for comparison. The lower modules stay loaded, so
	# their KUnit suites run once.
	[ -d /sys/module/vgpu ] && { rmmod vgpu || echo "SVM-ERROR rmmod vgpu failed"; }
	insmod $M/vgpu.ko hmm_dmirror=1 || echo "SVM-ERROR insmod vgpu hmm_dmirror=1 failed"
	t hmm-tests/vgpu /tests/hmm-tests -T benchmark_thp_migration
	unload_stack

	if insmod $M/test_hmm.ko; then
		t hmm-tests/test_hmm /tests/hmm-tests -T benchmark_thp_migration
		rmmod test_hmm || echo "SVM-ERROR rmmod test_hmm failed"
	else
		echo "SVM-ERROR insmod test_hmm failed"
	fi

	# Leaks: kmemleak reports objects unreferenced for at least 5 s.
	if [ -w /sys/kernel/debug/kmemleak ]; then
		sleep 6
		echo scan > /sys/kernel/debug/kmemleak
		echo "SVM-KMEMLEAK-BEGIN"
		cat /sys/kernel/debug/kmemleak
		echo "SVM-KMEMLEAK-END"
	fi
fi

echo "SVM-DMESG-BEGIN"
dmesg
echo "SVM-DMESG-END"
echo "SVM-RUN-END"
sync
reboot -f
