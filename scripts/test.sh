#!/bin/bash
# Sets up everything (scripts/setup.sh) and runs every test: lint and types, unit tests on this
# machine, then the kernel tests in VMs on Debian's stock kernel, its PREEMPT_RT kernel and, when
# ../shared/kernels has it, the preemptirq kernel, then the browser test of the HTML report they
# rendered.
# Exits non-zero if anything failed; ends with one summary line.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh || exit 1
mkdir -p build/junit && rm -f build/junit/*.xml
status=0
step() { echo "== $*" >&2; "$@" || status=1; }

step .venv/bin/ruff check src tests scripts bench setup.py
step .venv/bin/mypy
step .venv/bin/python -m pytest -q --timeout 300 --junitxml=build/junit/unit.xml tests/unit

# Kernel tests in VMs, two at a time (each VM is one emulation thread; the machine has two
# cores), in two lanes of about equal length: Debian's stock kernel in two shards, its
# PREEMPT_RT kernel (scripts/setup.sh installs it) in two more -- what differs there: spinlocks
# sleep, handlers are threads, spin_lock_irqsave leaves interrupts on -- and, when
# ../shared/kernels has it, the preemptirq kernel.
shard() {  # NAME KERNEL TEST...
  local name=$1 kernel=$2; shift 2
  scripts/vmtest.py --kernel "$kernel" --name "$name" --junit "build/junit/$name.xml" --tests "$@"
}
a_tests="tests/kernel/test_check.py tests/kernel/test_irqline.py tests/kernel/test_irqoff.py
         tests/kernel/test_kallsyms.py tests/kernel/test_loader.py tests/kernel/test_locks.py
         tests/kernel/test_sysmap.py"
b_tests=""  # every other kernel test: none is left out
for f in tests/kernel/test_*.py; do
  [[ " $(echo $a_tests) " == *" $f "* ]] || b_tests+=" $f"
done
reports=(build/junit/unit.xml build/junit/stock-a.xml build/junit/stock-b.xml
         build/junit/rt-a.xml build/junit/rt-b.xml)
# The preemptirq kernel runs only what its tracepoints change (and lock-order analysis on a
# preemptible kernel): their flood makes every test there several times slower under TCG.
irqtrace_tests=(tests/kernel/test_irqoff.py tests/kernel/test_check.py
                "tests/kernel/test_deadlock.py::test_no_false_findings_under_load")
irqtrace() {
  if compgen -G "../shared/kernels/irqtrace-6.1/linux-image-*.deb" >/dev/null; then
    shard irqtrace irqtrace "${irqtrace_tests[@]}"
  else
    echo "== skipped: exact-mode kernel tests: no ../shared/kernels/irqtrace-6.1 (see docs/exact-kernel.md)" >&2
  fi
}
if compgen -G "../shared/kernels/irqtrace-6.1/linux-image-*.deb" >/dev/null; then
  reports+=(build/junit/irqtrace.xml)
fi
# Shard lengths in the VM (s, measured on 2026-11-30): stock-b 1153, stock-a 788, rt-b 900,
# rt-a 741, irqtrace 305: the lanes come to about 1890 and 1990, boots aside.
echo "== scripts/vmtest.py (stock, PREEMPT_RT and preemptirq kernels, two VMs at once)" >&2
( ok=0; shard stock-b stock $b_tests || ok=1
  shard rt-a rt tests/kernel/test_check.py tests/kernel/test_locks.py || ok=1
  exit $ok ) & lane_a=$!
( ok=0; shard stock-a stock $a_tests || ok=1
  shard rt-b rt tests/kernel/test_deadlock.py tests/kernel/test_irqoff.py \
    tests/kernel/test_irqline.py || ok=1
  irqtrace || ok=1
  exit $ok ) & lane_b=$!
wait $lane_a || status=1
wait $lane_b || status=1
# The HTML report the VM tests rendered, in headless Chromium on this machine (Chromium
# under the guest's emulation takes minutes to start).
step .venv/bin/python -m pytest -q --timeout 600 --junitxml=build/junit/browser.xml tests/browser
reports+=(build/junit/browser.xml)
# A report that is missing (a run that never finished) counts as a failure.
.venv/bin/python scripts/junit_summary.py "${reports[@]}" || status=1
exit $status
