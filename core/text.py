"""Text from outside (a SMILES, a device's reply, a path) made safe to show on a terminal.

Why in core: the journal's view, the console and the CLI all show such text, and the journal layer may not
import the console.
"""

from __future__ import annotations


def printable(text: str) -> str:
    """``text`` with every control character (ESC, BEL, a newline, ...) written as its escape: a path or a
    device's reply shown in a message can neither drive the terminal nor split the one line into two."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
