"""Where library-scale work runs: a Dask ``LocalCluster`` labloop starts and stops, or an existing cluster.

Why Dask distributed: it is the PyData stack's engine (pandas, numpy are already ours), runs as a
``LocalCluster`` on a laptop with nothing to set up, and as ``dask scheduler`` + ``dask worker`` processes
(or a cloud/HPC deployment) anywhere else, so a lab that outgrows one machine adds machines instead of
learning a new tool.

Default (no address): one single-threaded worker process per core on 127.0.0.1, closed when the work is
done; each worker's TensorFlow and BLAS are held to one thread so workers do not fight over cores. With an
address (``tcp://HOST:PORT``) labloop connects to that scheduler and leaves the cluster running afterwards.
A malformed or unreachable address, or a scheduler without workers, is :class:`SchedulerAddressError` (bad
input: one line, exit 2, before anything is written), as is a worker that runs another labloop at connect;
one that joins later with another labloop refuses the tasks it is given (:func:`on_same_labloop`); a scheduler
that goes away during a run is :class:`ClusterLostError` (exit 1; what was finished is kept, a re-run
continues).
"""

from __future__ import annotations

import logging
import re
import signal
import socket
import struct
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from labloop.core.errors import ClusterLostError, SchedulerAddressError, first_line
from labloop.core.signals import held_signals
from labloop.core.text import plural
from labloop.core.version import code_identity, code_version, installed_version, source_digest

if TYPE_CHECKING:
    from distributed import Client, LocalCluster

log = logging.getLogger(__name__)

#: seconds to wait for a scheduler named by address before calling it unreachable
CONNECT_TIMEOUT_S = 10
#: seconds a plain TCP connection to a scheduler's address may take (:func:`reach`): on a lab's network, a fraction
PROBE_TIMEOUT_S = 3
#: seconds a scheduler without workers is given for one to join: a worker started together with it takes a few
WORKER_GRACE_S = 5
#: below this many library rows ``auto`` works in this process: a cluster's start-up (workers importing
#: TensorFlow, the model sent to each) costs more than it saves
AUTO_CLUSTER_ROWS = 20_000
#: what a scheduler setting may say besides an address: decide by the library's size, a LocalCluster, no cluster
SCHEDULER_CHOICES = ("auto", "local", "none")
#: ``SCHEME://host:port``; a bare ``host:port`` means tcp, the only scheme labloop takes (:func:`normalise_address`)
_ADDRESS = re.compile(r"^(?:(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://)?"
                      r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")
#: the packages whose versions the workers are asked at connect (:func:`compared_versions`): those the numbers depend
#: on, each by the distributions that install it (TensorFlow's CPU builds are distributions of their own)
COMPARED_PACKAGES = {"rdkit": ("rdkit",), "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-intel"),
                     "numpy": ("numpy",), "scipy": ("scipy",), "scikit-learn": ("scikit-learn",),
                     "pandas": ("pandas",)}
#: one thread per worker process for TensorFlow and the BLAS: the cluster already runs one worker per core
_WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}


def normalise_address(address: str) -> str:
    """``tcp://HOST:PORT`` from what a user typed, or :class:`SchedulerAddressError` naming the problem. Only tcp:
    a ``tls://`` address needs certificates labloop has no way to be given, and a trial's took 42 s to fail in
    Dask's connect and left a traceback behind, so it is refused here, before anything is tried."""
    text = address.strip()
    match = _ADDRESS.match(text)
    scheme = None if match is None else (match["scheme"] or "tcp").lower()
    if scheme == "tls":
        raise SchedulerAddressError(f"scheduler address {address!r}: labloop takes tcp://HOST:PORT; TLS (tls://) is "
                                    "not supported")
    if match is not None and scheme == "tcp" and not 0 < int(match["port"]) < 65536:  # said as what it is (a trial)
        raise SchedulerAddressError(f"scheduler address {address!r}: port {int(match['port'])} is out of range "
                                    "(1-65535)")
    if match is None or scheme != "tcp":
        raise SchedulerAddressError(f"scheduler address {address!r} is not tcp://HOST:PORT (e.g. tcp://10.0.0.5:8786)")
    return f"tcp://{match['host']}:{int(match['port'])}"


def placement(scheduler: str | None, rows: int) -> tuple[bool, str | None]:
    """Where library-scale work runs, the one rule for ``labloop surrogate`` and for campaigns: (whether a
    cluster is used, the scheduler's address or None for a LocalCluster started here). ``scheduler`` is
    ``auto`` (None: the same), ``local``, ``none`` or an address (malformed: :class:`SchedulerAddressError`);
    ``auto`` uses a LocalCluster from :data:`AUTO_CLUSTER_ROWS` library rows on."""
    choice = scheduler or "auto"
    if choice not in SCHEDULER_CHOICES:
        return True, normalise_address(choice)
    return choice == "local" or (choice == "auto" and rows >= AUTO_CLUSTER_ROWS), None


def check_setting(scheduler: str) -> str:
    """``scheduler`` as a setting (one of :data:`SCHEDULER_CHOICES` or a normalised address), or
    :class:`SchedulerAddressError`."""
    return scheduler if scheduler in SCHEDULER_CHOICES else normalise_address(scheduler)


def lost_cluster_errors() -> tuple[type[BaseException], ...]:
    """The exceptions with which distributed says a client's cluster went away (its scheduler died, or
    kept killing workers): a caller turns them into :class:`ClusterLostError`."""
    from concurrent.futures import CancelledError

    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker

    return CancelledError, CommClosedError, KilledWorker, TimeoutError


def lost_cluster(client: Client, exc: BaseException) -> str | None:
    """Why ``exc``, met while working on ``client``'s cluster, says that the cluster went away (a few words to
    quote), or None when it does not: one of :func:`lost_cluster_errors`, or anything once the client has
    closed. Why the second: a client whose scheduler does not come back within its reconnect timeout closes
    itself, and its calls then fail on its scheduler, now None (``AttributeError: 'NoneType' object has no
    attribute 'scatter'``): a retrain's predictions and the next proposal met that, and a newcomer got a page of
    traceback and a "labloop bug" instead of a ``cluster_lost`` stop. And a client still trying to reach its
    scheduler again raises a plain ``OSError`` ("Timed out trying to connect to ..."), which a proposal met as the
    run's last line, exit 1, no resume said (the suite's scheduler-killed campaign, once in three runs)."""
    status = getattr(client, "status", None)
    if status in ("closing", "closed"):
        return "its scheduler stopped answering and the client closed"
    if status == "connecting" and isinstance(exc, OSError):  # reconnecting: its "Timed out trying to connect to ..."
        return f"its scheduler stopped answering ({first_line(exc)})"
    if not isinstance(exc, lost_cluster_errors()):
        return None
    return _in_words(exc)


def _in_words(exc: BaseException) -> str:
    """What one of :func:`lost_cluster_errors` says, in words for someone who does not know Dask: distributed's own
    name a task by its key ("predict-634512de...-000000000000-81a4... cancelled for reason:
    scheduler-connection-lost.", a trial after the scheduler was killed) or a connection by its internals."""
    from concurrent.futures import CancelledError

    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker

    said = first_line(exc)
    if "No valid workers" in said:  # every worker gone, the scheduler up (a trial read it as the scheduler lost)
        return "its scheduler has no workers left"
    if isinstance(exc, CancelledError):
        reason = getattr(exc, "reason", None)
        return ("the connection to its scheduler was lost" if reason == "scheduler-connection-lost" else
                "its scheduler was restarted" if reason == "scheduler-restart" else
                # the model sent to the workers died with them: the scheduler and restarted workers may run on (a
                # trial killing workers read "cancelled a task" as the cluster gone)
                "the workers holding the model's weights died, so the scheduler cancelled the tasks that needed them"
                if reason == "lost dependencies" else "its scheduler cancelled a task")
    if isinstance(exc, CommClosedError):
        return "the connection to its scheduler was closed"
    if isinstance(exc, KilledWorker):
        return f"{exc.allowed_failures + 1} workers in a row died running the same task"
    return said  # a TimeoutError: distributed says what it waited for, in words


def connect(address: str) -> Client:
    """A ``distributed.Client`` on the scheduler at ``address``; unreachable (:func:`reach`), something else
    listening there (:func:`not_a_scheduler`), a scheduler without this labloop (:func:`_scheduler_runs_labloop`), no
    worker (:func:`_has_workers`), or a worker with another labloop (:func:`other_labloops`) ->
    :class:`SchedulerAddressError`. Why a worker with another labloop is refused, not
    warned of: a trial's worker with changed source files returned other predictions for its share of the library,
    the run finished with exit 0 and other proposals, and the shards it wrote were reused by the next run."""
    from distributed import Client
    from distributed.versions import VersionMismatchWarning

    url = normalise_address(address)
    with reach(url) as sock:
        why = not_a_scheduler(sock)
    if why is not None:
        raise SchedulerAddressError(f"no Dask scheduler answers at {url}: {why}; is it the scheduler's port (8786 "
                                    "unless set; 8787 is its dashboard's)?")
    try:
        with warnings.catch_warnings():  # Dask's table of every package that differs came before labloop's one line
            warnings.simplefilter("ignore", VersionMismatchWarning)  # (a Dask trial): the versions are said below
            client = Client(url, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise SchedulerAddressError(f"no Dask scheduler answers at {url} within {CONNECT_TIMEOUT_S} s "
                                    f"({first_line(exc)}); is `dask scheduler` running there?") from None
    except Exception as exc:  # what answered passed the greeting's check and then spoke no Dask
        raise SchedulerAddressError(f"what answers at {url} is no Dask scheduler ({type(exc).__name__}: "
                                    f"{first_line(exc)})") from None
    try:
        _scheduler_runs_labloop(client, url)
        _has_workers(client, url)
        workers = client.scheduler_info()["workers"]
        names = {address: str(info.get("name", address)) for address, info in workers.items()}

        def label(worker: str) -> str:
            return worker if names.get(worker, worker) == worker else f"{worker} ({names[worker]})"

        named = {label(worker): answer for worker, answer in client.run(code_identity, on_error="return").items()}
        if (said := other_labloops(code_identity(), named)) is not None:
            raise SchedulerAddressError(said)
        packages = {label(worker): answer
                    for worker, answer in client.run(compared_versions, on_error="return").items()}
        if (said := other_packages(compared_versions(), packages)) is not None:
            log.warning("%s", said)
    except BaseException:
        client.close()
        raise
    return client


def _scheduler_runs_labloop(client: Client, url: str) -> None:
    """:class:`SchedulerAddressError` when the scheduler at ``url`` cannot say which labloop it runs, or runs another:
    it unpickles every task labloop sends, which names labloop's functions. Why: a scheduler from a plain Dask image
    (an HPC or Kubernetes deployment) failed the first task with "Error during deserialization of the task graph",
    which the run said as a labloop bug, exit 1, after it had created its journal (a Dask operator's trial)."""
    try:
        answer: object = client.run_on_scheduler(code_identity)
    except lost_cluster_errors() as exc:  # the connection, not the scheduler's labloop (a review)
        raise SchedulerAddressError(f"the Dask scheduler at {url} stopped answering while labloop connected "
                                    f"({_in_words(exc)}); is it running?") from None
    except Exception as exc:  # what it could not do is the answer, said below
        answer = exc
    if isinstance(answer, tuple | list) and len(answer) == 2:
        if answer[1] == source_digest():
            return
        said = f"runs labloop {answer[0]} with other source files"
    elif isinstance(answer, BaseException):
        said = f"cannot say which labloop it runs ({remote_said(answer)})"
    else:
        said = f"cannot say which labloop it runs ({answer!r})"
    raise SchedulerAddressError(f"the Dask scheduler at {url} {said}; this labloop is {code_version()}: it unpickles "
                                "every task labloop sends, so start it, as every worker, from the same labloop "
                                "installation (or commit) as the one that uses it (a plain Dask image's scheduler "
                                "cannot: docs/scaling.md)")


def _has_workers(client: Client, url: str) -> None:
    """:class:`SchedulerAddressError` when the scheduler at ``url`` has no worker after :data:`WORKER_GRACE_S`
    seconds. Why at connect: a scheduler without workers accepts tasks and never runs them, and a trial's run
    waited ~40 s and then stopped as a cluster that "went away", while ``validate`` called it fine."""
    try:
        client.wait_for_workers(1, timeout=WORKER_GRACE_S)
    except TimeoutError:
        raise SchedulerAddressError(
            f"the Dask scheduler at {url} has no workers: start them on each machine that computes, from the same "
            f"labloop installation, with `dask worker {url} --nthreads 1 --nworkers N --host HOST --no-dashboard` "
            "(N: its cores; HOST: its private address, 127.0.0.1 on the scheduler's machine: without --host a "
            "worker listens on every interface; docs/scaling.md)") from None


#: the repr of an exception as Dask wraps one a worker raised whose class it could not send back: ``Exception(
#: 'ModuleNotFoundError("No module named \'labloop\'")')``
_WRAPPED = re.compile(r"""([A-Za-z_][\w.]*)\((["'])(.*)\2\)""", re.DOTALL)


def remote_said(exc: BaseException) -> str:
    """``Type: message`` of an exception a worker or the scheduler answered, the one Dask wrapped in a plain
    ``Exception`` unwrapped: a worker without labloop was said as ``Exception: ModuleNotFoundError("No module named
    'labloop'")`` where the scheduler's same fault read ``ModuleNotFoundError: No module named 'labloop'`` (a Dask
    trial)."""
    text = first_line(exc)
    if type(exc) is Exception and (wrapped := _WRAPPED.fullmatch(text)) is not None:
        return f"{wrapped.group(1)}: {wrapped.group(3)}"
    return f"{type(exc).__name__}: {text}"


def other_labloops(ours: tuple[str, str], theirs: Mapping[str, object]) -> str | None:
    """One line naming the workers whose labloop is not ``ours`` (:func:`labloop.core.version.code_identity`: its
    version, and the digest of its source files, which decides), from ``theirs``: what each worker (by its address,
    and its ``--name``) answered ``client.run(code_identity, on_error="return")`` (an identity, or the exception of a
    worker that could not say, e.g. a labloop too old to have the function); None when all run ours. Why: a worker
    with an older labloop failed to unpickle a task's function and closed for good, and the run finished without a
    word about it (a trial); one with changed files computed other numbers (:func:`connect`)."""
    version, digest = ours
    other: dict[tuple[bool, str], list[str]] = {}  # (it can say, what it said): its workers
    for worker, answer in theirs.items():
        if isinstance(answer, tuple | list) and len(answer) == 2:
            if answer[1] != digest:  # the files decide: "0.1.0" beside "0.1.0 (git 6ac3825)" read as the same
                other.setdefault((True, f"{answer[0]} with other source files"), []).append(worker)
        else:
            said = remote_said(answer) if isinstance(answer, BaseException) else answer
            other.setdefault((False, str(said)), []).append(worker)
    if not other:
        return None
    phrases = []
    for (can_say, what), names in sorted(other.items(), key=lambda item: (not item[0][0], item[0][1])):
        listed, many = ", ".join(sorted(names)), len(names) > 1
        phrases.append(f"{listed} {'run' if many else 'runs'} labloop {what}" if can_say
                       else f"{listed} cannot say which labloop {'they run' if many else 'it runs'} ({what})")
    them = "that worker" if sum(map(len, other.values())) == 1 else "those workers"
    return (f"{'; '.join(phrases)}; this labloop is {version}: tasks there could fail or compute other numbers, so "
            f"the cluster is not used: stop {them} and start every worker from the same labloop installation (or "
            "commit) as the one that uses them")


def compared_versions() -> dict[str, str]:
    """This process's Python (major.minor: a patch release pickles alike) and :data:`COMPARED_PACKAGES`' versions,
    each by the first of its distributions installed ("not installed" for none): what :func:`other_packages` compares,
    run here and on each worker."""
    import platform

    versions = {"python": ".".join(platform.python_version_tuple()[:2])}
    for package, distributions in COMPARED_PACKAGES.items():
        versions[package] = installed_version(*distributions) or "not installed"
    return versions


def other_packages(ours: Mapping[str, str], theirs: Mapping[str, object]) -> str | None:
    """One line naming the workers whose :func:`compared_versions` are not ``ours``, from ``theirs``: what each worker
    (by address and ``--name``) answered; None when all agree (a worker that could not answer is
    :func:`other_labloops`' to judge). A warning, not a refusal: a patch release rarely moves a number, but another
    RDKit or TensorFlow can featurise or predict otherwise, and labloop compared its own source files alone while the
    docs asked for the same dependencies everywhere (a Dask operator's trial)."""
    differ: dict[tuple[str, str], list[str]] = {}
    for worker, answer in theirs.items():
        if isinstance(answer, Mapping):
            for package in ours:
                if (version := str(answer.get(package, "not installed"))) != ours[package]:
                    differ.setdefault((package, version), []).append(worker)
    if not differ:
        return None
    said = "; ".join(f"{package} {version} on {', '.join(sorted(workers))} ({ours.get(package)} here)"
                     for (package, version), workers in sorted(differ.items()))
    return (f"the Dask workers' packages are not this machine's: {said}: they may featurise or predict other numbers "
            "than this machine would; install the same versions everywhere (docs/scaling.md)")


def on_same_labloop(digest: str, function: Callable[..., object], *args: object) -> object:
    """``function(*args)`` on a Dask worker whose labloop source files have ``digest`` (the client's
    :func:`labloop.core.version.source_digest`); on another worker :class:`ClusterLostError` naming it, and
    nothing computed. Every task labloop sends goes through this. Why, beside :func:`connect`'s check: that asks
    the workers there at connect, and a worker that joined later (or that its nanny restarted from files changed
    since) was given tasks unasked, the way a trial's worker with changed source files computed other
    predictions that a campaign used."""
    if source_digest() != digest:
        from distributed import get_worker

        raise ClusterLostError(f"Dask worker {get_worker().address} runs labloop {code_version()} with other source "
                               "files than the labloop that sent it work (it joined the cluster, or was restarted, "
                               "after labloop connected), so nothing it computed is used: stop that worker and start "
                               "it from the same labloop installation (or commit)")
    return function(*args)


#: the most a Dask greeting's length may say (bytes): a handshake is a few hundred
GREETING_MAX_BYTES = 1 << 20


def reach(url: str) -> socket.socket:
    """A plain TCP connection to the host and port of ``url`` (a normalised address), or
    :class:`SchedulerAddressError` saying in words why there is none: the host has no address, nothing listens
    on the port (refused), or nothing answers within :data:`PROBE_TIMEOUT_S`. Why before Dask's own connect: that
    retries every failure until its timeout and then calls each a timeout, so a closed port, which the system
    refuses at once, took 25 s and was reported as "timed out" (a trial), and so was an unknown host."""
    match = _ADDRESS.match(url)
    assert match is not None  # a normalised address matches
    host, port = match["host"].strip("[]"), int(match["port"])
    try:  # every address the name has, as Dask's connect tries them (localhost: ::1, then 127.0.0.1)
        sock = socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S)
    except socket.gaierror as exc:
        raise SchedulerAddressError(f"{host}: no such host (scheduler address {url})" if exc.errno == socket.EAI_NONAME
                                    else f"{host}: its address cannot be looked up ({exc.strerror}; scheduler "
                                         f"address {url})") from None
    except ConnectionRefusedError:
        raise SchedulerAddressError(f"nothing listens at {host}:{port} (connection refused): start the scheduler, "
                                    "or check the port") from None
    except TimeoutError:
        raise SchedulerAddressError(f"nothing answers at {host}:{port} within {PROBE_TIMEOUT_S} s: the host is down "
                                    "or a firewall drops the connection") from None
    except OSError as exc:
        raise SchedulerAddressError(f"cannot reach {host}:{port} ({exc.strerror or first_line(exc)})") from None
    sock.settimeout(CONNECT_TIMEOUT_S)
    return sock


def not_a_scheduler(sock: socket.socket) -> str | None:
    """Why what answered on ``sock`` (a fresh connection, :func:`reach`) is not a Dask scheduler, or None (it
    greets as one). A Dask server writes its handshake as soon as it accepts a
    connection (distributed's ``Listener.on_connection``), a message framed by its length in 8 bytes; the client
    reads it with no timeout of its own. Why ask first: a dashboard's port (8787 for 8786, a common slip) or a web
    server said nothing until its request and the client waited for ever, or answered '400 Bad Request', read as a
    length of 3 EiB, and the client died of a MemoryError with a page of traceback (a trial)."""
    head, waited = b"", False
    try:
        while len(head) < 8 and (chunk := sock.recv(8 - len(head))):
            head += chunk
    except OSError:  # a timeout: it waits for a request
        waited = True
    if len(head) < 8:
        return (f"something listens there but sent no Dask greeting within {CONNECT_TIMEOUT_S} s" if waited
                else "something listens there but closed the connection without a Dask greeting")
    if head.startswith(b"HTTP"):
        return "a web server listens there"
    (length,) = struct.unpack("<Q", head)
    return None if 0 < length <= GREETING_MAX_BYTES else "something listens there that does not speak Dask's protocol"


def local_cluster(n_workers: int | None = None) -> LocalCluster:
    """A ``LocalCluster`` on 127.0.0.1: ``n_workers`` single-threaded processes (default: one per core). Start it
    inside :func:`_workers_ignore_ctrl_c`."""
    from distributed import LocalCluster

    from labloop.surrogate.featurize import default_jobs

    # the workers' own log to CRITICAL: what goes wrong in a task reaches labloop as its exception, while a worker
    # outliving the scheduler labloop just closed (a Ctrl-C) logged ~25 lines of heartbeat tracebacks (a Dask trial)
    # security=True: TLS with a certificate made for this cluster alone, which only this process and its workers
    # hold. Without it any account of the machine could connect to the scheduler on 127.0.0.1 and run code as the
    # operator in the run's own process, the one driving the instruments (a security review's finding)
    return LocalCluster(n_workers=n_workers or default_jobs(), threads_per_worker=1, processes=True,
                        host="127.0.0.1", dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL,
                        env=dict(_WORKER_ENV), preload=["labloop.surrogate.worker_signals"], security=True)


@contextmanager
def _workers_ignore_ctrl_c() -> Iterator[None]:
    """A local cluster's workers started in the block ignore Ctrl-C (:mod:`labloop.surrogate.worker_signals`), and a
    Ctrl-C during the block (the cluster's start, seconds) is noted and raised when it ends, once the cluster can be
    closed. Why: a terminal's Ctrl-C reaches every process of its group, and the workers died mid-task with pages of
    tracebacks while labloop closes the cluster itself.

    The workers start with SIGINT blocked: this thread blocks it, and so do the threads the cluster starts from it,
    which spawn them (a mask survives exec). Python's multiprocessing starts its resource tracker with SIGINT blocked
    and then unblocks it in the thread that started it (multiprocessing/resource_tracker.py: SIG_UNBLOCK, not the
    mask it had), which was the cluster's IO loop thread: so the tracker is started here, first. It used to set
    SIGINT ignored for the block, for the workers to inherit: a thread that does not block it (a native library's,
    started before) then took a Ctrl-C and dropped it, and the run went on for 20 s and more (an operator's trial:
    4 Ctrl-Cs of 4 in the start lost)."""
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    with held_signals({signal.SIGINT}) as noted:
        yield
    for signum in noted[:1]:
        signal.raise_signal(signum)


@contextmanager
def dask_client(scheduler: str | None = None, *, n_workers: int | None = None,
                announce: Callable[[str], None] | None = None) -> Iterator[Client]:
    """A client for the duration of a ``with`` block: on the scheduler at ``scheduler``, else on a
    :func:`local_cluster` started here and closed on exit. ``announce`` is told where the Dask dashboard is."""
    _quiet_distributed()
    yield from _client(scheduler, n_workers, announce)


def _quiet_distributed() -> None:
    """Keep distributed's own log (reconnection attempts with tracebacks, worker restarts) off the user's
    terminal unless they asked for detail (``-v``): labloop says what went wrong in one line. For the rest of
    the process, since distributed also logs from its finalisers at exit, after any ``with`` block is over."""
    import distributed  # noqa: F401  # its import sets its loggers' levels: quiet them after, not before

    if logging.getLogger().getEffectiveLevel() < logging.WARNING:
        return
    # distributed gives some of its loggers levels of their own, so the parent's level alone does not hold them;
    # tornado's logs the exceptions of callbacks on distributed's event loop: a Ctrl-C as the client of a LocalCluster
    # waited on a reply logged distributed's own NameError in sync()'s cancel, a page of traceback above "interrupted"
    for name in ["distributed", "tornado", *(n for n in logging.root.manager.loggerDict
                                             if n.startswith(("distributed.", "tornado.")))]:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    asyncio_log = logging.getLogger("asyncio")
    if _distributed_task_failure not in asyncio_log.filters:
        asyncio_log.addFilter(_distributed_task_failure)


def _distributed_task_failure(record: logging.LogRecord) -> bool:
    """False for asyncio's "Task exception was never retrieved" of one of distributed's own tasks: a Ctrl-C that
    closes a local cluster while the scheduler answers a scatter leaves its handler a KeyError for the worker
    just gone, which asyncio logged with a page of traceback after labloop had said "aborted" (seen once under
    load in the Ctrl-C test of tests/orchestrator/test_cli_surrogate.py). Any other asyncio record passes."""
    return not (record.getMessage().startswith("Task exception was never retrieved")
                and "distributed" in record.getMessage())


def _client(scheduler: str | None, n_workers: int | None, announce: Callable[[str], None] | None
            ) -> Iterator[Client]:
    if scheduler:
        client = connect(scheduler)
        try:
            _announce(client, announce, f"Dask cluster {client.scheduler.address} ({cluster_size(client)})")
            yield client
        finally:
            client.close()
        return
    from distributed import Client

    from labloop.surrogate.library_pipeline import remove_orphaned_model_copies

    cluster = None
    try:
        with _workers_ignore_ctrl_c():  # a Ctrl-C during the start is raised here, the cluster closed below
            cluster = local_cluster(n_workers)
        client = Client(cluster, set_as_default=False)
        try:
            _announce(client, announce, f"Dask LocalCluster, {len(cluster.workers)} workers")
            yield client
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()
        remove_orphaned_model_copies()  # of workers terminated while they loaded the model


def _announce(client: Client, announce: Callable[[str], None] | None, what: str) -> None:
    """Say where the work runs and where its dashboard is: to ``announce``, else to the log (both printed it twice
    at -v: a Dask trial)."""
    link = getattr(client, "dashboard_link", None)
    message = f"{what}; dashboard {link}" if link else what
    if announce is not None:
        announce(message)
    else:
        log.info("%s", message)


def cluster_size(client: Client) -> str:
    """How many workers and threads ``client``'s cluster has now, in words (``2 workers, 2 threads``): what
    ``validate`` and a run say of a scheduler they connected to (a Dask trial's ``validate`` said the address
    only, not whether anything answered there)."""
    info = client.scheduler_info()
    workers = info["workers"].values()  # some distributed versions list the first five only: the totals say all
    count = int(info.get("n_workers", len(workers)))
    threads = int(info.get("total_threads", sum(int(worker.get("nthreads", 0)) for worker in workers)))
    return f"{count} {plural(count, 'worker')}, {threads} {plural(threads, 'thread')}"
