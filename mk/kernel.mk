# mk/kernel.mk - tests on a real distribution kernel (IPVS, macvlan, the IPVS sync daemon) in a
# QEMU guest: Debian's linux-image booted by virtme-ng with the host's root filesystem.
#
#   kernel-deps   apt packages (KERNEL_DEBS) and the `kernel` extra (virtme-ng) in the venv
#   kernel-image  the package behind linux-image-amd64, unpacked (not installed) into KERNEL_DIR
#   test-kernel   both, then one guest boot running pytest tests/kernel; JUnit XML and daemon
#                 logs in artifacts/kernel; the guest's exit code is the target's
#
# KERNEL_PACKAGE=linux-image-6.1.0-57-amd64 pins a package; KVM=yes|no overrides the detection.

KERNEL_DEBS    := qemu-system-x86 busybox-static udev kmod ipvsadm keepalived nftables iproute2 procps
KERNEL_META    ?= linux-image-amd64
KERNEL_CACHE   ?= images/.build/kernel
KERNEL_PACKAGE ?= $(shell apt-cache depends $(KERNEL_META) 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$$/\1/p' | head -n1)
KERNEL_DIR     := $(KERNEL_CACHE)/$(KERNEL_PACKAGE)
KERNEL_ARTIFACTS ?= $(ARTIFACTS)/kernel
KERNEL_PYTEST_FLAGS ?=

.PHONY: kernel-deps kernel-image test-kernel

# Idempotent: installs only what is missing.
kernel-deps: venv
	@missing=$$(for p in $(KERNEL_DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "kernel-deps: apt-get install $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@[ -x $(VENV)/bin/vng ] || $(VENV)/bin/pip install --quiet -e '.[kernel]'

$(KERNEL_DIR)/.unpacked:
	@[ -n "$(KERNEL_PACKAGE)" ] || { echo "kernel-image: apt-cache knows no $(KERNEL_META)" >&2; exit 1; }
	rm -rf $(KERNEL_DIR) && mkdir -p $(KERNEL_DIR)
	cd $(KERNEL_DIR) && apt-get download $(KERNEL_PACKAGE) 2>/dev/null
	dpkg -x $(KERNEL_DIR)/$(KERNEL_PACKAGE)_*.deb $(KERNEL_DIR)
	rm -f $(KERNEL_DIR)/$(KERNEL_PACKAGE)_*.deb
	# the package's postinst would run depmod; unpacked, it is ours to run
	depmod -b $(KERNEL_DIR) $(patsubst linux-image-%,%,$(KERNEL_PACKAGE))
	touch $@

kernel-image: $(KERNEL_DIR)/.unpacked

test-kernel: kernel-deps kernel-image | $(ARTIFACTS)
	PATH="$(abspath $(VENV))/bin:$$PATH" PYTHON=$(PY) VNG=$(VENV)/bin/vng \
	  tests/kernel/vm.sh $(KERNEL_DIR) $(KERNEL_ARTIFACTS) $(KERNEL_PYTEST_FLAGS)
