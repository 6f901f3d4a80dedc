#!/bin/busybox sh
# /init of the test VM. The plan comes from the kernel command line:
# svm.mode=check|run|shell|bench|stress|deadline (stress: svm.seconds=N), svm.seed=N (the
# fuzzer's seed), svm.budget=SECONDS (when
# every test program must have ended, counted from boot).
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

# now: sets $up to the seconds since boot (no fork: the deadline loop runs it often).
now() {
	read -r up _ </proc/uptime
	up=${up%.*}
}

# Deadlines. Every test program gets LIMIT seconds (a generous multiple of its usual time
# under KASAN and TCG, measured on a loaded 2-core host: basic 1 s, migrate 1, vm 2, stress
# 5, fail_nth 4, fuzz 21, lifecycle 6, hmm-tests 90-130), never more than what is left of
# the run's budget, so that the
# run ends (dmesg dumped, verdict possible) well before vm.sh's timeout even if several
# programs hang. A task spinning in the kernel leaves no hung-task or lockup report on this
# preemptible kernel: the deadline is what catches it.
budget=$(sed -n 's/.*svm\.budget=\([0-9]*\).*/\1/p' /proc/cmdline)
budget=${budget:-480}
only=$(sed -n 's/.*svm\.only=\([^ ]*\).*/\1/p' /proc/cmdline)

# The fuzzer can avoid the call shapes of known open bugs (tests/vgpu_fuzz.c says which
# shapes). Items 1 and 2 of issue 7 are fixed and no longer avoided. Still avoided, open
# (README, "Open problems"): EVICT ("5"), because 7.3's migrate_device_pfns() does not pin
# the pages' anon_vmas, which a process exiting meanwhile frees under
# migrate_device_finalize (KASAN, seed 777). The fuzzer maps transparent huge pages, with the
# GPUs' default policy of base device pages (huge_folios=0: 2 MiB device folios shared by a
# fork lose references in 7.3's core, seed 1795330188). Take each off when it is fixed.
FUZZ_AVOID="VGPU_FUZZ_AVOID_ISSUE7=5"
# The fuzzer's seed: random unless the command line sets svm.seed (make check/stress SEED=N).
seed=$(sed -n 's/.*svm\.seed=\([0-9]*\).*/\1/p' /proc/cmdline)
FUZZ_AVOID="$FUZZ_AVOID${seed:+ VGPU_FUZZ_SEED=$seed}"

# alive PID: the process exists and is not a zombie.
alive() {
	read -r st 2>/dev/null </proc/$1/stat || return 1
	case "$st" in *") Z "*) return 1 ;; esac
	return 0
}

# session SID: the processes of session SID.
session() {
	want=$1
	for d in /proc/[0-9]*; do
		read -r st 2>/dev/null <$d/stat || continue
		set -- ${st##*) }
		[ "$4" = "$want" ] && [ "$1" != Z ] && printf '%s ' ${d#/proc/}
	done
}

# stacks SID: the kernel stack of every thread of every process of session SID (the test
# program and everything it forked), sampled three times half a second apart, as SVM-STACK
# blocks.
stacks() {
	for sample in 1 2 3; do
		for d in /proc/[0-9]*; do
			read -r st 2>/dev/null <$d/stat || continue
			set -- ${st##*) }
			[ "$4" = "$sid_" ] || continue
			for task in $d/task/*; do
				read -r tst 2>/dev/null <$task/stat || continue
				comm=${tst#*(}
				comm=${comm%%)*}
				set -- ${tst##*) }
				echo "SVM-STACK ${d#/proc/}/${task##*/} $comm state $1 sample $sample"
				if [ "$1" = R ]; then
					# A task on a CPU has no readable stack: move it to CPU 0 and
					# read from there, so that it is off its CPU when read.
					taskset -p 1 ${task##*/} >/dev/null 2>&1
					timeout 3 taskset 1 sed 's/^/SVM-STACK   /' $task/stack 2>/dev/null
				else
					sed 's/^/SVM-STACK   /' $task/stack 2>/dev/null
				fi
			done
		done
		[ $sample = 3 ] || sleep 0.5
	done
}

# t NAME LIMIT CMD...: runs one test program between markers, with a deadline (bounded).
t() {
	# svm.only=NAME,NAME:SUBTEST,... (make check ONLY=...) runs only those programs, or one
	# subtest of a program (`-t SUBTEST`): for development.
	if [ -n "$only" ]; then
		case ",$only," in
		*",$1,"*) ;;
		*",$1:"*)
			sub=${only#*"$1":}
			sub=${sub%%,*}
			set -- "$@" -t "$sub"
			;;
		*) return 0 ;;
		esac
	fi
	echo "SVM-TEST-BEGIN $1"
	bounded "$@"
	echo "SVM-TEST-END $1 rc=$rc secs=$elapsed"
	reset_knobs
}

# reset_knobs: every GPU's error injection and race wideners back to off, whatever the last
# program (killed at its deadline, or failing an assertion) left set.
reset_knobs() {
	for k in /sys/kernel/debug/vgpu*/fail_allocs /sys/kernel/debug/vgpu*/fail_copies \
		/sys/kernel/debug/vgpu*/copy_delay_ms /sys/kernel/debug/vgpu*/exclusive_delay_ms; do
		[ -w "$k" ] && echo 0 >"$k"
	done
	return 0
}

# bounded NAME LIMIT CMD...: runs CMD in a session of its own with a deadline of LIMIT
# seconds; sets $rc and $elapsed, returns $rc. On expiry: the kernel stacks of all its tasks,
# then SIGKILL to the whole session; processes that survive SIGKILL for 10 s are reported
# and left behind, and so are (killed) those the command leaves when it ends.
bounded() {
	name=$1 limit=$2
	shift 2
	now
	t0=$up
	left=$((budget - t0))
	[ "$limit" -gt "$left" ] && limit=$left
	elapsed=0
	if [ "$limit" -le 0 ]; then
		echo "SVM-DEADLINE $name 0s: the run's budget of ${budget}s is spent, not run"
		rc=124
		return $rc
	fi
	setsid "$@" &
	pid=$!
	now
	while alive $pid && [ $up -lt $((t0 + limit)) ]; do
		sleep 0.2
		now
	done
	if alive $pid; then
		echo "SVM-DEADLINE $name ${limit}s: still running, kernel stacks follow, then SIGKILL"
		sid_=$pid
		stacks
		kill -9 -$pid 2>/dev/null
		kill -9 $(session $pid) 2>/dev/null
		# Give SIGKILL 10 s to end every process of the session.
		now
		t1=$up
		while [ -n "$(session $pid)" ] && [ $up -lt $((t1 + 10)) ]; do
			sleep 0.2
			now
		done
		left=$(session $pid)
		if [ -n "$left" ]; then
			echo "SVM-DEADLINE-UNKILLABLE $name pids $left survived SIGKILL for 10s, stacks follow"
			stacks
			now
			rc=137 elapsed=$((up - t0))
			return $rc
		fi
	fi
	wait $pid
	rc=$?
	# What the program left running (a child stuck in the kernel...) fails the run too.
	left=$(session $pid)
	if [ -n "$left" ]; then
		echo "SVM-ERROR $name left processes behind: $left, stacks follow, then SIGKILL"
		sid_=$pid
		stacks
		kill -9 $left 2>/dev/null
	fi
	now
	elapsed=$((up - t0))
	return $rc
}

# Unloads vgpu, retrying for 10 s while its pagemaps stay cached, idle, after their last
# user (pagemap_util's idle_ms, 5 s). A command for `bounded`: sh -c "$RMMOD_VGPU".
RMMOD_VGPU='for i in $(seq 40); do rmmod vgpu 2>/dev/null && exit 0; sleep 0.25; done; rmmod vgpu'

# load_stack [vgpu parameters...]
load_stack() {
	for m in drm_pagemap pagemap_util gpusvm; do
		bounded insmod/$m 120 insmod $M/$m.ko || echo "SVM-ERROR insmod $m failed"
	done
	bounded insmod/vgpu 60 insmod $M/vgpu.ko "$@" || echo "SVM-ERROR insmod vgpu failed"
}

# huge_folios 0|1: every GPU's 2 MiB device folio policy (debugfs).
huge_folios() {
	for k in /sys/kernel/debug/vgpu*/huge_folios; do
		echo $1 >$k || echo "SVM-ERROR cannot set $k"
	done
}

# load_xe_svm: xe (which probes nothing here: no Intel GPU) and xe_svm on top of it; xe_svm's
# KUnit suite runs at insmod.
load_xe_svm() {
	depmod || echo "SVM-ERROR depmod failed"
	bounded modprobe/xe 120 modprobe xe || echo "SVM-ERROR modprobe xe failed"
	bounded insmod/xe_svm 120 insmod $M/xe_svm.ko || echo "SVM-ERROR insmod xe_svm failed"
}

unload_stack() {
	for m in xe_svm vgpu gpusvm pagemap_util drm_pagemap; do
		[ -d /sys/module/$m ] || continue
		[ $m = vgpu ] && { bounded rmmod/vgpu 30 sh -c "$RMMOD_VGPU" || echo "SVM-ERROR rmmod vgpu failed"; continue; }
		bounded rmmod/$m 30 rmmod $m 2>/dev/null || { sleep 1; bounded rmmod/$m 30 rmmod $m; } ||
			echo "SVM-ERROR rmmod $m failed"
	done
}

if [ "$mode" = run ] || [ "$mode" = shell ]; then
	# make run / make shell: the demo's GPUs, GPU0 and GPU1 linked, GPU2 alone. The KUnit
	# suites that run at insmod print deliberate warnings: kept off the console (they stay in
	# the kernel log; an oops still shows).
	dmesg -n 1
	load_stack num_devices=3 links=0-1
	dmesg -n 5
	/tests/vgpu_info
	if [ "$mode" = run ]; then
		t svm_demo 240 /tests/svm_demo
	else
		echo "vgpu loaded with num_devices=3 links=0-1; programs in /tests (on PATH): svm_demo,"
		echo "vgpu_info, the tests; modules in /lib/svm. exit, Ctrl-D or poweroff ends the VM."
		# The shell gets the console as its controlling tty (job control, ^C). It runs in
		# the foreground: a background job of this (non-interactive) shell would ignore
		# SIGINT. busybox's poweroff, reboot and halt would signal PID 1 (this script), which
		# waits for the shell: in the shell they are functions that power off at once.
		printf '%s() { sync; command reboot -f; }\n' poweroff reboot halt >/tmp/.shrc
		HOME=/ ENV=/tmp/.shrc PS1='vm:\w\$ ' setsid cttyhack sh
		sync
		reboot -f
	fi
elif [ "$mode" = stress ]; then
	load_stack huge_folios=1
	secs=$(sed -n 's/.*svm\.seconds=\([0-9]*\).*/\1/p' /proc/cmdline)
	secs=${secs:-120}
	t vgpu_stress $((secs * 2 + 60)) env VGPU_STRESS_SECONDS=$secs /tests/vgpu_stress
	huge_folios 0
	t vgpu_fuzz $((secs * 2 + 60)) env VGPU_FUZZ_SECONDS=$secs $FUZZ_AVOID /tests/vgpu_fuzz
elif [ "$mode" = bench ]; then
	# GPU0 for the table against test_hmm; GPUs 1 (linked to 0) and 2 (not) for the
	# device-to-device table.
	load_stack num_devices=3 links=0-1 vram_mib=320 huge_folios=1
	insmod $M/test_hmm.ko || echo "SVM-ERROR insmod test_hmm failed"
	/tests/bench_migrate
elif [ "$mode" = profile ]; then
	load_stack num_devices=1 vram_mib=320 huge_folios=1
	insmod $M/test_hmm.ko || echo "SVM-ERROR insmod test_hmm failed"
	echo 0 >/proc/sys/kernel/kptr_restrict
	echo -1 >/proc/sys/kernel/perf_event_paranoid
	echo "SVM-PROFILE-BEGIN"
	# Device->RAM by ioctl: 64 MiB of base pages 4 times, 2 MiB of THP 64 times.
	for args in "64 4 0" "2 64 1"; do
		for driver in vgpu test_hmm; do
			/tests/kprof 25 /tests/profile_migrate $driver $args
		done
	done
	echo "SVM-PROFILE-END"
elif [ "$mode" = bounce ]; then
	# Booted with swiotlb=force (vm.sh): every streaming DMA mapping the core makes for a
	# GPU bounces through swiotlb, so the copy engine works on bounce-buffer addresses and
	# 2 MiB folios are mapped page by page (a bounce buffer takes at most 256 KiB).
	load_stack huge_folios=1
	ev=/sys/kernel/tracing/events/swiotlb/swiotlb_bounced/enable
	mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
	echo 1 >$ev || echo "SVM-ERROR cannot trace swiotlb bounces"
	t vgpu_migrate/bounce 60 /tests/vgpu_migrate
	t vgpu_vm/bounce 60 /tests/vgpu_vm
	echo 0 >$ev
	bounced=$(grep -c swiotlb_bounced /sys/kernel/tracing/trace)
	echo "SVM-NOTE $bounced DMA mappings bounced"
	[ "$bounced" -gt 0 ] || echo "SVM-ERROR no DMA mapping bounced: the bounce run tested nothing"
elif [ "$mode" = deadline ]; then
	# The runner's own check of its deadline (`bash scripts/vm.sh deadline KDIR build`, not
	# part of make check): a program stuck in the kernel must be reported with its stacks,
	# killed, and the run must go on to its end.
	load_stack
	t deadline/hang 15 /tests/vgpu_fuzz --hang-on-purpose
	t deadline/after 30 /tests/vgpu_basic
else
	# 2 MiB device folios on for the targeted tests (so that the huge paths stay tested),
	# off for the fuzzer: they are not safe under its fork churn on 7.3 (README).
	load_stack huge_folios=1 hmm_dmirror=1
	t vgpu_basic 30 /tests/vgpu_basic
	load_xe_svm
	t xe_svm_uapi 60 /tests/xe_svm_uapi
	bounded rmmod/xe_svm 30 rmmod xe_svm || echo "SVM-ERROR rmmod xe_svm failed"
	t vgpu_migrate 60 /tests/vgpu_migrate
	t vgpu_vm 60 /tests/vgpu_vm
	t vgpu_core 60 /tests/vgpu_core
	t vgpu_stress 60 /tests/vgpu_stress
	t fail_nth 120 /tests/fail_nth
	huge_folios 0
	t vgpu_fuzz 90 env VGPU_FUZZ_SECONDS=20 $FUZZ_AVOID /tests/vgpu_fuzz
	t module_lifecycle 90 sh /tests/module_lifecycle.sh

	# Four GPUs on two interconnect islands.
	[ -d /sys/module/vgpu ] && { bounded rmmod/vgpu 30 sh -c "$RMMOD_VGPU" || echo "SVM-ERROR rmmod vgpu failed"; }
	bounded insmod/vgpu 60 insmod $M/vgpu.ko num_devices=4 links=0-1,2-3 vram_mib=32 ||
		echo "SVM-ERROR insmod vgpu num_devices=4 failed"
	# Before vgpu_multi, whose last subtests unplug GPU1.
	t vgpu_svm 180 /tests/vgpu_svm
	t vgpu_multi 120 /tests/vgpu_multi

	# The kernel's own HMM selftest, unmodified, against our stack (vgpu's dmirror nodes),
	# then against the C reference driver, for comparison. The lower modules stay loaded, so
	# their KUnit suites run once.
	[ -d /sys/module/vgpu ] && { bounded rmmod/vgpu 30 sh -c "$RMMOD_VGPU" || echo "SVM-ERROR rmmod vgpu failed"; }
	# links=none: test_hmm's devices are each their own owner, and hmm-tests' two-device
	# cases (hmm2) expect the other device's pages to be remote.
	bounded insmod/vgpu 60 insmod $M/vgpu.ko hmm_dmirror=1 huge_folios=1 links=none ||
		echo "SVM-ERROR insmod vgpu hmm_dmirror=1 failed"
	t hmm-tests/vgpu 240 /tests/hmm-tests -T benchmark_thp_migration
	unload_stack

	if bounded insmod/test_hmm 60 insmod $M/test_hmm.ko; then
		t hmm-tests/test_hmm 240 /tests/hmm-tests -T benchmark_thp_migration
		bounded rmmod/test_hmm 30 rmmod test_hmm || echo "SVM-ERROR rmmod test_hmm failed"
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
