# mk/kernel.mk - tests on a real distribution kernel (IPVS, macvlan, the IPVS sync daemon) in a
# QEMU guest: Debian's linux-image booted by virtme-ng with the host's root filesystem.
#
#   kernel-image  the package behind linux-image-amd64, unpacked (not installed) into KERNEL_CACHE
#   test-kernel   one guest boot running pytest tests/kernel; JUnit XML and daemon logs in
#                 artifacts/kernel; the guest's exit code is the target's
#   bench-kernel  one guest boot running bench/kernel_dataplane.py (BENCH_KERNEL_FLAGS): IPVS vs
#                 nftables vs direct throughput, vipkeeper's vs keepalived's checkers' CPU
#
# Both depend on `deps`: the apt packages are in deps/debian/kernel.txt, virtme-ng is the
# `kernel` extra of pyproject.toml. Which kernel package to use is asked of apt-cache only when
# one of these targets runs (tests/kernel/image.sh), never while make reads this file.
# KERNEL_PACKAGE=linux-image-6.1.0-57-amd64 pins a package; KVM=yes|no overrides the detection.

KERNEL_META    ?= linux-image-amd64
KERNEL_CACHE   ?= images/.build/kernel
KERNEL_PACKAGE ?=
KERNEL_ARTIFACTS ?= $(ARTIFACTS)/kernel
KERNEL_PYTEST_FLAGS ?=
KERNEL_IMAGE = sh tests/kernel/image.sh $(KERNEL_CACHE) $(KERNEL_META) $(KERNEL_PACKAGE)

BENCH_KERNEL_FLAGS ?=

.PHONY: kernel-image test-kernel bench-kernel

kernel-image: deps
	@$(KERNEL_IMAGE) >/dev/null

test-kernel: deps | $(ARTIFACTS)
	@kernel_dir=$$($(KERNEL_IMAGE)) && \
	PATH="$(abspath $(VENV))/bin:$$PATH" PYTHON=$(PY) VNG=$(VENV)/bin/vng \
	  tests/kernel/vm.sh $$kernel_dir $(KERNEL_ARTIFACTS) $(KERNEL_PYTEST_FLAGS)

bench-kernel: deps | $(ARTIFACTS)
	@kernel_dir=$$($(KERNEL_IMAGE)) && \
	PATH="$(abspath $(VENV))/bin:$$PATH" PYTHON=$(PY) VNG=$(VENV)/bin/vng VM_RUN=bench \
	  tests/kernel/vm.sh $$kernel_dir $(ARTIFACTS)/kernel-bench $(BENCH_KERNEL_FLAGS)
