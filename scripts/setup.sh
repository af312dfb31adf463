#!/bin/bash
# Installs everything irqlock's development and tests need on Debian 12, idempotently:
# Debian packages (kernel + headers for the VM, qemu, clang, libbpf), the venv (.venv)
# with irqlock and its dev tools, and the CO-RE BPF objects.
#   scripts/setup.sh --bench   also what bench/ compares against (bcc's tools, perf)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  qemu-system-x86 linux-image-amd64 linux-headers-amd64   # the VM and its stock kernel
  linux-image-rt-amd64 linux-headers-rt-amd64             # ... and its PREEMPT_RT kernel
  linux-image-cloud-amd64 linux-headers-cloud-amd64       # ... and its cloud kernel
  linux-image-6.12-amd64 linux-headers-6.12-amd64         # the 6.12 series (Debian 13's), stock,
  linux-image-6.12-rt-amd64 linux-headers-6.12-rt-amd64   # PREEMPT_RT
  linux-image-6.12-cloud-amd64 linux-headers-6.12-cloud-amd64  # and cloud
  busybox-static kmod                                      # virtme-ng's guest init, insmod
  clang llvm libbpf-dev libbpf1 bpftool make gcc           # BPF objects and the fixture module
  python3-venv stress-ng                                   # the venv; load for the soak test
  chromium                                                 # renders the HTML report in a test
)
if [ "${1:-}" = "--bench" ]; then
  packages+=(bpfcc-tools linux-perf)                       # klockstat, perf bench
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import irqlock, pytest, virtme_ng' 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[dev]'
  touch .venv/.installed
fi
make -s -C src/irqlock/bpf
