#!/bin/bash
# Sets up everything (scripts/setup.sh) and runs every test: lint and types, unit tests on this
# machine, then the kernel tests in a VM on Debian's stock kernel and, when ../shared/kernels has
# it, on the preemptirq kernel, then the browser test of the HTML report they rendered.
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

# The stock kernel's tests in two VMs at once (each VM is one emulation thread; the
# machine has two cores), split so that both take about as long.
shard() {
  local name=$1; shift
  scripts/vmtest.py --name "$name" --junit "build/junit/stock-$name.xml" --tests "$@"
}
echo "== scripts/vmtest.py (stock kernel, two VMs at once)" >&2
a_tests=(tests/kernel/test_check.py tests/kernel/test_irqline.py tests/kernel/test_irqoff.py
         tests/kernel/test_kallsyms.py tests/kernel/test_loader.py tests/kernel/test_locks.py
         tests/kernel/test_deadlock.py)
b_tests=()  # every other kernel test: none is left out
for f in tests/kernel/test_*.py; do
  [[ " ${a_tests[*]} " == *" $f "* ]] || b_tests+=("$f")
done
shard a "${a_tests[@]}" &
shard_a=$!
shard b "${b_tests[@]}" &
shard_b=$!
wait $shard_a || status=1
wait $shard_b || status=1
reports=(build/junit/unit.xml build/junit/stock-a.xml build/junit/stock-b.xml
         build/junit/rt.xml)
# Debian's PREEMPT_RT kernel (scripts/setup.sh installs it), beside the preemptirq kernel:
# what differs there -- spinlocks sleep, handlers are threads, spin_lock_irqsave leaves
# interrupts on.
echo "== scripts/vmtest.py (PREEMPT_RT kernel, and the preemptirq kernel if present, at once)" >&2
scripts/vmtest.py --kernel rt --name rt --junit build/junit/rt.xml \
  --tests tests/kernel/test_check.py tests/kernel/test_locks.py tests/kernel/test_deadlock.py \
          tests/kernel/test_irqoff.py tests/kernel/test_irqline.py &
rt=$!
if compgen -G "../shared/kernels/irqtrace-6.1/linux-image-*.deb" >/dev/null; then
  # Only what the preemptirq tracepoints change (and lock-order analysis on a preemptible
  # kernel): the tracepoints' flood makes every test there several times slower under TCG.
  step scripts/vmtest.py --kernel irqtrace --name irqtrace --junit build/junit/irqtrace.xml \
    --tests tests/kernel/test_irqoff.py tests/kernel/test_check.py \
            "tests/kernel/test_deadlock.py::test_no_false_findings_under_load"
  reports+=(build/junit/irqtrace.xml)
else
  echo "== skipped: exact-mode kernel tests: no ../shared/kernels/irqtrace-6.1 (see docs/exact-kernel.md)" >&2
fi
wait $rt || status=1
# The HTML report the VM tests rendered, in headless Chromium on this machine (Chromium
# under the guest's emulation takes minutes to start).
step .venv/bin/python -m pytest -q --timeout 600 --junitxml=build/junit/browser.xml tests/browser
reports+=(build/junit/browser.xml)
# A report that is missing (a run that never finished) counts as a failure.
.venv/bin/python scripts/junit_summary.py "${reports[@]}" || status=1
exit $status
