#!/bin/bash
# Sets up everything (scripts/setup.sh) and runs every test: lint and types, unit tests on this
# machine, then the kernel tests in VMs on Debian 12's kernels (6.1 and 6.12, stock, PREEMPT_RT
# and cloud) and, when ../shared/kernels has it, the preemptirq kernel, then the browser test of
# the HTML report they rendered.
# Exits non-zero if anything failed; ends with one summary line.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh || exit 1
mkdir -p build/junit && rm -f build/junit/*.xml build/junit/failed-shards
status=0
step() { echo "== $*" >&2; "$@" || status=1; }

step .venv/bin/ruff check src tests scripts bench setup.py
step .venv/bin/mypy
step .venv/bin/python -m pytest -q --timeout 300 --junitxml=build/junit/unit.xml tests/unit

# Kernel tests in VMs, two at a time (each VM is one emulation thread; the machine has two
# cores).  Which kernel runs what (README, "Which kernel runs what"):
# - Debian 12's reference kernel, 6.1 stock: every kernel test;
# - 6.12 stock (Debian 13's series: preempt count in pcpu_hot, slab page types): every
#   fixture test but those of irqlock's own Python (recording, report, reliability, output
#   formats) and of the kprobe fallback (every Debian 12 kernel has fentry; the fallback is
#   for kernels without), which the reference kernel runs;
# - 6.12 PREEMPT_RT (mainline RT): the same for irqoff, irq and check; of the lock tools the
#   RT-dependent tests (rt_locks, rt_deadlock below);
# - 6.1 PREEMPT_RT (the RT patch set, issue 23's reference): check, the RT lock tests and
#   every lock-cycle scenario;
# - 6.1 cloud (its own config, no 9p): check, which plans, loads and runs every tool there,
#   and the System.map tests;
# - the preemptirq kernel, when ../shared/kernels has it: what its tracepoints change.
# The root is over virtio-fs, but for test_report: it proves recording on a 9p share too.
shard() {  # NAME KERNEL[+9p] SECONDS TEST... (!NODEID: a test not to run; +9p: root over 9p)
  local name=$1 kernel=${2%+9p} share=virtiofs tests=() deselect=() t
  # A hung guest costs three times the shard's length, not the whole of CI's time.
  local timeout=$(( $3 * 3 > 900 ? $3 * 3 : 900 ))
  [[ $2 == *+9p ]] && share=9p
  shift 3
  for t in "$@"; do
    if [[ $t == !* ]]; then deselect+=(--deselect "${t#!}"); else tests+=("$t"); fi
  done
  scripts/vmtest.py --kernel "$kernel" --share "$share" --name "$name" --timeout "$timeout" \
    --junit "build/junit/$name.xml" "${deselect[@]}" --tests "${tests[@]}"
}
kernel_independent="tests/kernel/test_report.py tests/kernel/test_reliability.py"
fixture_tests=""  # every other kernel test
for f in tests/kernel/test_*.py; do
  [[ " $kernel_independent " == *" $f "* ]] || fixture_tests+=" $f"
done
deadlock=tests/kernel/test_deadlock.py
not_deadlock=${fixture_tests/" $deadlock"/}
reference_only=""  # on the other kernels: !NODEID, not run there
for node in "test_locks.py::test_every_lock_counted_and_consistent_under_load[record]" \
            test_locks.py::test_every_kind_through_kprobes \
            "test_locks.py::test_max_locks_caps_the_maps_and_counts_the_rest[kprobe]" \
            test_locks.py::test_interval_and_count_print_that_many_tables \
            "test_loader.py::test_counts_fixture_spin_lock_irqsave_calls[kprobe]" \
            "test_deadlock.py::test_abba_is_one_cycle_of_two_edges[kprobe]"; do
  reference_only+=" !tests/kernel/$node"
done
# PREEMPT_RT: the lock tools trace the sleeping locks by kprobe there, and a kprobe tool
# takes ~20 s longer to attach and detach under TCG: the RT kernels run the lock tests that
# are RT's own (the fixture's holds and cycles, the load tests); 6.1 PREEMPT_RT, issue 23's
# reference, every cycle scenario.
rt_locks="tests/kernel/test_locks.py::test_spinlock_holders_and_hold_time"
for t in test_rwlock_read_and_write test_mutex_contended_wait_matches_the_other_holder \
         test_rwsem_read_and_write "test_every_lock_counted_and_consistent_under_load[locks]" \
         test_by_class_adds_up_each_class_under_load; do
  rt_locks+=" tests/kernel/test_locks.py::$t"
done
rt_deadlock="" rt_cycles=""
for t in "test_abba_is_one_cycle_of_two_edges[auto]" "test_class_abba_across_instances[mutex]" \
         test_real_deadlock_is_reported_within_5s "test_no_false_findings_under_load[rt]"; do
  rt_deadlock+=" tests/kernel/test_deadlock.py::$t"
done
for t in test_mutex_abba_is_one_cycle test_three_lock_cycle test_four_lock_cycle \
         "test_class_abba_across_instances[spin]" test_hung_task_names_the_owner; do
  rt_cycles+=" tests/kernel/test_deadlock.py::$t"
done
rt_not_locks=""  # 6.12 PREEMPT_RT: the other tools' kernel-dependent tests
for f in test_irqoff test_irqline test_kallsyms test_loader test_sysmap; do
  rt_not_locks+=" tests/kernel/$f.py"
done
irqtrace_tests="tests/kernel/test_irqoff.py tests/kernel/test_check.py"
irqtrace_tests+=" tests/kernel/test_deadlock.py::test_no_false_findings_under_load"
# NAME KERNEL SECONDS TESTS: SECONDS as measured in the VM, boot included (2026-12-07, two
# VMs at once, root over virtio-fs; the whole script took 55.7 min here), which sorts the
# shards into two lanes of about equal length.
shards=("stock-a stock 850 $not_deadlock"
        "stock-b stock 980 $deadlock tests/kernel/test_reliability.py"
        "report stock+9p 220 tests/kernel/test_report.py"
        "612-a 6.12 800 $not_deadlock $reference_only"
        "612-b 6.12 600 $deadlock $reference_only"
        "612rt-a 6.12-rt 910 tests/kernel/test_check.py $rt_not_locks $rt_locks $reference_only"
        "612rt-b 6.12-rt 320 $rt_deadlock"
        "rt-a rt 570 tests/kernel/test_check.py $rt_locks"
        "rt-b rt 660 $rt_deadlock $rt_cycles"
        "cloud cloud 210 tests/kernel/test_check.py tests/kernel/test_sysmap.py")
if compgen -G "../shared/kernels/irqtrace-6.1/linux-image-*.deb" >/dev/null; then
  shards+=("irqtrace irqtrace 320 $irqtrace_tests")
else
  echo "== skipped: exact-mode kernel tests: no ../shared/kernels/irqtrace-6.1 (see docs/exact-kernel.md)" >&2
fi
lanes=("" "")  # the longest shard first, each to the lane that ends sooner
lane_s=(0 0)
while read -r seconds index; do
  lane=$(( lane_s[0] <= lane_s[1] ? 0 : 1 ))
  lanes[$lane]+=" $index"
  lane_s[$lane]=$(( lane_s[lane] + seconds ))
done < <(for i in "${!shards[@]}"; do read -r _ _ s _ <<<"${shards[$i]}"; echo "$s $i"; done | sort -rn)
run_lane() {
  local - ok=0 index name kernel seconds tests
  set -f  # the test lists are words, not patterns ([record])
  for index in $1; do
    read -r name kernel seconds tests <<<"${shards[$index]}"
    # shellcheck disable=SC2086  # the test list is words
    shard "$name" "$kernel" "$seconds" $tests || { ok=1; echo "$name" >>build/junit/failed-shards; }
  done
  return $ok
}
# What a failed shard's guest last said, at the end where a log's tail shows it.
show_failed_shards() {
  local name dir
  [[ -f build/junit/failed-shards ]] || return 0
  while read -r name; do
    # the shard's own run: the newest of the directories named so (an older run's directory
    # of another name may end the same way)
    for dir in $(ls -td build/vm-results/*-"$name" 2>/dev/null | head -n 1); do
      echo "== shard $name failed; the last lines of $dir/output.log and console.log:" >&2
      tail -n 30 "$dir/output.log" >&2 2>/dev/null
      # the kernel's first word on a stall or an oops, then its last lines
      grep -m 20 -E 'rcu: INFO|BUG:|WARNING:|lockup|blocked for more|Oops' "$dir/console.log" >&2
      grep -v '^\s*$' "$dir/console.log" 2>/dev/null | tail -n 60 >&2
    done
  done <build/junit/failed-shards
}
reports=(build/junit/unit.xml)
for index in "${!shards[@]}"; do
  read -r name _ <<<"${shards[$index]}"
  reports+=("build/junit/$name.xml")
done
echo "== scripts/vmtest.py: ${#shards[@]} shards in two lanes of ${lane_s[0]} and ${lane_s[1]} s" >&2
run_lane "${lanes[0]}" & lane_a=$!
run_lane "${lanes[1]}" & lane_b=$!
wait $lane_a || status=1
wait $lane_b || status=1
# The HTML report the VM tests rendered, in headless Chromium on this machine (Chromium
# under the guest's emulation takes minutes to start).
step .venv/bin/python -m pytest -q --timeout 600 --junitxml=build/junit/browser.xml tests/browser
reports+=(build/junit/browser.xml)
show_failed_shards
# A report that is missing (a run that never finished) counts as a failure.
.venv/bin/python scripts/junit_summary.py "${reports[@]}" || status=1
exit $status
