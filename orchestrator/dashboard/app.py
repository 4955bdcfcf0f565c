"""The dashboard's web app: one page, a JSON API and a server-sent-events stream over one campaign's journal.

Why it is built this way:

- **Reads never get in the runner's way.** One thread reads the journal through one read-only connection
  (SQLite WAL: readers never block the writer), every :data:`REFRESH_S`, and rebuilds the campaign document
  only when the journal's ``data_version`` says another connection committed, or a run took or left the
  store's lock (``run_active``: a run that ends commits nothing after it lets go). Requests and event streams
  are served the encoded bytes from memory, so twenty browsers polling ten times a second cost the journal
  nothing and the cores little (bench/dashboard.py); a document is at most :data:`REFRESH_S` older than the
  journal.
- **Consistent rows.** An experiment, its proposal and its measurement come from one SQL query
  (:meth:`Journal.experiments`), and the runner commits each state change in one transaction, so no reader
  ever sees an experiment ``done`` without its measurement.
- **The page draws, the server computes.** Plot series come from :mod:`labloop.orchestrator.journal.plot_data`, the
  same functions ``labloop report`` plots, and the browser only draws them (``static/dashboard.js``, plain
  SVG; no code is fetched from the network).
- **Safe by default.** Read endpoints show no file paths (the store, model paths and the folders of paths in
  events are cut; a device's path stays whole, to name its port) and no campaign secrets (the snapshot holds only the
  objective, planner and budget sections, never ``alerts``). Writes (approve/veto) need the token, compared
  in constant time, and must name the batch they decide (400 without it, 409 if another batch waits): a
  write that named none approved whatever waited, possibly a batch that arrived after the operator looked.
  The page sets a Content-Security-Policy that allows only its own scripts, and the script renders every
  journal text with ``textContent``. Host headers other than the bound host are refused
  (DNS rebinding).
- **The file at the path, not the file once opened.** A journal deleted and begun afresh at the same path (the
  way docs/running.md starts a campaign over) left the page on the old file's connection, showing the old batch,
  while an approval, which opens the store by its path, decided the new one's batch of the same ids (a security
  trial). The watcher follows the path (:meth:`CampaignSource.refresh`), and an approval is refused unless the
  journal it writes holds the campaign the page shows, and the one the client names (``campaign``, its
  ``created_at``).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import os
import re
import socket
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labloop.core.errors import JournalError, LabloopError, NotAwaitingApproval
from labloop.core.text import printable, said_problem
from labloop.orchestrator.journal.lock import being_run
from labloop.orchestrator.journal.plot_data import plot_series
from labloop.orchestrator.journal.store import VETOED, Journal
from labloop.orchestrator.journal.view import snapshot

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
#: how often the journal is checked for commits
REFRESH_S = 0.1
#: how often an event stream checks for a new document (the page updates within both plus a draw)
STREAM_POLL_S = 0.1
#: a comment line this often keeps proxies and the browser from closing an idle stream
KEEPALIVE_S = 15.0
TOKEN_HEADER = "x-labloop-token"
#: the largest request body accepted (a veto list of a batch is a few hundred bytes)
MAX_BODY = 64 * 1024
#: an experiment id as a path writes it: ASCII digits, at most 18 (a journal's ids are SQLite integers)
EXPERIMENT_ID = re.compile(r"[0-9]{1,18}")
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
#: the folders of an absolute POSIX path (``/home/lab/runs/`` in ``/home/lab/runs/a.db``); not a device's
#: (``/dev/pts/0``, ``/dev/ttyUSB0``): cut to ``0`` it named no port, and it tells nothing of the file layout. A
#: molecule's SMILES looks alike after a branch or a bracket atom (``C(/C=C/Cl)``): the campaign's own are kept
#: whole (:func:`without_paths`)
_FOLDERS = re.compile(r"(?<![\w.~-])(?!/dev/)/(?:[^/\s'\"]+/)+")
#: what stands in for the n-th molecule kept whole while the folders are cut: characters of Unicode's private use
#: area, which no path, message or SMILES holds
_KEPT = "\ue000{}\ue001"
_KEPT_AGAIN = re.compile("\ue000(\\d+)\ue001")
#: the same inside a single-quoted shell word (``'/home/lab/Lab Data/a.db'``, :func:`labloop.core.text.shell_word`),
#: whose folders may hold spaces: :data:`_FOLDERS` alone stopped at the first one and showed the rest (a trial)
_QUOTED_FOLDERS = re.compile(r"(?<=')(?!/dev/)/(?:[^/']+/)+(?=[^/']*')")
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def is_wildcard(host: str) -> bool:
    """Whether ``host`` is an address that listens on every interface: ``0.0.0.0``, ``::``, and what the socket
    library reads as them (``0``, ``0.0``); an empty one too. Why: ``--host 0`` listened everywhere while the page
    took ``0`` for the only host name to answer, and refused every request (a security trial)."""
    if not host:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        pass
    try:
        return socket.inet_aton(host) == bytes(4)
    except OSError:
        return False


@lru_cache(maxsize=1)
def machine_names() -> tuple[str, ...]:
    """The names and addresses a browser may use to reach this machine: its host name, its fully qualified name and
    what they resolve to (IPv6 ones bracketed, as a Host header writes them), with the loopback ones. A dashboard on
    a wildcard address answers only requests naming one of them (:func:`create_app`): accepting any Host let a web
    page anywhere read the campaign by DNS rebinding (a security trial). Looked up once: the app and the start-up
    warning both ask."""
    names = {*_LOCAL_HOSTS}
    for name in {socket.gethostname(), socket.getfqdn()}:
        names.add(name)
        try:
            infos = socket.getaddrinfo(name, None)
        except OSError:  # a name the resolver does not know: the name alone
            continue
        names.update(f"[{info[4][0]}]" if info[0] == socket.AF_INET6 else str(info[4][0]) for info in infos)
    return tuple(sorted(names))


def without_paths(value: Any, molecules: Sequence[str] = ()) -> Any:
    """``value`` with the folders of every absolute path cut (``/home/lab/runs/a.db`` -> ``a.db``): the page
    is for people who may not see the lab computer's file layout. Only for free text (messages, causes,
    action parameters), which may quote one of the campaign's ``molecules`` (a warning does), each kept whole: a
    SMILES' bond-direction slashes after a branch read as folders, and a warning's ``C(/C=C/Cl)`` was shown as
    ``C(Cl)`` (a chemist's trial); telling them apart by the characters a folder's name holds leaked folders such as
    ``/data/run=3/`` (a review)."""
    return _cut(value, _kept(molecules))


def _kept(molecules: Sequence[str]) -> re.Pattern[str] | None:
    """A pattern of the ``molecules`` that hold a slash (the longest first: one may hold another), or None."""
    kept = sorted({m for m in molecules if "/" in m}, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, kept))) if kept else None


def _cut(value: Any, molecules: re.Pattern[str] | None) -> Any:
    """:func:`without_paths` of ``value``, the campaign's molecules with a slash matched by ``molecules``."""
    if isinstance(value, str):
        found: list[str] = []

        def keep(match: re.Match[str]) -> str:
            found.append(match.group())
            return _KEPT.format(len(found) - 1)

        masked = value if molecules is None else molecules.sub(keep, value)
        cut = _FOLDERS.sub("", _QUOTED_FOLDERS.sub("", masked))
        return _KEPT_AGAIN.sub(lambda match: found[int(match.group(1))], cut) if found else cut
    if isinstance(value, dict):
        return {k: _cut(v, molecules) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut(v, molecules) for v in value]
    return value


def public_snapshot(snap: dict[str, Any]) -> dict[str, Any]:
    """The ``labloop log --json`` document as the dashboard serves it (``snap`` is changed in place): the same
    keys and values, except the store is named by its file name, model weights paths are dropped and paths
    in event messages, event data, failure causes, how the last run ended and a live run's wait are cut (not in what
    a person wrote deciding a batch: the ``approved`` event and a veto's cause are shown as written)."""
    snap["campaign"]["store"] = Path(snap["campaign"]["store"]).name
    snap["progress"]["ended"] = without_paths(snap["progress"]["ended"])  # a stop's advice names the store
    if snap["progress"]["now"] is not None and "message" in snap["progress"]["now"]:  # a wait's, the runner's words
        snap["progress"]["now"]["message"] = without_paths(snap["progress"]["now"]["message"])
    for model in snap["models"]:
        model["weights_path"] = None
    molecules = _kept([e["smiles"] for e in snap["experiments"]])  # a warning quotes its molecule
    # what a person wrote deciding a batch is shown as written: its reason's "O=C(/C=C/c1ccccc1)O" (cinnamic acid,
    # no molecule of the campaign) was shown as "O=C(c1ccccc1)O", another molecule (a security trial)
    for event in snap["events"]:
        if event["kind"] != "approved":
            event["message"], event["data"] = _cut(event["message"], molecules), _cut(event["data"], molecules)
    for row in snap["experiments"] + snap["best"]:
        if not (row["cause"] or "").startswith(VETOED):
            row["cause"] = _cut(row["cause"], molecules)
    return snap


class CampaignSource:
    """The journal as the dashboard reads it: one read-only connection, the documents cached per commit."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.journal = Journal.open(store, readonly=True)
        self._file = _file_of(store)  # the file the connection reads (a file put at the path later is another)
        self._lock = threading.Lock()
        self._version: tuple[int, bool] | None = None  # the journal's data_version, and whether a run holds it
        #: (version, snapshot, /api/campaign bytes, stream message bytes), replaced whole (readers need no lock)
        self.current: tuple[tuple[int, bool], dict[str, Any], bytes, bytes] = ((-1, False), {}, b"", b"")
        #: why the journal cannot be read now (None while it can), as the page may see it (no paths)
        self.problem: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="dashboard-journal", daemon=True)
        self.refresh()

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.journal.close()

    def _watch(self) -> None:
        while not self._stop.wait(REFRESH_S):
            try:
                self.refresh()
            except Exception as exc:  # a damaged row or a disk error must not end the page's updates for good
                self.unreadable(exc)

    def unreadable(self, exc: Exception) -> str:
        """Note that reading the journal failed with ``exc`` and return what the page is told (without paths).
        Logged once per problem, not at every retry: the watcher tries again every :data:`REFRESH_S`, and a
        damaged row stays damaged until someone restores the file (it printed a traceback ten times a
        second). Meanwhile the page keeps the document as last read."""
        text = without_paths(str(exc) if isinstance(exc, LabloopError) else f"unexpected {type(exc).__name__}: {exc}")
        if text != self.problem:
            self.problem = text
            if isinstance(exc, LabloopError):
                log.error("dashboard: %s (the page shows the journal as last read)", exc)
            else:  # a bug: its traceback, once
                log.error("dashboard: reading the journal failed (the page shows it as last read)", exc_info=exc)
        return text

    def refresh(self) -> None:
        """Rebuild the documents if the journal changed since the last call (a problem noted before is over
        once the journal reads again). A file gone from the path is a problem (the page keeps it as last read); a
        new one there is read from then on, as the journal at the path."""
        with self._lock:  # a run that ends writes nothing more, but its lock goes: that changes the document too
            self._follow_the_path()
            version = (self.journal.data_version(), being_run(self.store))
            if version != self._version:
                snap = public_snapshot(snapshot(self.journal))
                stream = json.dumps({"campaign": snap, "plots": plot_series(snap)}, allow_nan=False).encode()
                self.current = (version, snap, json.dumps(snap, allow_nan=False).encode(), stream)
                self._version = version
                if self.problem is not None:
                    log.warning("dashboard: the journal reads again")
                    self.problem = None

    def _follow_the_path(self) -> None:
        """Open the file now at the store's path if it is not the one read (a journal deleted and begun afresh
        there); JournalError if none is."""
        try:
            now = _file_of(self.store)
        except FileNotFoundError:
            raise JournalError(f"{self.store}: the journal file is gone (deleted or moved); the page shows it as "
                               "last read") from None
        if now == self._file:
            return
        journal = Journal.open(self.store, readonly=True)  # JournalError: not a journal (yet), said as a problem
        self.journal.close()
        self.journal, self._file, self._version = journal, now, None
        info = journal.campaign_info()
        log.warning("dashboard: %s is another file now (campaign %r, created %s): the page shows it", self.store,
                    info.name, info.created_at)

    def shown_campaign(self) -> str | None:
        """The ``created_at`` of the campaign the page shows (a journal's identity), None before it is read."""
        return self.current[1]["campaign"]["created_at"] if self.current[1] else None

    def experiment(self, experiment_id: int) -> dict[str, Any] | None:
        """One experiment with its actions, raw voltammograms (current attempt) and analysis; None if unknown."""
        self.refresh()
        row = next((e for e in self.current[1]["experiments"] if e["id"] == experiment_id), None)
        if row is None:
            return None
        analysis = self.journal.analysis(experiment_id)
        return {
            "experiment": row,
            "actions": without_paths([asdict(a) for a in self.journal.actions(experiment_id)], [row["smiles"]]),
            "voltammograms": [{"potential_v": v.potential_v.tolist(), "current_a": v.current_a.tolist(),
                               "reference": v.reference, "scan_rate_v_s": v.params.scan_rate_v_s}
                              for v in self.journal.voltammograms(experiment_id)],
            "analysis": None if analysis is None else analysis.to_dict(),
        }


def create_app(store: Path, token: str, *, host: str = "127.0.0.1", also_named: Sequence[str] = ()) -> Starlette:
    """The dashboard of the journal at ``store``; approve/veto need ``token``. ``host`` is the bound address:
    requests naming another host are refused, and on a wildcard address those naming none of the machine's names
    (:func:`machine_names`) or ``also_named`` (a DNS alias, an address the resolver does not give)."""
    source = CampaignSource(store)

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def campaign(request: Request) -> Response:
        if source.problem is not None:
            return _unreadable(source.problem)
        return Response(source.current[2], media_type="application/json", headers={"Cache-Control": "no-store"})

    damaged: set[str] = set()  # the damaged experiment rows already logged

    async def experiment(request: Request) -> Response:
        written = request.path_params["experiment_id"]
        if not EXPERIMENT_ID.fullmatch(written):  # not Starlette's int: 5,000 digits were its 500 and traceback
            return JSONResponse({"error": "no such experiment"}, status_code=404)
        try:
            found = await run_in_threadpool(source.experiment, int(written))
        except JournalError as exc:  # a damaged row of this experiment: this answer only (the campaign reads on)
            text = without_paths(str(exc))
            if text != source.problem and text not in damaged:  # said once, whether the watcher said it or not
                damaged.add(text)
                log.error("dashboard: %s", exc)
            return _unreadable(text)
        if found is None:
            return JSONResponse({"error": "no such experiment"}, status_code=404)
        return JSONResponse(found, headers={"Cache-Control": "no-store"})

    async def stream(request: Request) -> Response:
        return StreamingResponse(_events(request, source), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    refused = 0  # writes refused for a wrong token, to say in the log

    async def approve(request: Request) -> Response:
        nonlocal refused
        if not hmac.compare_digest(request.headers.get(TOKEN_HEADER, "").encode(), token.encode()):
            refused += 1
            if refused in (1, 10) or refused % 1000 == 0:  # said, not once per guess of a guesser
                client = request.client.host if request.client is not None else "an unknown address"
                log.warning("dashboard: a write with a wrong token from %s refused (%d so far)", client, refused)
            return JSONResponse({"error": "a valid token is needed to approve or veto (the write token `labloop "
                                          "dashboard` printed at start, or LABLOOP_DASHBOARD_TOKEN's)"},
                                status_code=403)
        try:
            body = await request.json()
            veto, batch, named = body.get("veto", []), body.get("batch"), body.get("campaign")
            if not _ids(veto) or not (batch is None or _ids(batch)) or not (named is None or isinstance(named, str)):
                raise ValueError
            # who decided and why, journalled as `labloop approve --by/--reason` are: every token holder was
            # "the dashboard" (a security trial)
            by, reason = body.get("by"), body.get("reason")
            if not all(said is None or isinstance(said, str) for said in (by, reason)):
                raise ValueError
        except (ValueError, AttributeError, RecursionError):  # RecursionError: JSON nested thousands deep
            return JSONResponse({"error": 'body must be JSON like {"veto": [3, 5], "batch": [3, 4, 5, 6]} (and '
                                          '"campaign": its created_at, as GET /api/campaign shows it; "by" and '
                                          '"reason": text)'},
                                status_code=400)
        for field, said in (("by", by), ("reason", reason)):
            if said is not None and (problem := said_problem(said)) is not None:
                return JSONResponse({"error": f"{field}: {problem}"}, status_code=400)
        if not batch:  # a write that does not say which batch could approve one that arrived since, unseen
            return JSONResponse({"error": 'say which batch you decide: "batch", the ids of the experiments awaiting '
                                          'approval as you saw them (GET /api/campaign), e.g. {"veto": [5], '
                                          '"batch": [3, 4, 5, 6]}'}, status_code=400)
        if source.problem is not None:  # a journal gone from its path was "cannot be written here" (403)
            return _unreadable(source.problem)
        try:
            shown = source.shown_campaign()
            approved, vetoed = await run_in_threadpool(_decide, store, veto, batch,
                                                       [c for c in (named, shown) if c is not None],
                                                       by and by.strip(), reason and reason.strip())
        except NotAwaitingApproval as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        except JournalError as exc:  # a store this account may read but not write
            return JSONResponse({"error": f"the journal cannot be written here: {exc}"}, status_code=403)
        log.info("dashboard: approved %s, vetoed %s", approved, vetoed)
        return JSONResponse({"approved": approved, "vetoed": vetoed})

    routes = [
        Route("/", page),
        Route("/api/campaign", campaign),
        Route("/api/experiments/{experiment_id}", experiment),
        Route("/api/stream", stream),
        Route("/api/approve", approve, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    if is_wildcard(host):
        hosts = sorted({*machine_names(), *also_named})
    else:
        hosts = sorted({host, *_LOCAL_HOSTS, *also_named} if host in _LOCAL_HOSTS else {host, *also_named})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        source.start()
        yield
        await run_in_threadpool(source.close)

    app = Starlette(routes=routes, middleware=[Middleware(RefusedHostsSaid, answers=hosts),
                                               Middleware(TrustedHostMiddleware, allowed_hosts=hosts),
                                               Middleware(PageHeaders)],
                    lifespan=lifespan, max_body_size=MAX_BODY)
    app.state.source = source
    #: event streams end when this says so (the server sets it to its own shutdown flag), so Ctrl-C never
    #: waits for, or cancels, a browser's open stream
    app.state.should_exit = lambda: False
    return app


class RefusedHostsSaid:
    """Says in the dashboard's log, once per host, a request the host check (Starlette's TrustedHostMiddleware, inside
    it) refused, with the names it answers and how to add one. Why: a colleague who opened the page by the machine's
    address got "Invalid host header" and the person at the console heard nothing of it (a security trial); the
    answer itself stays Starlette's, which tells a stranger nothing."""

    def __init__(self, app: ASGIApp, answers: Sequence[str]) -> None:
        self.app = app
        self.answers = answers
        self.said: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = False

        async def watching(message: Message) -> None:
            nonlocal refused
            if message["type"] == "http.response.start":
                refused = message["status"] == 400
            elif refused and message["type"] == "http.response.body" and message.get("body") == b"Invalid host header":
                host = printable(Headers(scope=scope).get("host", "")[:200])
                if host not in self.said and len(self.said) < MAX_HOSTS_SAID:
                    self.said.add(host)
                    log.warning("dashboard: a request for host %r refused: the page answers %s (start it with "
                                "--allowed-host NAME to answer NAME too: docs/dashboard.md)", host,
                                ", ".join(self.answers))
            await send(message)

        await self.app(scope, receive, watching)


#: how many refused hosts :class:`RefusedHostsSaid` says (a scanner's thousand names are not a thousand lines)
MAX_HOSTS_SAID = 10


class PageHeaders:
    """Gives every answer :data:`PAGE_HEADERS` (those it sets itself stay). Why every, not the page's route alone: the
    page is also ``/static/index.html``, which the static files answered without them, so a page of another local
    server could frame it, token and approve button included, and a click in the frame approved a batch (a security
    review)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in PAGE_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)


def _unreadable(problem: str) -> Response:
    """The answer while the journal cannot be read: 503 (the server works, the journal it serves does not) with
    the one line that says why."""
    return JSONResponse({"error": f"the journal cannot be read: {problem}"}, status_code=503,
                        headers={"Cache-Control": "no-store"})


def _ids(value: object) -> bool:
    """Whether ``value`` is a list of experiment ids (integers, not booleans)."""
    return isinstance(value, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in value)


def _file_of(path: Path) -> tuple[int, int]:
    """Which file ``path`` is now (device, inode): a file the journal's connection holds open keeps its inode, so
    another file put at the path never has it."""
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def _decide(store: Path, veto: list[int], batch: list[int], campaigns: Sequence[str], by: str | None = None,
            reason: str | None = None) -> tuple[list[int], list[int]]:
    """Approve the waiting batch except ``veto``, through a short-lived writable connection; ``batch`` (the
    ids the page showed) must be the batch waiting, so a late click never decides a batch nobody saw, and the
    journal must hold each of ``campaigns`` (``created_at``: the page's, the client's): ids begin at 1 in every
    journal, so a batch of another campaign put at the path has the same ones. ``by`` (a person's name, journalled as
    ``NAME with the dashboard``) and ``reason`` as the client gave them."""
    with Journal.open(store) as journal:
        info = journal.campaign_info()
        other = next((c for c in campaigns if c != info.created_at), None)
        if other is not None:
            raise NotAwaitingApproval(f"{store.name} now holds campaign {info.name!r} created {info.created_at}, not "
                                      f"the one created {other} decided on (the journal was begun afresh at its "
                                      "path): look at it again")
        return journal.approve(veto=veto, by=f"{by} with the dashboard" if by else "dashboard", batch=batch,
                               reason=reason)


async def _events(request: Request, source: CampaignSource) -> AsyncIterator[bytes]:
    """The event stream: the whole campaign document and its plot series whenever the journal changes, and a
    ``problem`` event when it cannot be read, until the client leaves or the server stops."""
    shown: tuple[int, bool] | None = None
    told: str | None = None  # the problem the client was told of last (None: none, or it is over)
    quiet = 0.0
    stopping = request.app.state.should_exit
    while not stopping() and not await request.is_disconnected():
        version, _, _, message = source.current
        problem = source.problem
        sent = False
        if version != shown:
            shown, sent = version, True
            yield b"event: campaign\ndata: " + message + b"\n\n"
        if problem != told:  # after the document: the page then says the journal is unreadable
            told = problem
            if problem is not None:
                sent = True
                yield b"event: problem\ndata: " + json.dumps({"error": problem}).encode() + b"\n\n"
        if sent:
            quiet = 0.0
        elif quiet >= KEEPALIVE_S:
            quiet = 0.0
            yield b": keepalive\n\n"
        await asyncio.sleep(STREAM_POLL_S)
        quiet += STREAM_POLL_S
