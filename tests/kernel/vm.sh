#!/usr/bin/env bash
# Boot Debian's kernel once under QEMU (virtme-ng) with the host's root filesystem and run
# tests/kernel inside it; the guest command's exit code is this script's exit code.
#
# Usage: tests/kernel/vm.sh KERNEL_DIR ARTIFACT_DIR [pytest args...]
#   KERNEL_DIR    where `dpkg -x` unpacked the linux-image package (boot/vmlinuz-*, lib/modules)
#   ARTIFACT_DIR  shared read-write with the guest: JUnit XML and daemon logs land there
# Environment: VNG (the vng command), PYTHON (the venv's interpreter), VM_TIMEOUT (seconds for
# the whole guest), VM_TEST_TIMEOUT (seconds per test), VM_MEMORY, KVM=auto|yes|no.
# The guest's pytest output is written to ARTIFACT_DIR/pytest.log as it runs (the console only
# shows it at the end).
#
# Python runs about 50x slower in the emulated guest: pytest loads only the plugins these tests
# use and no conftest above tests/kernel.
# Must never: run the tests on the host kernel (the guest sets VIPKEEPER_KERNEL_VM to the release
# it booted, and tests/kernel/conftest.py refuses to run anywhere else).
set -euo pipefail

kernel_dir=$(realpath "$1")
artifacts=$(realpath -m "$2")
shift 2
vng=${VNG:-.venv/bin/vng}
python=${PYTHON:-.venv/bin/python}
timeout_s=${VM_TIMEOUT:-2700}
memory=${VM_MEMORY:-1G}
per_test_timeout=${VM_TEST_TIMEOUT:-600}

vmlinuz=$(ls "$kernel_dir"/boot/vmlinuz-* | head -n1)
release=${vmlinuz##*/vmlinuz-}
[ -d "$kernel_dir/lib/modules/$release" ] || { echo "vm.sh: no modules for $release under $kernel_dir" >&2; exit 2; }

# /dev/kvm is only real hardware virtualization with vmx/svm; a kvm device without them (as on
# nested cloud VMs) hangs the guest at boot.
kvm_flag=--disable-kvm
case ${KVM:-auto} in
  yes) kvm_flag= ;;
  auto) if grep -qwE 'vmx|svm' /proc/cpuinfo && [ -w /dev/kvm ]; then kvm_flag=; fi ;;
esac

# Drivers the guest never needs: each costs boot time under emulation.
blacklist=kvm,kvm_amd,kvm_intel,ahci,libahci,libata,sr_mod,cdrom,sg,psmouse,ccp,aesni_intel
blacklist+=,sha512_ssse3,sha256_ssse3,sha1_ssse3,i2c_i801,lpc_ich,iTCO_wdt,pcspkr,evdev
blacklist+=,serio_raw,crc32c_intel,ghash_clmulni_intel,crct10dif_pclmul,crc32_pclmul,i6300esb
blacklist+=,button,intel_pmc_bxt,qemu_fw_cfg

mkdir -p "$artifacts"
extra=
[ $# -gt 0 ] && extra=$(printf '%q ' "$@")  # (an empty '' would make pytest collect the rootdir)
rm -f "$artifacts/junit.xml" "$artifacts/guest-ready" "$artifacts/pytest.log"
# ip_vs is loaded as a distribution would (modules-load.d): vipkeeper's `auto` backend looks
# for /proc/net/ip_vs. Schedulers (ip_vs_rr, ip_vs_mh, ...) load on first use.
guest_cmd="cd $(printf %q "$PWD") && \
export CI=$(printf %q "${CI:-}") PYTHONUNBUFFERED=1 VIPKEEPER_KERNEL_VM=$release VIPKEEPER_KERNEL_ARTIFACTS=$(printf %q "$artifacts") && \
date +%s > $(printf %q "$artifacts")/guest-ready && \
modprobe -a ip_vs macvlan veth && \
{ PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 $(printf %q "$python") -m pytest tests/kernel -v \
  -p pytest_asyncio.plugin -p pytest_timeout -p no:cacheprovider --confcutdir=tests/kernel \
  --timeout=$per_test_timeout --durations=0 --junitxml=$(printf %q "$artifacts")/junit.xml $extra \
  > $(printf %q "$artifacts")/pytest.log 2>&1; rc=\$?; cat $(printf %q "$artifacts")/pytest.log; exit \$rc; }"

started=$(date +%s)
set +e
timeout --kill-after=30 "$timeout_s" "$vng" $kvm_flag --force-9p --memory "$memory" --cpus 2 \
    --run "$vmlinuz" -a "modprobe.blacklist=$blacklist" --rwdir "$artifacts" \
    --exec "$guest_cmd" 2>&1 | tee "$artifacts/guest.log"
rc=${PIPESTATUS[0]}
set -e
ended=$(date +%s)
if [ ! -e "$artifacts/guest-ready" ]; then
  echo "vm.sh: the guest never reached its command (rc $rc): the kernel did not boot" >&2
  [ $rc -eq 0 ] && rc=3
else
  echo "vm.sh: boot $(( $(cat "$artifacts/guest-ready") - started )) s, total $(( ended - started )) s, rc $rc" >&2
fi
exit $rc
