"""Stalls: say when an instrument's call has not returned long after it should have.

Why: nothing can interrupt a driver call that hangs (a pump that never answers, a plug-in waiting forever): the run
stayed "live" with no event, no alert and no log line until someone pressed Ctrl-C, and an unattended night was
lost (a plug-in engineer's trial). The watcher cannot end the call either; it tells a person. It reads the
journal, as the alerter does (orchestrator/loop/alerts.py), from its own thread: an action of a running experiment
that has not finished :func:`deadline_s` after it started is journalled once as a ``stalled`` event, which the log,
the dashboard and the alerts show, and warned of on the console. A wait for a person (a real rig's rinse, a manual
step, the ``manual`` sample changer: the rig's :class:`~labloop.orchestrator.loop.rig.PersonAsk`) lasts as long as
the person takes, so no action is stalled while a person is asked, and its time is counted from the answer
(``operator_waiting`` says the wait: a rinse said as a stalled instrument ``cell`` was the wrong word for a person
woken at 3 am).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from labloop.orchestrator.journal.store import Journal
from labloop.orchestrator.loop.rig import PersonAsk

log = logging.getLogger(__name__)

#: an action is stalled this long after it started at the least, however short it should be
STALL_FLOOR_S = 600.0
#: ... or this many times what its parameters say it takes (a dispense's volume at its rate, a cv's sweeps)
STALL_FACTOR = 5.0
#: how often the journal is looked at
POLL_S = 1.0
#: the journal event a stall becomes (orchestrator/loop/alerts.py alerts on it)
STALLED = "stalled"


def expected_s(command: str, params: Mapping[str, Any]) -> float:
    """What an action's parameters say it takes (s), 0 when they do not say: a pumping step's volume at its rate,
    a purge's minutes, a wait's seconds, an impedance sweep's periods (a few at each of its points, the lowest
    frequency's the longest), a cv's sweeps (begin to one vertex, to the other, back, per scan, at each of its scan
    rates)."""
    try:
        if "volume_ml" in params and "rate_ml_min" in params:
            return 60.0 * float(params["volume_ml"]) / float(params["rate_ml_min"])
        if "minutes" in params:
            return 60.0 * float(params["minutes"])
        if "seconds" in params:
            return float(params["seconds"])
        if "f_low_hz" in params:
            return 3.0 * int(params.get("points", 1)) / float(params["f_low_hz"])
        if command in ("cv", "blank", "add_standard") and "e_vertex1_v" in params:
            begin, one, two = (float(params[k]) for k in ("e_begin_v", "e_vertex1_v", "e_vertex2_v"))
            path = (abs(one - begin) + abs(two - one) + abs(begin - two)) * int(params.get("n_scans", 1) or 1)
            rates = params.get("scan_rates_v_s") or [params.get("scan_rate_v_s", 0.1)]
            return sum(path / float(rate) for rate in rates)
    except (TypeError, ValueError, ZeroDivisionError):
        return 0.0
    return 0.0


def deadline_s(command: str, params: Mapping[str, Any]) -> float:
    """How long an action may stay open before it is said to be stalled."""
    return max(STALL_FLOOR_S, STALL_FACTOR * expected_s(command, params))


class StallWatch:
    """Journals, once each, the open actions of running experiments that outlast :func:`deadline_s`, none while
    ``asking`` waits for a person. A context manager around a run."""

    def __init__(self, journal: Journal, *, asking: PersonAsk | None = None) -> None:
        self.journal = journal
        self.asking = asking
        self._said: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="labloop-stalls", daemon=True)

    def __enter__(self) -> StallWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(POLL_S * 5)

    def _watch(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self.check()
            except Exception:  # a journal closed under us, a disk error: the watcher must never take the run down
                log.exception("stalls: watching the journal failed; no further stall warnings this run")
                return

    def check(self) -> None:
        """Journal each open action past its deadline, once; its time counts from the last answer of a person
        asked during it (a clean's flush after the rinse a person did)."""
        now = datetime.now(UTC)
        if self.asking is not None and self.asking.waiting is not None:
            return  # the open action waits for a person, who takes as long as they take
        answered = self.asking.answered_at if self.asking is not None else None
        for experiment in self.journal.experiments(states=("running",)):
            for action in self.journal.actions(experiment.id):
                if action.finished_at is not None or action.id in self._said:
                    continue
                started = datetime.fromisoformat(action.started_at)
                open_s = (now - max(started, answered or started)).total_seconds()
                limit = deadline_s(action.command, action.params)
                if open_s <= limit:
                    continue
                self._said.add(action.id)
                expected = expected_s(action.command, action.params)
                about = f"; its parameters say about {expected:.0f} s" if expected else ""
                message = (f"experiment {experiment.id}: {action.instrument} ({action.command}) has not returned "
                           f"for {open_s:.0f} s{about}: its driver may hang; check the instrument (Ctrl-C stops the "
                           "run and makes the rig safe)")
                self.journal.add_event(STALLED, message, experiment_id=experiment.id,
                                       data={"action": action.id, "instrument": action.instrument,
                                             "command": action.command, "open_s": round(open_s, 1)})
                log.warning("%s", message)
