#!/usr/bin/env bash
# Builds the initramfs (busybox, the modules, test_hmm.ko, the test programs) and boots it
# under QEMU/TCG with a hard timeout. Usage: vm.sh MODE KDIR OUTDIR [MODDIR]
#   MODE is check, bounce (check's migrations again with every DMA mapping bounced through
#   swiotlb), run, shell (an interactive shell on the console: stdin is passed to it),
#   bench, profile, stress or deadline (the runner's own deadline check); the serial
#   log is kept in OUTDIR/vm-MODE.log. MODDIR holds the modules (default: the checkout's; the
#   bench's are built for the bench kernel in a directory of their own).
set -euo pipefail
. "$(dirname "$0")/env.sh"

mode=$1 kdir=$2 out=$3 moddir=${4:-$SVM_TOP}
timeout_s=${SVM_VM_TIMEOUT:-600}
# Every test program must have ended this many seconds after boot (vm-init.sh cuts each
# program's deadline to it), leaving time for the kernel log dump before the timeout.
budget_s=${SVM_BUDGET:-$((timeout_s - 120))}
root="$out/initramfs-$mode"
rm -rf "$root"
mkdir -p "$root"/{bin,lib/svm,tests,proc,sys,dev,tmp}

cp /bin/busybox "$root/bin/busybox"
install -m 0755 "$SVM_TOP/scripts/vm-init.sh" "$root/init"
for m in drm_pagemap pagemap_util gpusvm vgpu; do
	cp "$moddir/$m.ko" "$root/lib/svm/"
done
# xe_svm, and the kernel's own modules (xe and what it needs), where the kernel has them.
[ ! -f "$moddir/xe_svm.ko" ] || cp "$moddir/xe_svm.ko" "$root/lib/svm/"
if [ -d "$kdir/modroot/lib/modules" ]; then
	mkdir -p "$root/lib/modules"
	cp -a "$kdir/modroot/lib/modules/." "$root/lib/modules/"
fi
cp "$kdir/lib/test_hmm.ko" "$root/lib/svm/"
cp "$kdir/hmm-tests" "$out"/tests/* "$root/tests/"
cp "$SVM_TOP/tests/module_lifecycle.sh" "$root/tests/"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$out/initramfs-$mode.cpio.gz"

extra_append="" stdin=/dev/null
[ "$mode" = shell ] && stdin=/dev/stdin
[ "$mode" = bounce ] && extra_append=" swiotlb=force"
# The bench holds three GPUs' memory (3 x 320 MiB) and 256 MiB buffers of its own at once.
mem=3G
[ "$mode" = bench ] && mem=4G
log="$out/vm-$mode.log"
log "booting the VM ($mode), log in $log"
set +e
# QEMU itself writes the serial console to the log, unbuffered, so a hung or crashed guest
# leaves everything it printed.
rm -f "$log"
timeout --foreground -k 10 "$timeout_s" qemu-system-x86_64 -accel tcg -cpu max -m "$mem" -smp 2 \
	-display none -no-reboot -monitor none \
	-chardev stdio,id=console,logfile="$log",signal=off -serial chardev:console \
	-kernel "$kdir/arch/x86/boot/bzImage" -initrd "$out/initramfs-$mode.cpio.gz" \
	-append "console=ttyS0 panic=-1 oops=panic loglevel=5 log_buf_len=8M${extra_append} svm.mode=$mode svm.budget=$budget_s${SVM_SECONDS:+ svm.seconds=$SVM_SECONDS}${SVM_FUZZ_SEED:+ svm.seed=$SVM_FUZZ_SEED}${SVM_ONLY:+ svm.only=$SVM_ONLY}" \
	<"$stdin" | case $mode in run) stdbuf -oL tr -d '\r' ;; shell) cat ;; *) cat >/dev/null ;; esac
rc=${PIPESTATUS[0]}
set -e
# The serial log has CRLF line ends.
sed -i 's/\r$//' "$log"
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
	echo "SVM-VM-TIMEOUT after ${timeout_s}s" | tee -a "$log"
fi
exit 0
