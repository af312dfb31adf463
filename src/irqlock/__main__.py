"""`python -m irqlock`."""

import sys

from irqlock.cli import main

sys.exit(main())
