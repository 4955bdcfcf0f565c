"""Open-loop screening as the thesis (data/SOURCES.md) did it: predicted IE/EA -> redox potentials -> inside the window?

Why: it is the baseline the closed loop must beat, and a quick way to shortlist a library. A molecule
passes when its predicted potential +/- z*sigma lies inside the usable window: the intersection of the
solvent's electrochemical stability window and the current collector's limits. Potentials come from
the absolute (vacuum) scale of IE/EA through a reference electrode's absolute potential:
``E_ox = IE - E_abs(ref)`` and ``E_red = EA - E_abs(ref)``; with Li/Li+ at 1.40 V this is the thesis's
``IE - 1.40``. No solvation correction is applied here: that is exactly the gap measurements close. The rule
wants solvated IE/EA and the prior's are gas-phase, so a reduction potential reads too low and an oxidation
potential too high by the solvation energy (:func:`gas_phase_note`, which the screen's summary line shows).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from labloop.core.errors import InvalidInput
from labloop.surrogate.metrics import Z95

log = logging.getLogger(__name__)

#: Absolute potential (V, vacuum scale) of reference electrodes. Li/Li+: -3.04 V vs SHE; SHE: 4.44 V
#: (IUPAC); Fc+/Fc: about +0.63 V vs aqueous SHE (docs/protocols.md "Potential scales"; good to ~0.1 V).
REFERENCE_ABSOLUTE_V: dict[str, float] = {"li": 1.40, "she": 4.44, "fc": 5.07}


@dataclass(frozen=True)
class Window:
    """A potential window vs Li/Li+, with where the numbers come from."""

    low_v: float
    high_v: float
    source: str


#: Electrochemical stability windows (V vs Li/Li+) of common electrolyte solvents. Literature limits
#: depend on salt, electrode and current cut-off, so treat them as +/-0.2 V and override with --window
#: when you know your cell.
SOLVENT_WINDOWS: dict[str, Window] = {
    "acn": Window(0.44, 6.54, "acetonitrile: reduction 0.44 V (thesis), oxidation 6.54 V (thesis)"),
    "pc": Window(1.0, 6.6, "propylene carbonate: reduction ~1.0 V, oxidation 6.6 V on glassy carbon "
                           "(K. Xu, Chem. Rev. 104, 4303 (2004))"),
    "ec_dmc": Window(0.8, 5.0, "EC/DMC, 1 M LiPF6: EC reduction ~0.8 V (SEI), practical oxidation "
                               "limit ~5.0 V (K. Xu, Chem. Rev. 104, 4303 (2004))"),
    "dmso": Window(1.0, 4.5, "dimethyl sulfoxide: reduction ~1.0 V, oxidation ~4.5 V (Li-O2 "
                             "literature, e.g. Xu & co-workers; approximate)"),
}

#: Current-collector limits (V vs Li/Li+): Al pits above ~4.7 V and alloys with Li below ~0.3 V; Cu
#: oxidises above ~3.5 V and is stable down to 0 V.
COLLECTOR_LIMITS: dict[str, Window] = {
    "al": Window(0.3, 4.7, "aluminium: anodic dissolution above 4.7 V (thesis), Li-Al alloying below 0.3 V"),
    "cu": Window(0.0, 3.5, "copper: oxidation above ~3.5 V"),
    "none": Window(-np.inf, np.inf, "no current-collector limit"),
}

Role = Literal["cathode", "anode"]
#: which predicted quantity each role needs: cathode -> oxidation (from IE), anode -> reduction (from EA)
ROLE_TARGET: dict[str, str] = {"cathode": "ie_ev", "anode": "ea_ev"}


def rule_of(target: str) -> str:
    """The thesis rule a potential vs Li/Li+ follows from ``target`` (``ie_ev``, ``ea_ev``), as a person reads it:
    ``IE - 1.40``; the one wording of it (the screen's summary, a campaign's calibration event)."""
    return f"{target.removesuffix('_ev').upper()} - {REFERENCE_ABSOLUTE_V['li']:.2f}"


#: the rule each role's potential follows (V vs Li/Li+), as a person reads it
ROLE_RULE: dict[str, str] = {"cathode": f"E_ox = {rule_of('ie_ev')}", "anode": f"E_red = {rule_of('ea_ev')}"}


def gas_phase_note(role: str) -> str:
    """What a screen's potentials are for ``role`` and which way they are off: the prior's IE/EA are gas-phase,
    and solvation (1.4-2.7 V for 5-40 heavy atoms in acetonitrile, the Born term of sim/world.py) lowers an
    oxidation potential and raises a reduction potential by that much."""
    quantity, way = ("a reduction", "low") if role == "anode" else ("an oxidation", "high")
    energy = ROLE_TARGET[role].removesuffix("_ev").upper()
    return (f"{ROLE_RULE[role]} V vs Li/Li+ of gas-phase {energy}: without solvation {quantity} "
            f"potential reads about 1.4-2.7 V too {way}")


def potential_vs_reference(energy_ev: np.ndarray, reference: str = "li",
                           offset_v: float | None = None) -> np.ndarray:
    """Convert IE or EA (eV, absolute scale) to a potential (V) vs ``reference`` (or a custom offset)."""
    if offset_v is None:
        try:
            offset_v = REFERENCE_ABSOLUTE_V[reference]
        except KeyError:
            raise InvalidInput(f"unknown reference {reference!r}; choose one of: "
                               f"{', '.join(REFERENCE_ABSOLUTE_V)}") from None
    return np.asarray(energy_ev, dtype=float) - offset_v


def reference_note(reference: str) -> str:
    """What the screen's ``potential_v_vs_REF`` column is on, said after its summary for ``she`` and ``fc`` (empty for
    ``li``): the absolute scale's SHE and Fc+/Fc, 3.04 and 3.67 V above Li/Li+ there, where a campaign puts Fc+/Fc at
    ``cell.ferrocene_vs_li_v`` (3.20 V by default, a carbonate's). Why: the same molecule read 0.47 V apart "vs Fc" in
    a screen and in a campaign, which only docs/campaign-reference.md's table said (an electrochemist's trial)."""
    if reference == "li":
        return ""
    name = "SHE" if reference == "she" else "Fc+/Fc"
    absolute = REFERENCE_ABSOLUTE_V[reference]
    return (f"; potential_v_vs_{reference} puts {name} {absolute - REFERENCE_ABSOLUTE_V['li']:.2f} V above Li/Li+ "
            f"({absolute:.2f} V on the absolute scale): an estimate to rank by, not a campaign's scale, which puts "
            "Fc+/Fc at its cell.ferrocene_vs_li_v")


def usable_window(solvent: str, collector: str, custom: tuple[float, float] | None = None) -> Window:
    """Solvent window (or ``custom``) intersected with the collector's limits, vs Li/Li+."""
    if custom is not None:
        base = Window(custom[0], custom[1], "user-given window")
    else:
        try:
            base = SOLVENT_WINDOWS[solvent]
        except KeyError:
            raise InvalidInput(f"unknown solvent {solvent!r}; choose one of: {', '.join(SOLVENT_WINDOWS)}") \
                from None
    try:
        coll = COLLECTOR_LIMITS[collector]
    except KeyError:
        raise InvalidInput(f"unknown collector {collector!r}; choose one of: {', '.join(COLLECTOR_LIMITS)}") \
            from None
    low, high = max(base.low_v, coll.low_v), min(base.high_v, coll.high_v)
    if not low < high:
        raise InvalidInput(f"the window {base.low_v}-{base.high_v} V and the {collector} collector's limits "
                           f"{coll.low_v}-{coll.high_v} V do not overlap")
    return Window(low, high, f"{base.source}; {coll.source}")


def screen(
    smiles: list[str],
    energy_mean: np.ndarray,
    energy_std: np.ndarray,
    window: Window,
    role: Role = "cathode",
    z: float = Z95,
    global_sigma: float | None = None,
    reference: str = "li",
    names: list[str] | None = None,
) -> pd.DataFrame:
    """Screening table, passing molecules first, each group best potential first; with ``names`` (one per
    SMILES: a ``.smi`` library's), a ``name`` column after ``smiles``, so a hit is found by its name.

    ``energy_mean/std`` are the predicted IE (cathode) or EA (anode) in eV. With ``global_sigma`` every
    molecule gets that sigma (the thesis's single error bar) instead of its own. ``margin_v`` is how far
    the interval mean +/- z*sigma stays inside the window (negative: by how much it sticks out).
    """
    if role not in ROLE_TARGET:
        raise InvalidInput(f"unknown role {role!r}; choose cathode or anode")
    potential = potential_vs_reference(energy_mean, "li")
    sigma = np.full(len(potential), float(global_sigma)) if global_sigma is not None else np.asarray(energy_std)
    lo, hi = potential - z * sigma, potential + z * sigma
    margin = np.minimum(lo - window.low_v, window.high_v - hi)
    table = pd.DataFrame({
        "smiles": smiles,
        "potential_v": potential,
        "sigma_v": sigma,
        "low_v": lo,
        "high_v": hi,
        "margin_v": margin,
        "passes": margin >= 0,
    })
    if reference != "li":
        table.insert(2, f"potential_v_vs_{reference}", potential_vs_reference(energy_mean, reference))
    if names is not None:
        table.insert(1, "name", names)
    # a cathode is better the higher its potential, an anode the lower
    ascending = [False, role == "anode"]
    return table.sort_values(["passes", "potential_v"], ascending=ascending, kind="stable").reset_index(drop=True)
