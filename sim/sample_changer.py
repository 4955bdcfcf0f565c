"""A sample changer for the simulated world: loading a sample puts its stock in line with the sample pump.

Why: the protocols load a sample before they dispense it, and the pump emulators pour "the loaded
sample's stock" into the shared :class:`labloop.sim.cell.Cell`. This changer is the piece that says
which sample that is; it satisfies :class:`labloop.instruments.contracts.SampleChanger` and acts at once
(no wire, no time), so it is its own emulation.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from labloop.core.errors import ConfigError, Disconnected
from labloop.sim.cell import Cell

log = logging.getLogger(__name__)


class SimSampleChanger:
    """Loads samples into ``cell``; ``stocks_mM`` maps sample ids to stock concentrations.

    With ``stocks_mM`` given, only those samples exist; without it, every sample id has
    ``default_stock_mM``. ``port`` only names the changer in errors (there is no wire).
    """

    def __init__(self, cell: Cell, *, stocks_mM: Mapping[str, float] | None = None,
                 default_stock_mM: float = 10.0, port: str = "sim") -> None:
        self.where = f"sim-sampler on {port}"
        stocks = dict(stocks_mM) if stocks_mM is not None else None
        for value in [default_stock_mM, *(stocks or {}).values()]:
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(self.where, f"stock concentrations must be >= 0 mM, got {value!r}")
        self.cell = cell
        self._stocks = stocks
        self._default = default_stock_mM
        self._closed = False

    @classmethod
    def open(cls, port: str, *, cell: Cell, stocks_mM: Mapping[str, float] | None = None,
             default_stock_mM: float = 10.0) -> SimSampleChanger:
        """The registry's factory: ``port`` is a name only; ``cell`` is the simulated rig's cell."""
        return cls(cell, stocks_mM=stocks_mM, default_stock_mM=default_stock_mM, port=port)

    @property
    def loaded(self) -> str | None:
        return self.cell.state().sample_id

    def load(self, sample_id: str) -> None:
        """Load ``sample_id``; loading the loaded sample again is not an error."""
        self._check_open()
        if not isinstance(sample_id, str) or not sample_id.strip():
            raise ConfigError(self.where, f"sample id must be a non-empty string, got {sample_id!r}")
        if self._stocks is not None and sample_id not in self._stocks:
            raise ConfigError(self.where, f"no sample {sample_id!r} in the changer")
        stock = self._stocks[sample_id] if self._stocks is not None else self._default
        self.cell.load_sample(sample_id, stock)

    def unload(self) -> None:
        """Unload the current sample, if any."""
        self._check_open()
        self.cell.unload_sample()

    def close(self) -> None:
        """Closing twice is not an error; a closed changer refuses to load."""
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise Disconnected(self.where, "the sample changer is closed")
