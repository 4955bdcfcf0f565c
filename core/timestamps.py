"""The one timestamp format of labloop: the journal stores it, the protocol executor stamps actions with it,
and a saved model's manifest says when it was written.

Why here, at the bottom: protocols stamp their actions as they happen and the journal stores those stamps,
so both need the same format without the protocols layer importing the journal.
"""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> str:
    """UTC timestamp as stored in every table (ISO 8601, milliseconds)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")
