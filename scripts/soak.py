#!/usr/bin/env python3
"""The long soak: every tracer at once for SECONDS under stress-ng and the fixture's load.

Run inside the VM, where the fixture is loaded:

    scripts/vmtest.py --timeout 1500 -- .venv/bin/python scripts/soak.py --seconds 600

Prints the figures as JSON (queries answered, RSS samples and growth after
warm-up, BPF map memory at start and end, what each tracer counted as lost);
vmtest fails the run on any BUG: or WARNING: in the guest's dmesg.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.kernel.soak import soak  # the checkout's root is on the path now


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        figures = soak(args.seconds, Path(tmp))
    print(json.dumps(figures, indent=1))
    ok = figures["answered"] == figures["queries"] and figures["rss_growth"] <= 0.10 \
        and abs(figures["rss_drift"]) <= 0.10 \
        and figures["map_bytes"] <= figures["map_cap_bytes"]
    print("soak: " + ("ok" if ok else "FAILED"), file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
