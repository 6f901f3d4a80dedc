#!/usr/bin/env bash
# Builds the userspace test programs, static, for the VM. Usage: build-tests.sh KDIR OUTDIR
set -euo pipefail
. "$(dirname "$0")/env.sh"
kdir=$1 out=$2
ksrc=$(readlink -f "$kdir/source")
mkdir -p "$out"
# The kernel's own test_hmm uAPI header (lib/) is read from the kernel source, for the benchmark.
for src in "$SVM_TOP"/tests/*.c; do
	gcc -static -O2 -Wall -Wextra -Werror -I "$kdir/usr-headers/include" -I "$SVM_TOP/uapi" \
		-I "$ksrc/lib" -o "$out/$(basename "$src" .c)" "$src"
done
