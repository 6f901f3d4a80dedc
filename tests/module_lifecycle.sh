#!/bin/sh
# Module lifecycle of vgpu, as KTAP: unload refused while in use, everything released on
# unload, bad parameters refused with a message, a second load with other parameters, each
# GPU's debugfs directory (there with the loaded bound, gone after unload), and the
# hmm_dmirror nodes: there with hmm_dmirror=1, holding the module while open, gone after.
M=/lib/svm
n=0
fail=0
pass() { n=$((n + 1)); echo "ok $n $1"; }
flunk() { n=$((n + 1)); echo "not ok $n $1"; fail=1; }
# expect NAME CMD...: CMD must succeed.
expect() { name=$1; shift; if "$@"; then pass "$name"; else flunk "$name"; fi; }
# refuse NAME CMD...: CMD must fail.
refuse() { name=$1; shift; if "$@"; then flunk "$name"; else pass "$name"; fi; }
# A GPU's pagemap (which holds the module) stays cached for pagemap_util's idle_ms (5 s)
# after its last user closes, then is destroyed from a work item: unloading within that
# time finds the module busy. Retried for 8 s.
unload() { for i in $(seq 80); do rmmod "$1" 2>/dev/null && return 0; usleep 100000; done; return 1; }
logged() { dmesg | grep -q "$1"; }
# vgpu_nodes: the render nodes whose device is one of vgpu's faux devices (not by number:
# other DRM drivers may hold any minor).
vgpu_nodes() {
	for d in /sys/class/drm/renderD*; do
		case "$(readlink "$d/device" 2>/dev/null)" in
		*/vgpu[0-9]*) echo "/dev/dri/${d##*/}" ;;
		esac
	done
}
node=$(vgpu_nodes | head -n 1)

echo "KTAP version 1"
# The plan: one test per expect/refuse line of this script.
echo "1..$(grep -c '^\(expect\|refuse\) ' "$0")"
expect found-a-render-node test -n "$node"
refuse unload-refused-while-open sh -c "exec 3<$node && rmmod vgpu"
expect unload-refused-while-migrated sh -c 'VGPU_UNLOAD_TEST=1 /tests/vgpu_migrate -t unload-refused-while-migrated >/tmp/u.log || { sed "s/^/# /" /tmp/u.log; exit 1; }'
expect unload unload vgpu
refuse vram-released grep -q vgpu /proc/iomem
refuse debugfs-released test -e /sys/kernel/debug/vgpu0
refuse no-render-node-left test -n "$(vgpu_nodes)"
refuse refuse-zero-devices insmod $M/vgpu.ko num_devices=0
refuse refuse-nine-devices insmod $M/vgpu.ko num_devices=9
expect refusal-explained logged "num_devices=9 is out of range"
refuse refuse-odd-vram insmod $M/vgpu.ko vram_mib=3
refuse refuse-long-timeslice-max insmod $M/vgpu.ko timeslice_max_ms=1001
refuse refuse-bad-links insmod $M/vgpu.ko links=0-2
expect links-refusal-explained logged 'links="0-2": "0-2" is not a pair'
refuse refuse-garbage-links insmod $M/vgpu.ko links=0-1,x
expect chain-load insmod $M/vgpu.ko num_devices=3 links=0-1,1-2
expect chain-groups sh -c 'dmesg | grep -q "vgpu2: links to 0x2, interconnect group 0x4" && dmesg | grep -q "vgpu0: links to 0x2, interconnect group 0x3"'
expect chain-unload unload vgpu
expect timeslice-refusal-explained logged "timeslice_max_ms=1001 is too long"
expect reload-three insmod $M/vgpu.ko num_devices=3 vram_mib=16 timeslice_max_ms=1000
expect reload-query sh -c 'VGPU_EXPECT_DEVICES=3 VGPU_EXPECT_VRAM_MIB=16 /tests/vgpu_basic -t query-device >/tmp/q.log || { sed "s/^/# /" /tmp/q.log; exit 1; }'
expect reload-debugfs-bound sh -c 'for i in 0 1 2; do test "$(cat /sys/kernel/debug/vgpu$i/timeslice_max_ms)" = 1000 || exit 1; done; test "$(cat /sys/kernel/debug/vgpu2/fail_allocs)" = 0'
expect reload-unload unload vgpu
refuse refuse-bad-dmirror insmod $M/vgpu.ko hmm_dmirror=2
expect dmirror-load insmod $M/vgpu.ko hmm_dmirror=1
expect dmirror-nodes sh -c 'test -c /dev/hmm_dmirror0 && test -c /dev/hmm_dmirror1 && ! test -e /dev/hmm_dmirror2'
refuse dmirror-unload-refused-while-open sh -c 'exec 3</dev/hmm_dmirror0 && rmmod vgpu'
expect dmirror-unload unload vgpu
refuse dmirror-nodes-gone test -e /dev/hmm_dmirror0
exit $fail
