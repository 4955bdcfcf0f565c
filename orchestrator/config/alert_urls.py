"""The ``alerts:`` section's URLs: how a campaign names where alerts go, checked when the campaign is read.

Why apart from the alerter (:mod:`labloop.orchestrator.loop.alerts`): the campaign file is validated before
anything runs, and validation belongs to the config layer, which the loop builds on. URLs hold credentials,
so nothing here ever puts a URL into an error message; ``${VAR}`` is read from the environment only when
needed, so the secret can stay out of the campaign file and the journal.
"""

from __future__ import annotations

import logging
import os
import re

log = logging.getLogger(__name__)

#: campaign settings whose values no message repeats, at any depth: an error in reading the file
#: (:func:`labloop.orchestrator.config.yaml_source.error_lines`) or a difference from a journal's
#: (:func:`labloop.orchestrator.journal.store.first_difference`)
SECRET_SETTINGS = frozenset({"alerts"})

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


#: what an alert URL holds credentials by: a user and password (``://user:pass@``), a query parameter named as a
#: secret (``?token=``, ``&apikey=``, ``password=``), or a token in its path, as most apprise services keep theirs
#: (``slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ``, ``discord://ID/TOKEN``, ``tgram://123:ABC.../``): a run of
#: 16 or more letters, digits, ``_`` and ``-``
_CREDENTIALS = re.compile(r"://[^/@\s]*:[^/@\s]+@|[?&](?:access_token|api_key|apikey|auth|key|pass|password|secret|"
                          r"token)=|[/:=][A-Za-z0-9_-]{16,}", re.IGNORECASE)


def written_out_credentials(url: str) -> bool:
    """Whether ``url`` holds a password or token written out rather than read from the environment (``${VAR}``, which
    is left out before the URL is judged: a literal token beside one is still one): the journal keeps the campaign's
    settings, and so the secret, for anyone given the file."""
    return _CREDENTIALS.search(_VARIABLE.sub("", url)) is not None


def expand(url: str) -> str:
    """``url`` with every ``${VAR}`` replaced from the environment; ValueError names a variable that is unset."""
    missing = [name for name in _VARIABLE.findall(url) if name not in os.environ]
    if missing:
        raise ValueError(f"environment variable {missing[0]} is not set")
    return _VARIABLE.sub(lambda m: os.environ[m.group(1)], url)


def silence_apprise() -> None:
    """apprise logs URLs (with their credentials) when it debugs, and so do the HTTP libraries under it
    (urllib3 logs each request's path, where a webhook keeps its secret): their loggers stay off."""
    for name in ("apprise", "urllib3", "requests"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def check_url(url: str) -> str:
    """A campaign's ``alerts:`` entry, checked: a URL apprise can send to (the error never repeats the URL)."""
    import apprise  # loads only for campaigns with alerts

    silence_apprise()
    if apprise.Apprise.instantiate(expand(url)) is None:
        raise ValueError("not a notification URL that apprise knows (e.g. json://host:port/path, "
                         "mailto://user:pass@host, ntfy://topic); the URL is not repeated: it may hold a secret")
    return url
