"""Alerts: tell a person when the campaign needs one — it stopped (budget, faults, interrupt, its Dask cluster
lost), a batch waits for approval, or a real rig waits for a person at its console (the rinse, a manual step, the
``manual`` sample changer) — through apprise (email, Slack, Teams, ntfy, webhooks: any URL apprise knows).

Why it works this way:

- **Driven by the journal, not by the runner.** The alerter watches the journal's events from a background
  thread and alerts on the kinds in :data:`ALERT_KINDS`, so whatever writes those events (the runner's stop
  rules, its interrupt handler, the approval gate) alerts without knowing about alerts, and each event
  alerts exactly once; one stop alerts once, however many experiments it interrupted (:func:`_alerts`).
  A person waited for is seen from the same thread: a question of the rig's
  (:class:`~labloop.orchestrator.loop.rig.PersonAsk`) still unanswered after :data:`PERSON_GRACE_S` is journalled
  once as an ``operator_waiting`` event saying what the person must do, which then alerts; a question answered at
  once (a script's ``yes ''``, a console with no input) wakes nobody.
- **Never in the run's way.** Sending happens only in that thread, with a bounded number of attempts per
  destination and a pause between them; a network that is down costs the run nothing, and at the end the
  run waits at most :meth:`Alerter.drain_limit_s` for the last alert before it exits anyway.
- **Journalled.** Every alert becomes one event, ``alert`` (delivered) or ``alert_failed`` (which
  destinations failed after how many attempts), naming destinations by service only.
- **What to do first.** An alert is read on a phone's lock screen, which shows a line or two: the alert of a rig
  left unsafe leads with the stop, the instruments not made safe and what to do (:func:`_body`); the full
  message and where the journal has it all follow.
- **URLs are secrets.** Webhook URLs carry their credentials, so they are never logged, shown or journalled
  (apprise's own logger is silenced, it prints URLs when debugging). ``${VAR}`` in a URL is read from the
  environment when the alert is sent, so the secret can stay out of the campaign file and the journal.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labloop.core.text import plural, shell_word
from labloop.orchestrator.config.alert_urls import expand, silence_apprise
from labloop.orchestrator.journal.store import UNSAFE, Event, Journal, left_unsafe, with_advice
from labloop.orchestrator.loop.rig import PersonAsk, Wait
from labloop.orchestrator.loop.stalls import STALLED

log = logging.getLogger(__name__)

#: event kinds that need a person
ALERT_KINDS = frozenset({"finished", "stopped", "interrupted", "cluster_lost", "awaiting_approval", "operator_waiting",
                         UNSAFE, STALLED})
#: the kinds whose alert is apprise's failure type: the run stopped on its own, the rig was left unsafe, or an
#: instrument's call has not returned long after it should have
FAILURE_KINDS = frozenset({"stopped", "cluster_lost", UNSAFE, STALLED})
ATTEMPTS = 3
#: pause before the 2nd attempt; doubles after each further failure
BACKOFF_S = 0.5
#: how often the journal is checked for new events
POLL_S = 0.5
#: apprise's per-request connect/read timeout, so one attempt cannot hang
REQUEST_TIMEOUT_S = 4.0
#: events read per poll (far more than a run writes in POLL_S)
EVENTS_PER_POLL = 200
#: how long a question may go unanswered before the person is alerted (one answered by a script never is)
PERSON_GRACE_S = 2.0


class Alerter:
    """Watches ``journal`` for events that need a person and sends each to every URL, from a background thread.

    ``asking`` is how the rig asks a person (its questions left unanswered alert, :meth:`_note_waiting`).
    Use as a context manager around a run: events journalled before it starts are not alerted (a resumed
    campaign does not repeat the previous run's stop); on exit the last events are sent, waiting at most
    :meth:`drain_limit_s`.
    """

    def __init__(self, urls: Sequence[str], journal: Journal, campaign: str, *, asking: PersonAsk | None = None,
                 attempts: int = ATTEMPTS, backoff_s: float = BACKOFF_S) -> None:
        self.urls = list(urls)
        self.asking = asking
        self._noted: Wait | None = None  # the last question journalled as operator_waiting
        self.journal = journal
        self.campaign = campaign
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="labloop-alerts", daemon=True)
        self._seen = 0

    def drain_limit_s(self) -> float:
        """The longest the last alert can take: every attempt timing out, plus the pauses between them."""
        pauses = sum(self.backoff_s * 2 ** k for k in range(self.attempts - 1))
        return POLL_S + len(self.urls) * (self.attempts * 2 * REQUEST_TIMEOUT_S + pauses)

    def __enter__(self) -> Alerter:
        events = self.journal.events(last=1)
        self._seen = events[-1].id if events else 0
        if self.urls:
            silence_apprise()
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.urls:
            return
        self._stop.set()
        self._thread.join(self.drain_limit_s())
        if self._thread.is_alive():
            log.warning("alerts: the last alert was still being sent when the run ended")

    def _watch(self) -> None:
        while True:
            stopping = self._stop.wait(POLL_S)
            try:
                self._note_waiting()
                for event in self.journal.events(last=EVENTS_PER_POLL):
                    if event.id > self._seen:
                        self._seen = event.id
                        if _alerts(event):
                            self._send(event)
            except Exception:  # a journal closed under us, a disk error: alerts must never take the run down
                log.exception("alerts: watching the journal failed; no further alerts this run")
                return
            if stopping:
                return

    def _note_waiting(self) -> None:
        """Journal the question a person has left unanswered for :data:`PERSON_GRACE_S`, once, as
        ``operator_waiting`` (which alerts), with what it asks and the experiment it is part of."""
        wait = self.asking.waiting if self.asking is not None else None
        if wait is None or wait is self._noted or (datetime.now(UTC) - wait.since).total_seconds() < PERSON_GRACE_S:
            return
        self._noted = wait
        running = self.journal.experiments(states=("running",))
        experiment = running[-1].id if running else None
        what = wait.question.strip().rstrip(":").strip()
        self.journal.add_event("operator_waiting", (f"experiment {experiment}: " if experiment else "")
                               + f"a person is waited for at the console: {what}", experiment_id=experiment)

    def _send(self, event: Event) -> None:
        """``event``'s alert to every destination, each retried on its own (a delivered one is never sent twice),
        titled by :func:`_what`, typed by :func:`_notify_type`, its text :func:`_body`."""
        import apprise

        title, notify_type = f"labloop {self.campaign}: {_what(event)}", _notify_type(event)
        failed: dict[str, str] = {}
        for index, url in enumerate(self.urls):
            service = f"#{index + 1}"
            delivered = False
            for attempt in range(self.attempts):
                if attempt:
                    time.sleep(self.backoff_s * 2 ** (attempt - 1))
                try:
                    plugin: Any = apprise.Apprise.instantiate(expand(url))
                    if plugin is None:
                        break
                    service = f"#{index + 1} ({plugin.service_name})"
                    _set_timeouts(plugin)
                    delivered = bool(plugin.notify(body=_body(event, self.journal.path), title=title,
                                                   notify_type=notify_type))
                except Exception as exc:  # apprise plugins may raise on odd network failures
                    log.debug("alerts: destination %s raised %s", service, type(exc).__name__)
                if delivered:
                    break
            if not delivered:
                failed[service] = f"not delivered after {self.attempts} attempts"
        summary = {"alert_for": event.id, "kind": event.kind, "destinations": len(self.urls),
                   "delivered": len(self.urls) - len(failed), "failed": failed}
        if failed:
            text = f"alert '{title}' failed for {', '.join(failed)} after {self.attempts} attempts each"
            log.warning("%s", text)
            self.journal.add_event("alert_failed", text, data=summary)
        else:
            log.info("alert sent: %s", title)
            sent = f"{len(self.urls)} {plural(len(self.urls), 'destination')}"
            self.journal.add_event("alert", f"alert '{title}' sent to {sent}", data=summary)


def _alerts(event: Event) -> bool:
    """Whether ``event`` needs a person. One stop alerts once: an ``interrupted`` event of one experiment is the
    journal's record of it (:meth:`Journal.mark_interrupted_on_resume`), and the stop's own event, which names every
    experiment it interrupted, is the alert."""
    return event.kind in ALERT_KINDS and not (event.kind == "interrupted" and event.experiment_id is not None)


def _notify_type(event: Event) -> str:
    """apprise's type of the alert for ``event`` (a destination colours or files it by type): a failure when the
    run stopped on its own or the rig was left unsafe, a warning when a person stopped it, information when a
    person is waited for, a success when the campaign finished."""
    from apprise import NotifyType

    if event.kind in FAILURE_KINDS or left_unsafe(event.kind, event.data):
        return NotifyType.FAILURE.value
    return {"finished": NotifyType.SUCCESS, "interrupted": NotifyType.WARNING}.get(event.kind, NotifyType.INFO).value


def _what(event: Event) -> str:
    """The end of the alert's title: the event's kind, and that the rig was left unsafe when a stop says so (an
    operator reading only titles must see it)."""
    what = event.kind.replace("_", " ")
    return what if event.kind == UNSAFE or not left_unsafe(event.kind, event.data) else f"{what}, rig unsafe"


def _body(event: Event, store: Path) -> str:
    """The alert's text: the event's message with its advice; for a rig left unsafe, first the stop, the
    instruments not made safe and what to do, the advice (or, without one, to check them at once), so the first
    150-odd characters, what a phone's lock screen shows, say it; then the message (and what it does not name of
    the instruments' failures). Why: that alert was one run of 700-800 characters whose first 400 were the
    exception of a vanished port, what to do last (an operator's trial). Every alert ends with
    :func:`_where`."""
    full = with_advice(event.message, event.data)
    unsafe = event.data.get("unsafe") if isinstance(event.data, dict) else None
    if not left_unsafe(event.kind, event.data) or not isinstance(unsafe, list) or not unsafe:
        return f"{full}\n\n{_where(store)}"
    names = [str(u).split(":", 1)[0] for u in unsafe]
    failed, advice = event.data.get("experiments"), event.data.get("advice")
    stop = {"finished": "Finished", "interrupted": "Interrupted"}.get(event.kind, "Stopped")
    if isinstance(failed, list) and len(failed) == 1 and f"after experiment {failed[0]} failed" in event.message:
        stop += f" after experiment {failed[0]} failed"
    if not isinstance(advice, str) or not advice:
        them, where = ("it", "the instrument") if len(names) == 1 else ("them", "the instruments")
        advice = f"check {them} at {where} now (a pump may still be pumping, a cell still be on)"
    unnamed = [str(u) for u in unsafe if str(u) not in event.message]
    happened = event.message + (f"; NOT made safe: {'; '.join(unnamed)}" if unnamed else "")
    return (f"{stop}; {' and '.join(names)} NOT made safe. To do: {advice}\n\nWhat happened: {happened}\n\n"
            f"{_where(store)}")


def _where(store: Path) -> str:
    """Which journal, on which machine, an alert is of: ``All of it: labloop log /ABSOLUTE/STORE (on HOST)``. Why:
    every alert was titled by the campaign's name alone, so several journals of one campaign, or runs on several
    machines, sent alerts nobody could tell apart, and a finished or interrupted one said no path at all (an
    operator's trial)."""
    return f"All of it: labloop log {shell_word(store.absolute())} (on {socket.gethostname()})"


def _set_timeouts(plugin: Any) -> None:
    """Bound one attempt: apprise's HTTP plugins read these (connect, read) timeouts."""
    for name in ("socket_connect_timeout", "socket_read_timeout"):
        if hasattr(plugin, name):
            setattr(plugin, name, REQUEST_TIMEOUT_S)
