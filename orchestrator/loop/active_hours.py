"""``schedule.active_hours``: whether experiments may start now, and how long until they may.

Why local wall-clock minutes: a lab's window is "19:00-07:00 on the building's clock", across midnight.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from labloop.orchestrator.config.campaign import parse_active_hours
from labloop.orchestrator.journal.view import zone


class ActiveHours:
    """The window of ``"HH:MM-HH:MM"`` (local time; an end before the start crosses midnight)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.start, self.end = parse_active_hours(text)

    def contains(self, moment: datetime) -> bool:
        minute = moment.hour * 60 + moment.minute
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    def next_start(self, moment: datetime) -> datetime:
        """When the window next opens after ``moment`` (``moment`` itself when it is open)."""
        if self.contains(moment):
            return moment
        opening = moment.replace(hour=self.start // 60, minute=self.start % 60, second=0, microsecond=0)
        return opening if opening > moment else opening + timedelta(days=1)

    def said_waiting(self, moment: datetime) -> str:
        """What a run outside the window at ``moment`` says (its console line and ``waiting`` event): the window and
        when it next opens, in this computer's time with its offset from UTC (named as the log's tables name theirs,
        journal/view.py's ``zone``), with the opening's date when it is not ``moment``'s day. Why: ``outside active
        hours 03:00-04:00; next experiment at 03:00`` named no zone beside tables in UTC, nor which day (an
        operator's trial)."""
        opens = self.next_start(moment)
        day = "" if opens.date() == moment.date() else f"{opens:%Y-%m-%d} "
        return f"outside active hours {self.text} {zone()}; next experiment at {day}{opens:%H:%M} {zone()}"
