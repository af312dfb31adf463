"""irqlock's command line: one subcommand per tool, bcc-style shared flags.

Every error the user can act on (bad input, missing capability, no root, no
BTF) is one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from irqlock import __version__
from irqlock.defaults import (
    CONFIG_KEYS,
    DEFAULT_BTF,
    DEFAULT_COMBINED_MAX_EDGES,
    DEFAULT_COMBINED_MAX_LOCKS,
    DEFAULT_DEADLOCK_MAX_LOCKS,
    DEFAULT_LISTEN,
    DEFAULT_MAX_EDGES,
    DEFAULT_MAX_LOCKS,
    LOCK_KINDS,
    LOCK_PROBES,
)
from irqlock.errors import IrqlockError
from irqlock.units import parse_duration_ns

if TYPE_CHECKING:
    from irqlock.tracerset import Selection

EXIT_USAGE = 2
PROBE_HELP = ("how lock functions are traced: auto (the default) takes fentry/fexit where the "
              "kernel has them, but kprobes for the sleeping locks on PREEMPT_RT (a program "
              "preempted there loses the other tasks' lock calls; see irqlock check); "
              "fentry or kprobe for every function")

CHECK_EXAMPLES = """examples:
  irqlock check          # what this kernel offers, what each tool will do
  irqlock check -j       # the same as one JSON object
"""

IRQOFF_EXAMPLES = """examples:
  irqlock irqoff                 # windows over 1ms, best source this kernel offers
  irqlock irqoff -t 100us -d 10  # over 100 us, for 10 seconds
  irqlock irqoff -c 1 -j         # CPU 1 only, JSON lines
  irqlock irqoff -m sample --period 100us  # sampler only, 100 us period (error <= 50 us)
  irqlock irqoff --preempt       # preempt-off windows too (needs preemptirq tracepoints)
  irqlock irqoff --softirq -t 2ms  # softirq-off windows too (always sampled)
"""

IRQ_EXAMPLES = """examples:
  irqlock irq 24                 # every disable_irq ... enable_irq window of IRQ 24
  irqlock irq 24 25 -t 100us     # IRQs 24 and 25, windows over 100 us
  irqlock irq --all -d 30 -j     # every line for 30 s, JSON lines
  irqlock irq 24 --handlers      # and a histogram of IRQ 24's handler run time
"""

LOCKS_EXAMPLES = """examples:
  irqlock locks -d 10                 # every lock kind for 10 s, top 20 by total hold time
  irqlock locks 5                     # a table every 5 s (counts restart each time)
  irqlock locks 5 3 -S wait_max       # three 5 s tables by longest contended wait
  irqlock locks --kind mutex,rwsem -p 1234   # sleeping locks taken by process 1234
  irqlock locks --lock jiffies_lock --stacks # one static lock, with each task's first stack
  irqlock locks --by class -d 30      # per lock class: e.g. every inode's i_rwsem together
  irqlock locks -d 30 -j > locks.jsonl       # JSON lines: one "lock" record per lock
  irqlock locks --probe kprobe -d 10  # kprobes, not fentry/fexit (a kernel without them)
"""

DEADLOCK_EXAMPLES = """examples:
  irqlock deadlock                   # until Ctrl-C: lock-order cycles, IRQ-unsafe locks,
                                     # live deadlocks, tasks in D state over 10 s
  irqlock deadlock -d 60 -j          # one minute, JSON lines
  irqlock deadlock --hung-after 2    # report tasks blocked 2 s or more
lock-order cycles are reported between lock instances ("level": "instance") and, as
lockdep does, between lock classes ("level": "class": a slab cache and offset, a per-CPU
variable, a static lock), which finds an inversion before it meets the same objects.
A cycle of static locks is both at once: one record, "levels": ["instance", "class"].
"""

RECORD_EXAMPLES = """examples:
  irqlock record -o run.db --irqoff --locks -d 60     # IRQ-off windows and locks, one minute
  irqlock record -o run.db --irqoff -t 200us --irq 24 --deadlock   # until Ctrl-C
  irqlock report run.db --html run.html                # then look at it
"""

REPORT_EXAMPLES = """examples:
  irqlock report run.db                    # a summary on the console
  irqlock report run.db -j | jq -c 'select(.type == "irqoff")'
  irqlock report run.db --html run.html    # a page with histograms, timeline, flame graph
  irqlock report run.db --folded run.folded && flamegraph.pl run.folded > irqoff.svg
"""

SERVE_EXAMPLES = """examples:
  irqlock serve --irqoff --locks --deadlock        # metrics on http://127.0.0.1:9464/metrics
  irqlock serve --irqoff -t 500us --listen 0.0.0.0:9464   # reachable from other hosts
  irqlock status                                   # from another shell
  irqlock config threshold=2ms irq=24              # reconfigure the running session
  irqlock clear                                    # start counting again
"""

MAIN_EXAMPLES = """examples:
  irqlock check                      # what this kernel offers and each tool's plan
  irqlock check -j | jq .plan        # the plan as JSON
  irqlock irqoff -t 500us            # IRQ-off windows over 500 us with stacks
  irqlock irq 24 --handlers          # IRQ 24's disabled windows and handler run times
  irqlock locks -d 10                # kernel locks by hold time, with their holders
  irqlock deadlock -d 60             # lock-order cycles, deadlocks and hung tasks
  irqlock record -o run.db --irqoff --locks -d 60 && irqlock report run.db --html run.html
  irqlock serve --irqoff --locks     # Prometheus metrics; irqlock status|config|clear

Run 'irqlock COMMAND --help' for a command's flags and examples.
"""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _shared_flags() -> _Parser:
    shared = _Parser(add_help=False)
    shared.add_argument("-j", "--json", action="store_true",
                        help="print JSON lines (one object per record) instead of tables")
    shared.add_argument("--btf", type=Path, default=DEFAULT_BTF, metavar="PATH",
                        help=f"kernel BTF to use (default: {DEFAULT_BTF})")
    shared.add_argument("-v", "--verbose", action="store_true",
                        help="include libbpf's debug log in error messages")
    return shared


def _duration(text: str) -> int:
    try:
        return parse_duration_ns(text)
    except IrqlockError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad number of seconds {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"seconds must be positive, not {text}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _run_flags() -> _Parser:
    """How long a tracer runs and how it tells scripts it is ready."""
    run = _Parser(add_help=False)
    run.add_argument("-d", "--duration", type=_seconds, metavar="SECONDS",
                     help="stop after this many seconds (default: until Ctrl-C)")
    run.add_argument("--ready-file", type=Path, metavar="PATH",
                     help="write this file once every probe is attached")
    return run


def _filter_flags() -> _Parser:
    filters = _Parser(add_help=False)
    filters.add_argument("-p", "--pid", type=_non_negative, metavar="PID",
                         help="only this process")
    filters.add_argument("-c", "--cpu", type=_non_negative, metavar="CPU", help="only this CPU")
    return filters


def _threshold(parser: argparse.ArgumentParser, default_ns: int, default_text: str) -> None:
    parser.add_argument("-t", "--threshold", type=_duration, default=default_ns, metavar="TIME",
                        help="report windows at least this long: 500ns, 100us, 2ms, 1s; "
                             f"a bare number is us (default: {default_text})")


def _cmd_irqoff(args: argparse.Namespace) -> int:
    from irqlock.commands import irqoff as irqoff_cmd
    from irqlock.kernel.features import probe
    from irqlock.tracers.irqoff import DEFAULT_PERIOD_NS, IrqoffConfig

    period_ns = DEFAULT_PERIOD_NS if args.period is None else args.period
    config = IrqoffConfig(threshold_ns=args.threshold, mode=args.mode, period_ns=period_ns,
                          tgid=args.pid, cpu=args.cpu, preempt=args.preempt, softirq=args.softirq,
                          ringbuf_pages=args.ringbuf_pages, unconfirmed=args.unconfirmed)
    return irqoff_cmd.run(config, probe(args.btf), args.duration, args.ready_file, args.json)


def _cmd_irq(args: argparse.Namespace) -> int:
    from irqlock.commands import irqline as irqline_cmd
    from irqlock.kernel.features import probe
    from irqlock.tracers.irqline import IrqlineConfig

    if bool(args.irqs) == args.all:
        raise IrqlockError("name the IRQ numbers to trace or give --all (not both)")
    config = IrqlineConfig(irqs=None if args.all else sorted(set(args.irqs)),
                           threshold_ns=args.threshold, handlers=args.handlers)
    return irqline_cmd.run(config, probe(args.btf), args.duration, args.ready_file, args.json)


def _kinds(text: str) -> list[str]:
    aliases = {"spin": "spinlock", "spinlock": "spinlock", "rw": "rwlock", "rwlock": "rwlock",
               "mutex": "mutex", "rwsem": "rwsem", "raw_spin": "raw_spinlock",
               "raw_spinlock": "raw_spinlock"}
    kinds = []
    for word in text.split(","):
        if word.strip() not in aliases:
            raise argparse.ArgumentTypeError(
                f"unknown lock kind {word!r} (spin, rw, mutex, rwsem, raw_spin)")
        kinds.append(aliases[word.strip()])
    return list(dict.fromkeys(kinds))


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _cmd_locks(args: argparse.Namespace) -> int:
    from irqlock.commands import locks as locks_cmd
    from irqlock.kernel.features import probe
    from irqlock.tracers.lock_plan import LocksConfig

    if args.count is not None and args.interval is None:
        raise IrqlockError("a count needs an interval before it")
    config = LocksConfig(kinds=args.kind, tgid=args.pid, max_locks=args.max_locks,
                         probe=args.probe)
    output = locks_cmd.LocksOutput(as_json=args.json, sort=args.sort, top=args.top,
                                   stacks=args.stacks, by=args.by)
    return locks_cmd.run(config, args.lock, probe(args.btf), output, args.duration, args.interval,
                         args.count, args.ready_file)


def _cmd_deadlock(args: argparse.Namespace) -> int:
    from irqlock.commands import deadlock as deadlock_cmd
    from irqlock.kernel.features import probe
    from irqlock.tracers.deadlock import DeadlockOptions

    options = DeadlockOptions(hung_after_ns=round(args.hung_after * 1e9),
                              max_edges=args.max_edges, max_locks=args.max_locks,
                              probe=args.probe)
    return deadlock_cmd.run(options, probe(args.btf), args.duration, args.ready_file, args.json)


def _selection(args: argparse.Namespace) -> Selection:
    """The tracers record and serve run, from their shared flags."""
    from irqlock.tracers.deadlock import DeadlockOptions
    from irqlock.tracers.irqline import IrqlineConfig
    from irqlock.tracers.irqoff import DEFAULT_PERIOD_NS, IrqoffConfig
    from irqlock.tracerset import Selection

    irqoff = IrqoffConfig(threshold_ns=args.threshold, mode=args.mode,
                          period_ns=args.period or DEFAULT_PERIOD_NS) if args.irqoff else None
    irq = None
    if args.irq:
        irqs = None if "all" in args.irq else sorted({int(i) for i in args.irq})
        irq = IrqlineConfig(irqs=irqs, threshold_ns=args.irq_threshold, handlers=args.handlers)
    # Lock statistics and lock-order edges share the default memory budget (64 MiB).
    both = args.locks and args.deadlock
    max_locks = args.max_locks or (DEFAULT_COMBINED_MAX_LOCKS if both else DEFAULT_MAX_LOCKS)
    deadlock = DeadlockOptions(hung_after_ns=round(args.hung_after * 1e9), max_locks=max_locks,
                               max_edges=DEFAULT_COMBINED_MAX_EDGES if both
                               else DEFAULT_MAX_EDGES) if args.deadlock else None
    return Selection(irqoff=irqoff, irq=irq, locks=args.locks, deadlock=deadlock,
                     max_locks=max_locks)


def _irq_choice(text: str) -> str:
    if text != "all" and not text.isdigit():
        raise argparse.ArgumentTypeError(f"an IRQ number or 'all', not {text!r}")
    return text


def _tracer_flags() -> _Parser:
    """Which tracers record and serve run, and their main settings."""
    flags = _Parser(add_help=False)
    flags.add_argument("--irqoff", action="store_true", help="IRQ-off windows (irqlock irqoff)")
    _threshold(flags, 1_000_000, "1ms")
    flags.add_argument("-m", "--mode", choices=["auto", "exact", "sample"], default="auto",
                       help="IRQ-off sources, as irqlock irqoff -m")
    flags.add_argument("--period", type=_duration, metavar="TIME",
                       help="IRQ-off sampling period (default: 500us)")
    flags.add_argument("--irq", action="append", type=_irq_choice, metavar="IRQ",
                       help="disabled windows of this IRQ line (repeat for more, or 'all')")
    flags.add_argument("--irq-threshold", type=_duration, default=0, metavar="TIME",
                       help="IRQ-line windows at least this long (default: all)")
    flags.add_argument("--handlers", action="store_true",
                       help="with --irq: the handlers' run-time histograms")
    flags.add_argument("--locks", action="store_true", help="lock statistics (irqlock locks)")
    flags.add_argument("--deadlock", action="store_true",
                       help="lock-order cycles, IRQ-unsafe locks, deadlocks, hung tasks")
    flags.add_argument("--hung-after", type=_seconds, default=10.0, metavar="SECONDS",
                       help="with --deadlock: tasks in D state this long are hung (default: 10)")
    flags.add_argument("--max-locks", type=_positive, metavar="N",
                       help=f"distinct locks tracked at most (default: {DEFAULT_MAX_LOCKS}, or "
                            f"{DEFAULT_COMBINED_MAX_LOCKS} with both --locks and --deadlock, "
                            "which then keeps up to "
                            f"{DEFAULT_COMBINED_MAX_EDGES} lock-order edges: under 64 MiB)")
    return flags


def _cmd_record(args: argparse.Namespace) -> int:
    from irqlock.commands import record as record_cmd
    from irqlock.kernel.features import probe

    return record_cmd.run(_selection(args), args.output, probe(args.btf), args.duration,
                          args.ready_file, args.json)


def _cmd_report(args: argparse.Namespace) -> int:
    from irqlock.commands import report as report_cmd

    return report_cmd.run(args.recording, args.json, args.html, args.folded)


def _cmd_serve(args: argparse.Namespace) -> int:
    from irqlock.commands import serve as serve_cmd
    from irqlock.kernel.features import probe

    return serve_cmd.run(_selection(args), args.listen, probe(args.btf), args.duration,
                         args.ready_file, args.json)


def _cmd_status(args: argparse.Namespace) -> int:
    from irqlock import client

    client.print_status(client.request(args.connect, "GET", "/status"), args.json)
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    from irqlock import client

    status = client.request(args.connect, "POST", "/config", client.parse_settings(args.settings))
    client.print_status(status, args.json)
    return 0


def _cmd_clear(args: argparse.Namespace) -> int:
    from irqlock import client

    client.request(args.connect, "POST", "/clear", {})
    if not args.json:
        sys.stdout.write("cleared\n")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from irqlock import check

    return check.run(args.btf, args.json)


def _add_irqoff(sub: argparse._SubParsersAction[_Parser], shared: _Parser) -> None:
    """irqlock irqoff."""
    irqoff = sub.add_parser("irqoff", parents=[shared, _run_flags(), _filter_flags()],
                            epilog=IRQOFF_EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            help="windows in which a CPU kept interrupts off, with stacks")
    _threshold(irqoff, 1_000_000, "1ms")
    irqoff.add_argument("-m", "--mode", choices=["auto", "exact", "sample"], default="auto",
                        help="auto: best this kernel offers; exact: tracepoints or lock paths "
                             "only; sample: cpu-clock sampler only")
    irqoff.add_argument("--period", type=_duration, metavar="TIME",
                        help="sampling period (default: 500us, at least 20us); windows of twice "
                             "the period are always caught, and the error bound is half of it")
    irqoff.add_argument("--softirq", action="store_true",
                        help="also report softirq-off windows (local_bh_disable, softirqs being "
                             "served); sampled with the --period cpu-clock on every kernel")
    irqoff.add_argument("--unconfirmed", action="store_true",
                        help="also report sampled windows that nothing confirms as IRQ-off time "
                             "(their closing tick landed in ordinary code: a virtual CPU run "
                             "late looks the same), marked \"confirmed\": false, and the "
                             "spans over the threshold in which the sampler was blind (no "
                             "tick came to a running CPU); counted in stats either way")
    irqoff.add_argument("--preempt", action="store_true",
                        help="also report preempt-off windows (needs preemptirq tracepoints)")
    irqoff.add_argument("--ringbuf-pages", type=_positive, default=256, metavar="N",
                        help="ring buffer for windows, in 4 KiB pages, a power of two (default: "
                             "256); windows that find it full are counted as lost")
    irqoff.set_defaults(handler=_cmd_irqoff)


def _add_irq(sub: argparse._SubParsersAction[_Parser], shared: _Parser) -> None:
    """irqlock irq."""
    irq = sub.add_parser("irq", parents=[shared, _run_flags()], epilog=IRQ_EXAMPLES,
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         help="windows in which IRQ lines were disabled (disable_irq ... "
                              "enable_irq), who disabled and who enabled them")
    irq.add_argument("irqs", nargs="*", type=_non_negative, metavar="IRQ",
                     help="IRQ numbers, as in /proc/interrupts")
    irq.add_argument("-a", "--all", action="store_true", help="every IRQ line")
    _threshold(irq, 0, "0: every window")
    irq.add_argument("--handlers", action="store_true",
                     help="also a histogram of each traced IRQ's handler run time")
    irq.set_defaults(handler=_cmd_irq)


def _add_locks(sub: argparse._SubParsersAction[_Parser], shared: _Parser) -> None:
    """irqlock locks."""
    locks = sub.add_parser("locks", parents=[shared, _run_flags()], epilog=LOCKS_EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           help="kernel locks: who takes which, hold and wait times")
    locks.add_argument("interval", nargs="?", type=_seconds,
                       help="print a table every INTERVAL seconds (default: once, at the end)")
    locks.add_argument("count", nargs="?", type=_positive, help="stop after COUNT tables")
    locks.add_argument("-p", "--pid", type=_non_negative, metavar="PID",
                       help="only locks taken by this process")
    locks.add_argument("--kind", type=_kinds, default=list(LOCK_KINDS), metavar="KINDS",
                       help="comma-separated: spin, rw, mutex, rwsem, raw_spin (default: "
                            "all; raw_spin is spin but on PREEMPT_RT, where spin sleeps)")
    locks.add_argument("--lock", metavar="ADDR|SYMBOL",
                       help="only this lock: a static lock's symbol or a hex address")
    locks.add_argument("-n", "--top", type=_positive, metavar="N",
                       help="show the N first locks (default: 20 in tables, all in JSON)")
    locks.add_argument("-S", "--sort", default="hold_total",
                       choices=["hold_total", "hold_max", "wait_total", "wait_max", "count"],
                       help="order of the table (default: hold_total)")
    locks.add_argument("--stacks", action="store_true",
                       help="print each holder's first stack under its lock")
    locks.add_argument("--by", choices=["lock", "class"], default="lock",
                       help="one row per lock (the default), or per lock class: the locks "
                            "of one slab cache and offset, of one per-CPU variable, together")
    locks.add_argument("--max-locks", type=_positive, default=DEFAULT_MAX_LOCKS, metavar="N",
                       help="distinct locks tracked at most; more are counted, not tracked "
                            f"(default: {DEFAULT_MAX_LOCKS}, about 2.3 KiB each)")
    locks.add_argument("--probe", choices=LOCK_PROBES, default="auto", help=PROBE_HELP)
    locks.set_defaults(handler=_cmd_locks)


def _add_deadlock(sub: argparse._SubParsersAction[_Parser], shared: _Parser) -> None:
    """irqlock deadlock."""
    deadlock = sub.add_parser("deadlock", parents=[shared, _run_flags()],
                              epilog=DEADLOCK_EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              help="lock-order cycles, IRQ-unsafe locks, deadlocked and hung "
                                   "tasks")
    deadlock.add_argument("--hung-after", type=_seconds, default=10.0, metavar="SECONDS",
                          help="report tasks asleep in D state this long (default: 10)")
    deadlock.add_argument("--max-edges", type=_positive, default=DEFAULT_MAX_EDGES, metavar="N",
                          help="lock-order edges kept at most; more are counted "
                               f"(default: {DEFAULT_MAX_EDGES}, about 250 bytes each)")
    deadlock.add_argument("--max-locks", type=_positive, default=DEFAULT_DEADLOCK_MAX_LOCKS,
                          metavar="N", help="locks whose last acquisition is kept to check held "
                          f"locks with, at most (default: {DEFAULT_DEADLOCK_MAX_LOCKS})")
    deadlock.add_argument("--probe", choices=LOCK_PROBES, default="auto", help=PROBE_HELP)
    deadlock.set_defaults(handler=_cmd_deadlock)


def _add_session(sub: argparse._SubParsersAction[_Parser], shared: _Parser) -> None:
    """irqlock record, report and serve: several tracers at once."""
    tracers = _tracer_flags()
    record = sub.add_parser("record", parents=[shared, _run_flags(), tracers],
                            epilog=RECORD_EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            help="run several tracers at once into a SQLite recording")
    record.add_argument("-o", "--output", type=Path, required=True, metavar="RUN.db",
                        help="the recording to create (never overwritten)")
    record.set_defaults(handler=_cmd_record)

    report = sub.add_parser("report", parents=[shared], epilog=REPORT_EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            help="summarize a recording: console, JSON lines, HTML, folded stacks")
    report.add_argument("recording", type=Path, metavar="RUN.db")
    report.add_argument("--html", type=Path, metavar="OUT.html",
                        help="write a self-contained HTML report")
    report.add_argument("--folded", type=Path, metavar="OUT.folded",
                        help="write IRQ-off stacks in folded form (FlameGraph, speedscope)")
    report.set_defaults(handler=_cmd_report)

    serve = sub.add_parser("serve", parents=[shared, _run_flags(), tracers],
                           epilog=SERVE_EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           help="a long-running session: Prometheus metrics, status, config")
    serve.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                       help=f"where to serve (default: {DEFAULT_LISTEN}, this machine only)")
    serve.set_defaults(handler=_cmd_serve)


def _add_client(sub: argparse._SubParsersAction[_Parser], shared: _Parser) -> None:
    """irqlock status, config and clear: a running serve session's."""
    connect = _Parser(add_help=False)
    connect.add_argument("--connect", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                         help=f"the irqlock serve session (default: {DEFAULT_LISTEN})")
    status = sub.add_parser("status", parents=[shared, connect],
                            help="what a running irqlock serve session does and has seen")
    status.set_defaults(handler=_cmd_status)
    config = sub.add_parser("config", parents=[shared, connect],
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog="settings:\n" + "".join(f"  {k:<14} {v}\n"
                                                           for k, v in CONFIG_KEYS.items()),
                            help="change a running irqlock serve session's settings")
    config.add_argument("settings", nargs="+", metavar="KEY=VALUE")
    config.set_defaults(handler=_cmd_config)
    clear = sub.add_parser("clear", parents=[shared, connect],
                           help="make a running irqlock serve session start counting again")
    clear.set_defaults(handler=_cmd_clear)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="irqlock", description=__doc__.splitlines()[0] if __doc__ else None,
                     epilog=MAIN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"irqlock {__version__}")
    sub: argparse._SubParsersAction[_Parser] = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    shared = _shared_flags()

    check = sub.add_parser("check", parents=[shared], epilog=CHECK_EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           help="show what this kernel offers and what each tool will do")
    check.set_defaults(handler=_cmd_check)
    for add in (_add_irqoff, _add_irq, _add_locks, _add_deadlock, _add_session, _add_client):
        add(sub, shared)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        if args.verbose:
            from irqlock.bpf.libbpf import libbpf

            libbpf().set_verbose(True)
        return handler(args)
    except IrqlockError as exc:
        lines = str(exc).splitlines() or ["failed"]
        more = len(lines) > 1 and not args.verbose
        sys.stderr.write(f"irqlock {args.command}: error: {lines[0]}"
                         f"{' (-v shows libbpf log)' if more else ''}\n")
        if len(lines) > 1 and args.verbose:
            sys.stderr.write("\n".join(lines[1:]) + "\n")  # libbpf's log, verifier output
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EIO, errno.EDQUOT):
            raise
        # the output's file system: nothing more can be written there
        sys.stderr.write(f"irqlock {args.command}: error: writing the output: "
                         f"{exc.strerror}\n")
        return 1
