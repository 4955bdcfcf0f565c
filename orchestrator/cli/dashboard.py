"""`labloop dashboard STORE`: serve a live page over a campaign's journal (``orchestrator/dashboard``); and
`labloop approve STORE --batch ID [--batch ID]... [--veto ID]...`: decide a batch held by ``planner.approve``
from a terminal.

Why the socket is bound here and not by uvicorn: a port already in use, or a host that is not this
machine's, is bad input and must end in one ``error:`` line with exit 2 (uvicorn would log and exit 1),
and ``--port 0`` lets the kernel choose a free port whose URL is printed first (scripts and tests read it).
"""

from __future__ import annotations

import errno
import getpass
import ipaddress
import logging
import re
import secrets
import socket
from pathlib import Path
from urllib.parse import quote

import click

from labloop.core.errors import JournalError
from labloop.core.text import said_problem, shell_word
from labloop.orchestrator import console
from labloop.orchestrator.journal.lock import being_run
from labloop.orchestrator.journal.store import Journal, State
from labloop.orchestrator.loop.interrupts import EXIT_INTERRUPTED

log = logging.getLogger(__name__)

#: uvicorn gives open requests this long to end when the server stops (Ctrl-C; event streams end at once)
SHUTDOWN_GRACE_S = 1


@click.command(help="Serve a live dashboard of a campaign's journal (read-only, except approve/veto with the token).")
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but 127.0.0.1 exposes the page to the network.")
@click.option("--port", default=8050, show_default=True, type=click.IntRange(0, 65535),
              help="Port (0: any free port; the URL is printed).")
@click.option("--token", envvar="LABLOOP_DASHBOARD_TOKEN", show_envvar=True,
              help="The write token for approve/veto (default: a random one, printed); from the environment "
                   "variable, other users of the machine cannot read it in the process list, and it is not "
                   "printed.")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME", callback=lambda _c, _p, v: _hosts(v),
              help="Another name or address browsers reach this machine by (a DNS alias; *.example.org for its "
                   "subdomains), for a --host other than 127.0.0.1; repeatable. Requests naming an unknown host are "
                   "refused (no DNS rebinding).")
@click.pass_context
def dashboard(ctx: click.Context, store: Path, host: str, port: int, token: str | None,
              allowed_hosts: tuple[str, ...]) -> None:
    import uvicorn

    from labloop.orchestrator.dashboard import create_app
    from labloop.orchestrator.dashboard.app import is_wildcard, machine_names

    if not store.exists() and not store.is_symlink():  # started with the run, before it made the journal (a trial)
        raise JournalError(f"{store}: no such journal (yet? a run creates it as it starts: start the dashboard once "
                           "`labloop run` has begun, or check the path)")
    Journal.open(store, readonly=True).close()  # a store that is not a journal: one line, exit 2
    from_env = ctx.get_parameter_source("token") == click.core.ParameterSource.ENVIRONMENT
    if token is not None and (problem := _token_problem(token)) is not None:
        # a value from the environment is named as such: the command line has no --token to look for
        raise click.BadParameter(problem, param_hint="LABLOOP_DASHBOARD_TOKEN (the environment variable)" if from_env
                                 else "--token")
    token = token or secrets.token_urlsafe(18)
    wildcard = is_wildcard(host)
    # reads the journal whole: a damaged row is refused before the URL
    app = create_app(store, token, host=host, also_named=allowed_hosts)
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    # a wildcard address is no address to open: the machine's name is (an operator's trial got http://0.0.0.0:8054/)
    named = socket.gethostname() if wildcard else host
    shown_host = f"[{named}]" if ":" in named else named
    url = f"http://{shown_host}:{bound_port}/"
    if from_env:  # kept out of the process list, and so out of this output, which a service's log keeps
        console.out.print(f"dashboard: {url}", markup=False, highlight=False, soft_wrap=True)
        console.out.print("write token (approve/veto): LABLOOP_DASHBOARD_TOKEN's, not printed; open "
                          f"{url}#token=<that token> to approve or veto from the page", markup=False,
                          highlight=False, soft_wrap=True)
    else:
        # percent-encoded: the page reads the fragment as a query string (dashboard.js), where a token's +, &, % or
        # # would become a space, end the value or break the address
        console.out.print(f"dashboard: {url}#token={quote(token, safe='')}", markup=False, highlight=False,
                          soft_wrap=True)
        console.out.print(f"write token (approve/veto): {token}", markup=False, highlight=False, soft_wrap=True)
    console.out.file.flush()
    if host not in ("127.0.0.1", "localhost", "::1"):
        names = (f"; it answers requests to {', '.join(sorted({*machine_names(), *allowed_hosts}))} (--allowed-host "
                 "for another)" if wildcard else "")
        listening = f"[{host}]" if ":" in host else host
        console.err.print(f"warning: listening on {listening}: anyone who can reach this machine can read the page, "
                          f"and the write token crosses the network unencrypted (plain HTTP){names}", markup=False,
                          highlight=False, soft_wrap=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
                            lifespan="on")
    server = uvicorn.Server(config)
    app.state.should_exit = lambda: server.should_exit
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn raises it again once it has shut down
        # not "aborted", the word for a command cut short, which is how a dashboard ends (a newcomer's trial); and
        # whether the run it showed stops too is what an operator needs to know
        console.err.print("dashboard stopped; a run of its campaign, if one is live, goes on", markup=False,
                          highlight=False, soft_wrap=True)
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None


def _token_problem(token: str) -> str | None:
    """Why ``token`` cannot be the write token, or None. The page sends it in an HTTP header, which holds no line
    break and whose ends lose their spaces, and compares it byte for byte (dashboard/app.py): a token of spaces, or
    with a newline (a file's content with its last line end), would be accepted here and match no approve/veto.
    What is wrong is said, the token is not shown."""
    if len(token) < 8:
        return "must be at least 8 characters"
    if not token.isascii() or not token.isprintable() or any(char.isspace() for char in token):
        return "must be printable ASCII without spaces or line breaks (it is sent in an HTTP header)"
    return None


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or :class:`click.BadParameter` naming the option."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise click.BadParameter(f"{host!r} is not an address of this machine ({exc.strerror})",
                                 param_hint="--host") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRNOTAVAIL:  # the host is not one of this machine's addresses
            raise click.BadParameter(f"cannot listen on {host} ({exc.strerror}): not an address of this machine",
                                     param_hint="--host") from None
        raise click.BadParameter(f"cannot listen on {host}:{port} ({exc.strerror}); choose another port",
                                 param_hint="--port") from None
    sock.listen(128)
    return sock


@click.command(help="Approve the batch a campaign with planner.approve holds (the runner then measures it); "
                    "--veto ID fails that experiment instead (the planner counts it against the molecule).",
               context_settings={"allow_extra_args": True})
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--veto", multiple=True, type=int, metavar="ID",
              help="An experiment id to veto (repeat the option for each id).")
@click.option("--batch", multiple=True, type=int, metavar="ID",
              help="An id of the batch you looked at, required (repeat the option for each id: --batch 3 --batch "
                   "4): refused if another batch is waiting by now.")
@click.option("--by", "person", metavar="NAME",
              help="Who decides, journalled with the decision (default: this account's login name).")
@click.option("--reason", metavar="TEXT", help="Why, journalled with the decision and each veto's cause.")
@click.pass_context
def approve(ctx: click.Context, store: Path, veto: tuple[int, ...], batch: tuple[int, ...], person: str | None,
            reason: str | None) -> None:
    # who and why, for the record: a lab head's trial found approvals journalled with neither
    person = _said_by("--by", person if person is not None else _login())
    reason = None if reason is None else _said_by("--reason", reason)
    if ctx.args:  # `--batch 3 4`: click said "Got unexpected extra argument (4)" (a newcomer's trial)
        raise click.UsageError(f"unexpected {' '.join(ctx.args)}: give one --batch or --veto per id, e.g. --batch 3 "
                               "--batch 4")
    with Journal.open(store) as journal:
        if not batch:  # as the dashboard's API asks for it: no decision on a batch nobody named (an operator's trial
            waiting = journal.experiments(states=(State.AWAITING_APPROVAL,))  # approved one with --veto 1 alone)
            if waiting:
                named = " ".join(f"--batch {e.id}" for e in waiting)
                raise click.UsageError(f"name the batch you decide on, each id: {named} (the batch waiting now; "
                                       f"`labloop log {shell_word(store)}` shows its molecules)")
        approved, vetoed = journal.approve(veto, by=f"{person} with labloop approve", batch=batch or None,
                                           reason=reason)
    listed = [", ".join(map(str, ids)) or "none" for ids in (approved, vetoed)]
    console.out.print(f"approved {listed[0]}; vetoed {listed[1]}", markup=False, highlight=False)
    if approved and not being_run(store):  # decided after the run stopped, it read as measured now (a trial)
        console.err.print(f"note: no run holds {store.name} now: `labloop resume {shell_word(store)}` measures the "
                          "approved ones", markup=False, highlight=False, soft_wrap=True)


def _login() -> str:
    """This account's login name, or ``an unnamed account`` where the system knows none (a container's uid)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "an unnamed account"


def _said_by(option: str, text: str) -> str:
    """``text`` stripped, refused (exit 2) as :func:`labloop.core.text.said_problem` says."""
    if (problem := said_problem(text)) is not None:
        raise click.BadParameter(problem, param_hint=option)
    return text.strip()


#: a host name as a Host header writes it without its port, or ``*.`` and one: what ``--allowed-host`` takes
_HOST_NAME = re.compile(r"(\*\.)?[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
                        r"[A-Za-z0-9])?)*")


def _hosts(values: tuple[str, ...]) -> tuple[str, ...]:
    """``--allowed-host``'s values as the page's host check takes them: a name, ``*.`` and a name, or an address (an
    IPv6 one bracketed, as a Host header writes it). Why checked here: ``lab*pc`` failed on the first request, inside
    the server, as a traceback; ``*`` alone switched the check off; ``name:8050`` could never match (a review)."""
    checked = []
    for value in values:
        try:
            address = ipaddress.ip_address(value.strip("[]"))
        except ValueError:
            if _HOST_NAME.fullmatch(value) is None:
                raise click.BadParameter(f"{value!r} is no host name or address (a name, *.NAME for its subdomains, or "
                                         "an IP address; no port, no other *)", param_hint="--allowed-host") from None
            checked.append(value)
        else:
            checked.append(f"[{address}]" if address.version == 6 else str(address))
    return tuple(checked)
