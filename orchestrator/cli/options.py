"""Options several commands share, defined once so they parse and refuse alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from labloop.core.errors import InputError
from labloop.surrogate.compute import AUTO_CLUSTER_ROWS, SCHEDULER_CHOICES, check_setting


def _scheduler(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A malformed address is a usage error naming the option (one line, exit 2), before any work starts."""
    if value is None:
        return None
    try:
        return check_setting(value)
    except InputError as exc:
        raise click.BadParameter(str(exc), param=param) from None


def scheduler_option(*, default: str | None, what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--scheduler``: where ``what`` happens ('local', 'none', 'auto' or tcp://HOST:PORT)."""
    return click.option(
        "--scheduler", default=default, show_default=default is not None, callback=_scheduler,
        metavar="|".join((*SCHEDULER_CHOICES, "tcp://HOST:PORT")),
        help=f"Where {what}: 'local' starts a Dask LocalCluster (one worker per core), 'none' works in this "
             f"process, tcp://HOST:PORT uses that Dask scheduler's cluster; 'auto' is 'local' from "
             f"{AUTO_CLUSTER_ROWS:,} rows on.")
