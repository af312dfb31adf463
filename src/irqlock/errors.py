"""The one exception type irqlock reports to users as a single line (exit code 2)."""


class IrqlockError(Exception):
    """A failure the user can act on: bad input, missing capability, no permission."""
