"""The heterogeneous electron-transfer rate constant k0 of a couple, from its CV's peak separation (Nicholson).

Why: a molecule for a redox-flow cell must also be fast at the electrode, and a chemist reads how fast from the
peak separation dEp growing with the scan rate; labloop reported dEp at each rate and D, but no k0 (a chemist's
trial). Nicholson's working curve (Anal. Chem. 1965, 37, 1351) ties dEp of a quasi-reversible one-electron couple
(alpha about 0.5, both forms diffusing alike) to ``psi = k0 / sqrt(pi D n F v / (R T))``; Lavagnini, Antiochia and
Magno (Electroanalysis 2004, 16, 505) fitted it as ``psi = (-0.6288 + 0.0021 X) / (1 - 0.017 X)``, X = dEp in mV,
within 7% of Nicholson's table from 63 to 141 mV. Nearer the reversible 57-59 mV, dEp no longer tells k0 (a
millivolt moves psi from 7 to 20, and a run reads a fast couple's dEp a few mV high), so below
:data:`NICHOLSON_RANGE_MV` k0 is only bounded from below, by what the range's lower end would give; past its
upper end the fit leaves Nicholson's table (and alpha starts to matter), so k0 is bounded from above. Checked
against the simulator's Butler-Volmer voltammograms (tests/instruments/test_kinetics.py).

dEp must be the one between the peaks with the uncompensated iR taken out, as the analysis gives it
(instruments/cv_analysis.py): iR widens dEp just as slow kinetics do. Taking it out after the scan is not exact (the
electrode saw no linear sweep), so a dEp whose ohmic drop was corrected after the scan, or whose cell's Ru was
never measured, bounds k0 from below where it would otherwise give a value (:data:`AFTER_SCAN_RESIDUAL_SHARE`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy.constants import R as GAS_CONSTANT
from scipy.constants import physical_constants

FARADAY = physical_constants["Faraday constant"][0]  # C/mol
#: dEp (mV) that tells k0 a value. Its upper end: Lavagnini's fit is within 7% of Nicholson's table up to 141 mV
#: (psi 0.25). Its lower end: where a dEp read 3 mV high moves psi by at most a third (1.34x at 68 mV; 1.74x at 63
#: mV, 3x at 61): a run's dEp of a fast couple reads 2-3 mV above the reversible 57-61 mV at 1 V/s (the residual iR
#: the correction leaves, and the noise, sd ~1.5 mV), and with the range from 63 mV a newcomer's dry run of
#: examples/lab-grade.yaml gave values 2-4x below the simulated k0 at dEp 63.3-63.6 mV (chosen from that one run;
#: measured since on another seed: docs/lab-grade.md "k0")
NICHOLSON_RANGE_MV = (68.0, 141.0)
#: the temperature of Nicholson's table (K): its n dEp are for 25 C (:func:`nicholson_k0`)
NICHOLSON_TEMPERATURE_K = 298.15


#: the share of an ohmic drop corrected after the scan (the analysis' ``(|ipa| + |ipc|) x (Ru - compensated)``) that
#: may remain in dEp: the drop bends the sweep the electrode sees, which no correction of the potential axis undoes.
#: Measured on the simulator's Butler-Volmer voltammograms (k0 0.01-1 cm/s, 0.1-2 V/s, 25-500 ohm, 1-2 mM): 0.28-0.32
#: of the drop remained; 0.4 leaves a margin, and with it the values kept lay within 0.8-1.0 of the simulated k0
#: where an uncorrected reading went down to 0.03 (an electrochemist's trial: 500 ohm, none compensated on the device,
#: k0 17x low "value")
AFTER_SCAN_RESIDUAL_SHARE = 0.4
#: how far apart k0 at dEp and at dEp less that residual may be for k0 to stay a value (Nicholson's own ~10% aside)
MAX_RESIDUAL_SPREAD = 1.5


def nicholson_psi(dep_mv: float) -> float:
    """Nicholson's kinetic parameter psi for a peak separation of ``dep_mv`` (Lavagnini's fit, module docstring)."""
    return (-0.6288 + 0.0021 * dep_mv) / (1 - 0.017 * dep_mv)


@dataclass(frozen=True)
class RateConstant:
    """k0 (cm/s) from one scan rate's dEp: a value, or a bound where dEp lies outside :data:`NICHOLSON_RANGE_MV`
    (``above``: k0 is at least this, the couple reversible at that rate; ``below``: at most this)."""

    k0_cm_s: float
    side: Literal["value", "above", "below"]
    #: why a bound is one (None for a value): for the CSV's ``k0_why`` and the report's caption
    why: str | None = None

    def said(self) -> str:
        """``0.0051``, ``> 0.058`` or ``< 0.0028`` (cm/s, 2 significant digits: the method's own error is ~10%), a
        trailing zero kept (``0.040``: ``0.04`` beside ``0.031`` read as one digit, a referee's trial)."""
        return {"value": "", "above": "> ", "below": "< "}[self.side] + f"{self.k0_cm_s:#.2g}"


def nicholson_k0(dep_v: float, scan_rate_v_s: float, diffusion_cm2_s: float, *, n_electrons: int = 1,
                 temperature_k: float = 298.15, ohmic_v: float | None = 0.0) -> RateConstant | None:
    """k0 from the peak separation ``dep_v`` (V, iR taken out) at ``scan_rate_v_s`` for a couple of diffusion
    coefficient ``diffusion_cm2_s`` (Randles-Sevcik's, from the same scans); None where there is nothing to tell
    it from (no dEp, or a dEp, rate or D that is not positive). ``ohmic_v``: the drop at the two peaks the analysis
    took out after the scan (V; 0 when the potentiostat compensated all of it), None when the cell's Ru was not
    measured: a value the residual of either could make more than :data:`MAX_RESIDUAL_SPREAD` times too low is given
    as a lower bound (module docstring)."""
    if not (dep_v > 0 and scan_rate_v_s > 0 and diffusion_cm2_s > 0):
        return None
    f = n_electrons * FARADAY / (GAS_CONSTANT * temperature_k)
    scale = math.sqrt(math.pi * diffusion_cm2_s * f * scan_rate_v_s)
    low, high = NICHOLSON_RANGE_MV
    # the curve is for n dEp at 25 C: what it depends on is n F dEp / (R T), so a dEp measured at T is read as
    # dEp 298.15 / T (an electrochemist's audit: k0 read 0.84-0.86 of the simulated one at 45 C, 0.71-0.76 at 60 C)
    to_25 = n_electrons * NICHOLSON_TEMPERATURE_K / temperature_k
    dep_mv = 1e3 * dep_v * to_25
    if dep_mv < low:
        return RateConstant(nicholson_psi(low) * scale, "above",
                            f"dEp under {low / to_25:.3g} mV: fast (Nernstian) electron transfer at this rate")
    if dep_mv > high:
        return RateConstant(nicholson_psi(high) * scale, "below",
                            f"dEp over {high / to_25:.3g} mV: beyond Nicholson's table")
    k0 = nicholson_psi(dep_mv) * scale
    if ohmic_v is None:
        return RateConstant(k0, "above", "Ru not measured (no eis step): an unknown ohmic drop widens dEp")
    residual_mv = 1e3 * AFTER_SCAN_RESIDUAL_SHARE * ohmic_v * to_25
    narrower = dep_mv - residual_mv
    if residual_mv > 0 and (narrower < low or nicholson_psi(narrower) * scale > MAX_RESIDUAL_SPREAD * k0):
        return RateConstant(k0, "above", f"{1e3 * ohmic_v:.0f} mV of ohmic drop at the peaks corrected after the "
                                         f"scan, up to {residual_mv / to_25:.0f} mV of which may remain in dEp")
    return RateConstant(k0, "value")
