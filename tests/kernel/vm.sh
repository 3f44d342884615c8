#!/usr/bin/env bash
# Boot Debian's kernel once under QEMU (virtme-ng) with the host's root filesystem and run
# tests/kernel inside it; the guest command's exit code is this script's exit code.
#
# Usage: tests/kernel/vm.sh KERNEL_DIR ARTIFACT_DIR [pytest args...]
#   KERNEL_DIR    where `dpkg -x` unpacked the linux-image package (boot/vmlinuz-*, lib/modules)
#   ARTIFACT_DIR  shared read-write with the guest: JUnit XML and daemon logs land there
# Environment: VNG (the vng command), PYTHON (the venv's interpreter), VM_TIMEOUT (seconds for
# the whole guest), VM_TEST_TIMEOUT (seconds per test), VM_MEMORY, KVM=auto|yes|no,
# VM_RUN=bench (run bench/kernel_dataplane.py with the remaining args instead of the tests).
# In the guest, tests/kernel/guest.sh runs pytest; its output goes to ARTIFACT_DIR/pytest-*.log
# (the console shows it at the end), its JUnit XML to junit-*.xml, merged here into junit.xml.
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
rm -f "$artifacts"/junit*.xml "$artifacts"/pytest*.log "$artifacts/guest-ready"
guest_cmd="cd $(printf %q "$PWD") && \
export CI=$(printf %q "${CI:-}") PYTHONUNBUFFERED=1 VIPKEEPER_KERNEL_VM=$release \
  VIPKEEPER_KERNEL_RUN=$(printf %q "${VM_RUN:-tests}") \
  VIPKEEPER_KERNEL_ARTIFACTS=$(printf %q "$artifacts") && \
exec tests/kernel/guest.sh $(printf '%q ' "$artifacts" "$python" "$per_test_timeout" "$@")"

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
# One JUnit file for CI: the runs' test suites side by side.
python3 - "$artifacts" <<'PY' || true
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

folder = Path(sys.argv[1])
parts = sorted(folder.glob("junit-*.xml"))
if not parts:
    sys.exit()
merged = ET.Element("testsuites")
for part in parts:
    root = ET.parse(part).getroot()
    merged.extend(root if root.tag == "testsuites" else [root])
ET.ElementTree(merged).write(folder / "junit.xml", encoding="utf-8", xml_declaration=True)
PY
exit $rc
