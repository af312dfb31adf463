"""irqlock's command line: one subcommand per tool, bcc-style shared flags.

Every error the user can act on (bad input, missing capability, no root, no
BTF) is one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from irqlock import __version__
from irqlock.errors import IrqlockError
from irqlock.kernel.features import DEFAULT_BTF

EXIT_USAGE = 2

CHECK_EXAMPLES = """examples:
  irqlock check          # what this kernel offers, what each tool will do
  irqlock check -j       # the same as one JSON object
"""

MAIN_EXAMPLES = """examples:
  irqlock check                      # what this kernel offers and each tool's plan
  irqlock check -j | jq .plan        # the plan as JSON

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


def _cmd_check(args: argparse.Namespace) -> int:
    from irqlock import check

    return check.run(args.btf, args.json)


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
        from irqlock.bpf.libbpf import LibbpfError

        lines = str(exc).splitlines() or ["failed"]
        sys.stderr.write(f"irqlock {args.command}: error: {lines[0]}\n")
        if len(lines) > 1 and (args.verbose or isinstance(exc, LibbpfError)):
            sys.stderr.write("\n".join(lines[1:]) + "\n")  # libbpf's log, verifier output
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
