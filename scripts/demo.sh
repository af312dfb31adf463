#!/bin/bash
# Sets up everything (scripts/setup.sh), boots Debian's stock kernel in a VM (TCG) and runs
# irqlock there as root: what the kernel offers, each tool's plan, proven by a real attach.
# Extra arguments choose the kernel as scripts/vmtest.py does (e.g. --kernel irqtrace).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec scripts/vmtest.py "$@" -- irqlock check
