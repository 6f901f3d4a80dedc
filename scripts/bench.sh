#!/usr/bin/env bash
# `make bench`: one VM boot with vgpu and test_hmm loaded side by side; prints the migration
# throughput table (ours, test_hmm, memcpy, ratios). Not part of `make check`: timings under
# TCG vary between boots, so only figures from the same boot are compared. It runs on the bench
# kernel (the test kernel without its detectors, built on first use: about 7 minutes), with
# the modules built for it in build/modules-bench.
set -euo pipefail
. "$(dirname "$0")/env.sh"
vm_report bench BENCH 1500
