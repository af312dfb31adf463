#!/bin/bash
# Sets up everything (scripts/setup.sh), boots Debian's stock kernel in a VM (TCG) and runs
# irqlock there as root while the fixture module makes what each tool must see, its own
# ktime figures printed alongside to compare:
#   irqlock check                      what the kernel offers and each tool's plan
#   irqlock irqoff                     interrupts off for known times
#   irqlock locks                      two kthreads sharing a spinlock
#   irqlock deadlock                   an ABBA lock order, then two kthreads deadlocked
#   irqlock record + report            all of it in one recording, summarized, as HTML
# Extra arguments choose the kernel as scripts/vmtest.py does (e.g. --kernel irqtrace).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec scripts/vmtest.py --timeout 1500 "$@" -- bash -c '
fixture() { echo "$1" > /proc/irqlock_fixture; echo "fixture: $(head -c 400 /proc/irqlock_fixture)"; }
ready() { while [ ! -e "$1" ]; do sleep 0.5; done; }
irqlock check

echo; echo "== irqlock irqoff -t 500us, while the fixture makes windows"
irqlock irqoff -t 500us -d 40 --ready-file /tmp/irqoff.ready & ready /tmp/irqoff.ready
for w in "spin_irqsave 1000" "irq_disable 3000" "bh 3000"; do fixture "irqoff $w"; done
wait

echo; echo "== irqlock locks --lock fx_spin --stacks, while two kthreads hold it 50 us, 100 times each"
irqlock locks --lock fx_spin --stacks -d 40 --ready-file /tmp/locks.ready & ready /tmp/locks.ready
fixture "hold spin 50 100"
wait

echo; echo "== irqlock deadlock, while the fixture takes A then B, B then A, and deadlocks two kthreads"
irqlock deadlock -d 50 --ready-file /tmp/dl.ready & ready /tmp/dl.ready
fixture "order abba"
fixture "deadlock"; sleep 8; fixture "release"
wait

echo; echo "== irqlock record, then irqlock report (console and HTML)"
rm -f /tmp/demo.db
irqlock record -o /tmp/demo.db --irqoff -t 500us --locks -d 40 --ready-file /tmp/rec.ready &
ready /tmp/rec.ready
fixture "irqoff spin_irqsave 2000 2"; fixture "hold mutex 100 50"
wait
irqlock report /tmp/demo.db --html "$IRQLOCK_RESULTS/demo.html"
echo "HTML report: build/vm-results/*/demo.html (open it on this machine)"'
