"""The electrochemical cell the emulators share: what is in it, and how concentrated.

The simulated world has to make a wrong dispense visible the way a real one does: the pump emulators pour
volumes into this cell, and the potentiostat emulator computes its voltammogram from the analyte
concentration and the identity of the sample found here. A pump is configured with what its syringe
holds (:class:`Fluid`): the stock solution of whichever sample the sample changer has loaded, or plain
electrolyte. Amounts are tracked per sample id in micromoles (mM x mL), so a cell that was not rinsed
between two samples holds both.

Pump emulator threads and the potentiostat emulator thread use one cell at the same time, hence the lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

log = logging.getLogger(__name__)


class Fluid(StrEnum):
    """What a pump's syringe holds."""

    SAMPLE = "sample"  # the stock solution of the currently loaded sample
    ELECTROLYTE = "electrolyte"  # solvent with supporting electrolyte, no analyte
    STANDARD = "standard"  # the internal-standard stock (ferrocene), at Cell.standard_stock_mM


#: the key under which the internal standard's amount is kept (never a sample id: not a SMILES)
STANDARD_ID = "@standard"
#: ferrocene stock a STANDARD pump holds unless told otherwise (mM)
DEFAULT_STANDARD_STOCK_MM = 10.0


@dataclass(frozen=True)
class CellState:
    """A consistent snapshot of the cell."""

    sample_id: str | None  # the sample loaded in the changer (what a sample pump dispenses)
    stock_mM: float  # its stock concentration
    volume_ml: float
    analytes_mM: Mapping[str, float]  # concentration in the cell of every sample dispensed since a rinse
    dispensed_ml: Mapping[str, float]  # volume dispensed since a rinse, per source (e.g. "ne1000:00")
    rinses: int = 0  # rinses so far: each starts a new filling of the cell (a new solution of the analyte)


class Cell:
    """The cell: a loaded sample, volumes added per source, and ``rinse()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sample_id: str | None = None
        self._stock_mM = 0.0
        self._volume_ml = 0.0
        self._umol: dict[str, float] = {}
        self._dispensed: dict[str, float] = {}
        self._rinses = 0
        self.standard_stock_mM = DEFAULT_STANDARD_STOCK_MM

    def load_sample(self, sample_id: str, stock_mM: float) -> None:
        """Put ``sample_id`` (stock at ``stock_mM``) in line with the sample pumps."""
        if stock_mM < 0:
            raise ValueError(f"stock concentration must be >= 0 mM, got {stock_mM}")
        with self._lock:
            self._sample_id, self._stock_mM = sample_id, stock_mM
        log.info("cell: loaded sample %s (%g mM stock)", sample_id, stock_mM)

    def unload_sample(self) -> None:
        with self._lock:
            self._sample_id, self._stock_mM = None, 0.0

    def add(self, source: str, volume_ml: float, fluid: Fluid) -> None:
        """Add ``volume_ml`` of ``fluid`` from ``source``; sample stock brings the loaded sample's analyte."""
        if volume_ml < 0:
            raise ValueError(f"cannot add a negative volume ({volume_ml} mL) to the cell")
        with self._lock:
            self._volume_ml += volume_ml
            self._dispensed[source] = self._dispensed.get(source, 0.0) + volume_ml
            if fluid is Fluid.STANDARD:
                self._umol[STANDARD_ID] = self._umol.get(STANDARD_ID, 0.0) + volume_ml * self.standard_stock_mM
            elif fluid is Fluid.SAMPLE:
                if self._sample_id is None:
                    log.warning("cell: %s dispensed sample stock with no sample loaded", source)
                else:
                    umol = self._umol.get(self._sample_id, 0.0) + volume_ml * self._stock_mM
                    self._umol[self._sample_id] = umol

    def add_standard(self, source: str, volume_ml: float, stock_mM: float) -> None:
        """Add ``volume_ml`` of an internal-standard stock at ``stock_mM`` (a pump's own stock)."""
        if volume_ml < 0 or stock_mM < 0:
            raise ValueError(f"cannot add {volume_ml} mL of a {stock_mM} mM standard")
        with self._lock:
            self._volume_ml += volume_ml
            self._dispensed[source] = self._dispensed.get(source, 0.0) + volume_ml
            self._umol[STANDARD_ID] = self._umol.get(STANDARD_ID, 0.0) + volume_ml * stock_mM

    def rinse(self) -> None:
        """Empty and rinse the cell; the loaded sample stays loaded."""
        with self._lock:
            self._volume_ml = 0.0
            self._umol.clear()
            self._dispensed.clear()
            self._rinses += 1
        log.info("cell: rinsed")

    def state(self) -> CellState:
        with self._lock:
            v = self._volume_ml
            analytes = {sid: (n / v if v > 0 else 0.0) for sid, n in self._umol.items()}
            return CellState(
                sample_id=self._sample_id,
                stock_mM=self._stock_mM,
                volume_ml=v,
                analytes_mM=MappingProxyType(analytes),
                dispensed_ml=MappingProxyType(dict(self._dispensed)),
                rinses=self._rinses,
            )
