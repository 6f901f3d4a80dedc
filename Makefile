# SPDX-License-Identifier: GPL-2.0
#
#   make                 build the modules against the cached test kernel (set up on first use)
#   make KDIR=/path      build the modules against another built Rust-enabled kernel tree
#   make check           everything from a fresh machine: set-up, kernel, modules, VM, tests
#   make run             the VM with the modules and three virtual GPUs loaded: what each GPU
#                        is, then the SVM demo (tests/svm_demo.c); fails if the demo fails
#   make shell           the same VM with an interactive shell on the console (exit ends it)
#   make lint            rustfmt check and a CLIPPY=1 build with warnings as errors
#   make bench           migration throughput, ours against test_hmm and memcpy, one VM boot
#   make profile         where a migration back to RAM spends its time, ours and test_hmm's
#   make stress          vgpu_stress and vgpu_fuzz for SECONDS (default 120) each in one VM
#                        boot, judged like check; SEED=N repeats a fuzzer seed (check too)
#   make clean

SHELL := /bin/bash
TOP := $(CURDIR)
LLVM ?= -19
SVM_CACHE ?= $(HOME)/.cache/rust-svm
export SVM_CACHE

ifeq ($(KDIR),)
# The cached test kernel: set up and built on first use.
KDIR_CMD = bash $(TOP)/scripts/setup.sh >&2 && bash $(TOP)/scripts/build-kernel.sh
RUST_LIB_SRC_CMD = . $(SVM_CACHE)/setup.env && echo $$RUST_LIB_SRC
else
KDIR_CMD = echo $(KDIR)
RUST_LIB_SRC_CMD = echo $(RUST_LIB_SRC)
endif

KMAKE = kdir=$$($(KDIR_CMD)) && rls=$$($(RUST_LIB_SRC_CMD)) && \
	PATH="$(SVM_CACHE)/tools/bin:$(HOME)/.cargo/bin:$$PATH" \
	$(MAKE) -C $$kdir M=$(TOP) LLVM=$(LLVM) $${rls:+RUST_LIB_SRC=$$rls}

.PHONY: all modules check run shell lint bench profile stress clean

all: modules

modules:
	+@$(KMAKE) modules

check:
	+@SVM_FUZZ_SEED=$(SEED) SVM_ONLY=$(ONLY) bash scripts/check.sh

run:
	+@bash scripts/run.sh

shell:
	+@bash scripts/shell.sh

lint:
	+@bash scripts/lint.sh

bench:
	+@bash scripts/bench.sh

profile:
	+@bash scripts/profile.sh

stress:
	+@SECONDS_TO_RUN=$(SECONDS) SVM_FUZZ_SEED=$(SEED) bash scripts/stress.sh

clean:
	+@$(KMAKE) clean || true
	rm -rf build
