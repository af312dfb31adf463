#!/bin/bash
# Sets up everything (scripts/setup.sh), boots Debian's stock kernel in a VM (TCG) and runs
# irqlock there as root: what the kernel offers and each tool's plan, then `irqlock irqoff`
# for 20 seconds while the fixture module turns interrupts off for known times (its own
# ktime figures are printed alongside, to compare).
# Extra arguments choose the kernel as scripts/vmtest.py does (e.g. --kernel irqtrace).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec scripts/vmtest.py "$@" -- bash -c '
irqlock check
echo; echo "== irqlock irqoff -t 500us -d 20, while the fixture makes windows"
irqlock irqoff -t 500us -d 20 &
sleep 12
for w in "spin_irqsave 1000" "irq_disable 3000" "bh 3000"; do
  echo "irqoff $w" > /proc/irqlock_fixture
  echo "fixture: $(cat /proc/irqlock_fixture)"
done
wait'
