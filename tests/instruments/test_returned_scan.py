"""The checks every scan a driver returns passes before it is analysed (instruments/voltammogram.py
``returned_scan``), on scans the simulator's physics draws."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from labloop.core.errors import WrongReturn
from labloop.instruments.voltammogram import CVParams, returned_scan
from labloop.sim.cv_physics import CellParams, simulate_cv

COUPLE = CellParams(e0_v=0.1, conc_mm=1.0, cdl_f_cm2=2e-5, noise_fraction=0.002)  # a peak of ~20 uA at 0.1 V/s
FREE = CVParams(e_begin_v=-0.2, e_vertex1_v=0.4, e_vertex2_v=-0.2, scan_rate_v_s=0.1, e_step_v=0.005)
RANGED = replace(FREE, current_range_a=1e-6)  # a fixed range of 1 uA: the couple's peak overloads it


def test_a_scan_beyond_its_fixed_current_range_with_no_overload_marked_is_the_drivers_fault() -> None:
    """A plug-in that ignored ``current_range_a`` returned 22.6 uA in a 1 uA range, no point marked overloaded, and
    the scan was analysed as good (a plug-in engineer's trial): now refused before any analysis, the scan kept."""
    honest = simulate_cv(COUPLE, RANGED, np.random.default_rng(1))  # clipped at the range, the points marked
    assert honest.any_overload and returned_scan(honest, RANGED, "stat", "run_cv") is honest
    ignored = replace(simulate_cv(COUPLE, FREE, np.random.default_rng(1)), params=RANGED)  # the range not applied
    assert float(np.abs(ignored.current_a).max()) > 1e-5 and not ignored.any_overload
    with pytest.raises(WrongReturn, match=r"^stat: its driver's run_cv returned currents up to [0-9.e-]+ A in a "
                                          r"fixed current range of 1e-06 A, with no point marked overloaded") as raised:
        returned_scan(ignored, RANGED, "stat", "run_cv")
    assert raised.value.scan is ignored  # journalled as the attempt's raw data, not analysed
    within = simulate_cv(replace(COUPLE, conc_mm=0.02), RANGED, np.random.default_rng(1))  # ~0.4 uA: no overload
    assert not within.any_overload and returned_scan(within, RANGED, "stat", "run_cv") is within
    autoranged = replace(ignored, params=FREE)  # no range asked: none to judge by
    assert returned_scan(autoranged, FREE, "stat", "run_cv") is autoranged


@pytest.mark.parametrize(("scale", "shift", "why"), [
    (1000.0, 0.0, "potentials in another unit, mV?"),  # a scan in mV
    (1.0, 0.6, "potentials beyond the window asked: the driver applied other potentials than asked"),
    (0.5, 0.0, "a scan cut short"),
])
def test_a_scan_over_another_span_says_what_it_most_likely_is(scale: float, shift: float, why: str) -> None:
    """A driver that added 0.6 V to its vertex was said to have "potentials in another unit, mV? or a scan cut
    short", neither (a plug-in engineer's trial): the span says which it is."""
    scan = simulate_cv(COUPLE, FREE, np.random.default_rng(1))
    potential = scan.potential_v * scale + shift * (scan.potential_v > 0.0)
    odd = replace(scan, potential_v=potential)
    with pytest.raises(WrongReturn, match=re.escape(f"where -0.2..0.4 V was asked ({why}): not analysed")):
        returned_scan(odd, FREE, "stat", "run_cv")
