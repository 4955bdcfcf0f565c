"""A sample changer that is a person: it asks the operator on the console to place a vial and waits.

Why: a lab without an autosampler still runs the loop; the operator becomes the changer. It satisfies
:class:`labloop.instruments.contracts.SampleChanger` and registers under ``labloop.drivers`` as ``manual``
like any driver. It remembers nothing across processes, so a resumed campaign asks again for the vial of the
experiment it re-runs (the operator may have removed it meanwhile). Loading the vial already placed in this
process does not ask twice.

Its emulator (registered by the simulated world) is a simulated operator who answers at once and places
the vial in the simulated cell, so ``--dry-run`` exercises this driver's own code path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from labloop.core.asking import Ask, ask_person
from labloop.core.errors import ConfigError, Disconnected
from labloop.core.text import printable
from labloop.instruments.registry import DriverDescriptor, DriverKind

log = logging.getLogger(__name__)


class ManualSampleChanger:
    """Asks through ``ask`` (``input`` by default) to place each vial; ``placed(sample_id)`` is called once
    the operator confirmed (the simulated cell uses it). ``describe(sample_id)``, when labloop gives it, is the
    molecule the vial holds, named in the question: "Place vial S0002" alone sent an operator to a table to find
    which molecule that was, and invites the wrong vial (a newcomer's trial)."""

    def __init__(self, *, ask: Ask = input, placed: Callable[[str], None] | None = None,
                 describe: Callable[[str], str | None] | None = None, port: str = "console") -> None:
        self.where = f"manual sample changer on {port}"
        self._ask = ask
        self._placed = placed
        self._describe = describe
        self._loaded: str | None = None
        self._closed = False

    @classmethod
    def open(cls, port: str | None = None, *, ask: Ask = input, placed: Callable[[str], None] | None = None,
             describe: Callable[[str], str | None] | None = None) -> ManualSampleChanger:
        """The registry's factory: ``port`` only names the console."""
        return cls(ask=ask, placed=placed, describe=describe, port=port or "console")

    @property
    def loaded(self) -> str | None:
        return self._loaded

    def load(self, sample_id: str) -> None:
        """Ask for vial ``sample_id`` and wait for Enter; no question if it is the vial already placed."""
        self._check_open()
        if not isinstance(sample_id, str) or not sample_id.strip():
            raise ConfigError(self.where, f"sample id must be a non-empty string, got {sample_id!r}")
        if sample_id == self._loaded:
            return
        holds = None if self._describe is None else self._describe(sample_id)
        vial = sample_id if holds is None else f"{sample_id} ({printable(holds)})"
        log.info("%s: waiting for the operator to place vial %s", self.where, vial)
        ask_person(self._ask, f"Place vial {vial} in line with the sample pump, then press Enter: ", self.where,
                   "operator")
        self._loaded = sample_id
        if self._placed is not None:
            self._placed(sample_id)

    def unload(self) -> None:
        """Forget the placed vial (the next load asks again)."""
        self._check_open()
        self._loaded = None

    def close(self) -> None:
        """Closing twice is not an error; a closed changer refuses to load."""
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise Disconnected(self.where, "the sample changer is closed")


MANUAL = DriverDescriptor(
    name="manual", kind=DriverKind.SAMPLE_CHANGER, open=ManualSampleChanger.open,
    summary="a person: asks on the console to place each vial and waits for Enter",
)
