#!/usr/bin/env bash
# `make profile`: one VM boot with vgpu and test_hmm loaded side by side; samples the kernel
# (tests/kprof.c, perf cpu-clock on every CPU) during migrations back to system memory through
# each driver (tests/profile_migrate.c) and prints the top kernel symbols of each. Not part of
# `make check`: it explains the bench's figures, it does not judge them. Runs on the bench
# kernel, as make bench.
set -euo pipefail
. "$(dirname "$0")/env.sh"
vm_report profile PROFILE 900
