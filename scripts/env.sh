# Shared settings for every script in scripts/ (sourced, not run).
#
# SVM_CACHE holds everything that is expensive to make and lives outside the
# checkout: downloaded packages, unpacked sources, tools and built kernels.

export PATH="$HOME/.cargo/bin:$PATH"

SVM_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SVM_CACHE=${SVM_CACHE:-$HOME/.cache/rust-svm}
SVM_LLVM=${SVM_LLVM:--19}
SVM_JOBS=${SVM_JOBS:-$(nproc)}
# Preferred kernel series; a newer one is used (with a warning) if it is gone.
SVM_KERNEL_SERIES=${SVM_KERNEL_SERIES:-7.3}
SVM_BINDGEN_VERSION=0.72.1

export SVM_TOP SVM_CACHE SVM_LLVM SVM_JOBS SVM_KERNEL_SERIES SVM_BINDGEN_VERSION
export PATH="$SVM_CACHE/tools/bin:$PATH"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

rustc_version() { rustc --version | awk '{print $2}'; }

# prepare_kernel [FLAVOUR]: sets up the machine and the kernel (test, the default, or bench;
# both cached), then sets KDIR and the variables of setup.env (KSRC, RUST_LIB_SRC).
prepare_kernel() {
	bash "$SVM_TOP/scripts/setup.sh"
	KDIR=$(bash "$SVM_TOP/scripts/build-kernel.sh" "${1:-test}")
	. "$SVM_CACHE/setup.env"
}

# Runs kbuild for the modules against KDIR with extra arguments (targets, CLIPPY=1...).
kbuild() {
	kbuild_in "$SVM_TOP" "$@"
}

# kbuild_in DIR ARGS...: kbuild for the modules whose sources are in DIR.
kbuild_in() {
	local dir=$1
	shift
	make -C "$KDIR" M="$dir" LLVM="$SVM_LLVM" RUST_LIB_SRC="$RUST_LIB_SRC" -j"$SVM_JOBS" "$@"
}

# Builds the modules and the test programs into $SVM_TOP/build/tests.
build_modules_and_tests() {
	kbuild -s modules
	bash "$SVM_TOP/scripts/build-tests.sh" "$KDIR" "$SVM_TOP/build/tests"
}

# The modules built for the bench kernel, in a copy of the sources of their own (bindings and
# objects depend on the kernel's configuration: the checkout's, made for the test kernel, are
# never shared).
BENCH_MODDIR="$SVM_TOP/build/modules-bench"

# Builds the modules against the bench kernel (KDIR) in BENCH_MODDIR.
build_bench_modules() {
	mkdir -p "$BENCH_MODDIR"
	# What git ignores is build output: not copied, and not deleted from the copy (so the
	# copy's own build is incremental). Files that changed get the time of the copy, not the
	# source's (an edit made while the copy's objects were built is newer than them).
	rsync -rlpD --checksum --delete --filter=':- .gitignore' --exclude /.git --exclude /build \
		"$SVM_TOP/" "$BENCH_MODDIR/"
	kbuild_in "$BENCH_MODDIR" -s modules
}

# vm_report MODE MARKER TIMEOUT: boots the VM in MODE (modules and tests built first) and
# prints what its log holds between SVM-MARKER-BEGIN and SVM-MARKER-END; fails if the end
# marker is missing. For the reports that are not tests (make bench, make profile): they run
# on the bench kernel, the test kernel without its detectors (KASAN, kmemleak, lockdep,
# DEBUG_VM, fault injection, Rust debug assertions), whose costs would be timed otherwise.
vm_report() {
	local mode=$1 marker=$2 timeout=$3 out="$SVM_TOP/build"
	prepare_kernel bench
	build_bench_modules
	bash "$SVM_TOP/scripts/build-tests.sh" "$KDIR" "$out/tests"
	SVM_VM_TIMEOUT=${SVM_VM_TIMEOUT:-$timeout} bash "$SVM_TOP/scripts/vm.sh" "$mode" "$KDIR" "$out" \
		"$BENCH_MODDIR"
	local vmlog="$out/vm-$mode.log"
	if ! grep -q "^SVM-$marker-END" "$vmlog"; then
		grep -E 'SVM-|BUG|WARNING|Oops' "$vmlog" | tail -20 >&2
		die "$mode did not complete; see $vmlog"
	fi
	sed -n "/^SVM-$marker-BEGIN/,/^SVM-$marker-END/p" "$vmlog" | sed '1d;$d'
}
