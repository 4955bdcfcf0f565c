"""How a labloop CV maps onto the Rodeostat's ``cyclic`` test, and back.

Why a module of its own: the driver turns a :class:`CVParams` into ``cyclic`` parameters and the emulator
turns them back into the scan it runs; one pair of functions keeps them in agreement.

The ``cyclic`` test (parameters ``quietValue``, ``quietTime`` ms, ``amplitude``, ``offset``, ``period`` ms,
``numCycles``, ``shift``) is a symmetric triangle wave. Its phase convention is not documented, so this
package defines it ([infer]): ``v(t) = offset + amplitude * tri(t / period + shift)`` with ``tri(0) = 0``
rising, ``tri(1/4) = 1``, ``tri(3/4) = -1``. A CV ``e_begin -> e_vertex1 -> e_vertex2 -> e_begin`` with
``e_begin`` anywhere between the vertices is exactly one period of that wave, started at the phase where
the wave passes ``e_begin`` heading for ``e_vertex1``. The device samples every ``samplePeriod`` ms, so a
point is one ``e_step_v`` of travel; times are whole milliseconds.
"""

from __future__ import annotations

from labloop.core.errors import ConfigError
from labloop.instruments.voltammogram import CVParams

VOLT_RANGES_V = {"1V": 1.0, "2V": 2.0, "5V": 5.0, "10V": 10.0}
CURRENT_RANGES_UA = {"1uA": 1.0, "10uA": 10.0, "100uA": 100.0, "1000uA": 1000.0}


def tri(phase: float) -> float:
    """The unit triangle wave: 0 at phase 0 (rising), 1 at 1/4, -1 at 3/4, period 1."""
    p = phase % 1.0
    return 4 * p if p < 0.25 else 2 - 4 * p if p < 0.75 else 4 * p - 4


def whole_ms(seconds: float, what: str, where: str) -> int:
    """``seconds`` in whole milliseconds; ConfigError if it is not one (within 1e-6)."""
    ms = seconds * 1e3
    if not (ms >= 1 and abs(ms - round(ms)) <= 1e-6 * ms):
        raise ConfigError(where, f"{what} of {ms:.6g} ms is not a whole number of milliseconds")
    return round(ms)


def to_cyclic(params: CVParams, where: str) -> tuple[dict[str, float | int], int]:
    """The ``cyclic`` parameters and the sample period (ms) that run ``params``."""
    low, high = sorted((params.e_vertex1_v, params.e_vertex2_v))
    amplitude, offset = (high - low) / 2, (high + low) / 2
    x = (params.e_begin_v - offset) / (4 * amplitude)
    shift = (x if params.e_vertex1_v > params.e_vertex2_v else 0.5 - x) % 1.0
    period_ms = whole_ms(2 * (high - low) / params.scan_rate_v_s, "the period", where)
    sample_ms = whole_ms(params.time_step_s, "the sample period (e_step_v / scan_rate_v_s)", where)
    cyclic = {"quietValue": params.e_begin_v, "quietTime": 0, "amplitude": amplitude, "offset": offset,
              "period": period_ms, "numCycles": params.n_scans, "shift": shift}
    return cyclic, sample_ms


def from_cyclic(cyclic: dict[str, float | int], sample_ms: int) -> CVParams:
    """The scan the ``cyclic`` test runs (inverse of :func:`to_cyclic`); InvalidParameter if it is none."""
    amplitude, offset, shift = float(cyclic["amplitude"]), float(cyclic["offset"]), float(cyclic["shift"])
    rate = 4 * amplitude / (float(cyclic["period"]) / 1e3)
    rising = not 0.25 <= shift % 1.0 < 0.75
    high, low = offset + amplitude, offset - amplitude
    return CVParams(e_begin_v=offset + amplitude * tri(shift), e_vertex1_v=high if rising else low,
                    e_vertex2_v=low if rising else high, scan_rate_v_s=rate, e_step_v=rate * sample_ms / 1e3,
                    n_scans=int(cyclic["numCycles"]))


def smallest_range(ranges: dict[str, float], needed: float, what: str, where: str) -> str:
    """The name of the smallest range holding ``needed``."""
    for name, full_scale in sorted(ranges.items(), key=lambda item: item[1]):
        if needed <= full_scale:
            return name
    raise ConfigError(where, f"no {what} range holds {needed:g}")
