"""Text for a terminal: text from outside (a SMILES, a device's reply, a path) made safe to show, and counts said
in words that agree with them.

Why in core: the journal's view, the console and the CLI all show such text, and the journal layer may not
import the console.
"""

from __future__ import annotations

import logging
import re
import shlex


def printable(text: str) -> str:
    """``text`` with every control character (ESC, BEL, a newline, ...) written as its escape: a path or a
    device's reply shown in a message can neither drive the terminal nor split the one line into two."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


#: what a file labloop writes for people shows as an escape: the C0 and C1 controls (ESC, BEL, a carriage return, a
#: tab) and the bidirectional overrides and marks, which reverse the text around them; not a no-break or thin space
#: nor a soft hyphen, which names pasted from a spreadsheet or a drawing program hold (a review)
CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clipped(text: str, chars: int) -> str:
    """``text`` cut to ``chars`` characters with an ellipsis when longer: a value from outside (a vendor's message, a
    library's molecule name of 5,000 characters) recognised in a message or a table, not pasted whole into it."""
    return text if len(text) <= chars else f"{text[:chars - 1]}…"


#: the longest name or reason a person's decision journals (``labloop approve --by/--reason``, the dashboard's): a
#: name or a sentence, not a document
MAX_SAID_CHARS = 500


def said_problem(text: str) -> str | None:
    """Why ``text`` (stripped) cannot be journalled as who decided or why, or None: empty, over
    :data:`MAX_SAID_CHARS`, or holding a control character (a line break would split the journal's one-line event in
    ``labloop log``). One rule for the command line and the dashboard."""
    text = text.strip()
    if not text or len(text) > MAX_SAID_CHARS or not text.isprintable():
        return f"must be one line of 1 to {MAX_SAID_CHARS} printable characters"
    return None


def controls_escaped(text: str) -> str:
    """``text`` with each of :data:`CONTROLS` written as its escape (``\\x1b``, ``\\u202e``), for a CSV cell or a
    report's page: ``cat`` of a CSV ran a device's ESC sequences on the terminal (a security review)."""
    return CONTROLS.sub(lambda match: repr(match.group())[1:-1], text)


def shell_word(value: object) -> str:
    """``value`` (a store's path) as one word of a command a hint tells the user to type: quoted when it holds a
    space or another character a shell reads (``'/tmp/lab runs/a.db'``), as written otherwise. Why: an operator's
    trial pasted ``labloop resume /tmp/ström läb.db --cell-emptied`` and got "unexpected extra arguments"."""
    return shlex.quote(str(value))


def plural(count: int, one: str, many: str | None = None) -> str:
    """The form of a word that agrees with ``count``: ``one`` for 1, else ``many`` (``one`` + "s" unless given), for
    a noun or a verb of a message (``1 row of X has``, ``2 rows of X have``). Why: "1 rows" reads as a bug."""
    return one if count == 1 else many if many is not None else f"{one}s"


#: how a cell starts that a spreadsheet reads as a formula (``=HYPERLINK(...)``, ``+cmd|...``, ``@SUM(...)``; a tab or
#: a carriage return, which it reads so too, is written as its escape: :func:`controls_escaped`)
FORMULA_START = ("=", "+", "-", "@")


def spreadsheet_safe(value: object) -> object:
    """A CSV cell as labloop writes it: text from outside (a library's name, a SMILES, a device's message) with its
    control characters written as escapes (:func:`controls_escaped`), and one that a spreadsheet would run as a
    formula with a leading ``'``, which shows it as text; numbers stay numbers. Why: a chemist opens every CSV
    labloop writes in Excel, and a library's name column is anyone's text (a security trial's ``@SUM(1+1)*cmd|...``
    came through ``candidates --csv`` and ``surrogate predict`` as written, while the report's CSVs quoted it); and
    a device's error message kept its ESC sequences in failures.csv, which ``cat`` ran on the terminal (a review)."""
    if not isinstance(value, str):
        return value
    text = controls_escaped(value)
    return f"'{text}" if text.startswith(FORMULA_START) else text


def traceback_hint(logger: logging.Logger, *, where: str = "below") -> str:
    """What a line naming an exception says of its traceback, which ``logger`` logs at INFO ``where`` the line is
    (``below`` it, or ``above`` where the traceback is logged before the error is raised and said): ``(its traceback
    below)`` where INFO is shown (``-v``), else ``(run with -v for the traceback)``, which -v's line still said (a
    plug-in engineer's trial)."""
    return f"(its traceback {where})" if logger.isEnabledFor(logging.INFO) else "(run with -v for the traceback)"
