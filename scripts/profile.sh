#!/usr/bin/env bash
# `make profile`: one VM boot with vgpu and test_hmm loaded side by side; samples the kernel
# (tests/kprof.c, perf cpu-clock on every CPU) during migrations back to system memory through
# each driver (tests/profile_migrate.c) and prints the top kernel symbols of each. Not part of
# `make check`: it explains the bench's figures, it does not judge them.
set -euo pipefail
. "$(dirname "$0")/env.sh"
prepare_kernel
build_modules_and_tests
out="$SVM_TOP/build"
SVM_VM_TIMEOUT=${SVM_VM_TIMEOUT:-900} bash "$SVM_TOP/scripts/vm.sh" profile "$KDIR" "$out"
log="$out/vm-profile.log"
if ! grep -q '^SVM-PROFILE-END' "$log"; then
	grep -E 'SVM-|BUG|WARNING|Oops' "$log" | tail -20 >&2
	die "profile did not complete; see $log"
fi
sed -n '/^SVM-PROFILE-BEGIN/,/^SVM-PROFILE-END/p' "$log" | sed '1d;$d'
