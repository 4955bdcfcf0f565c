"""Screening decisions against hand-computed cases (thesis rule E_ox = IE - 1.40, E_red = EA - 1.40)."""

from __future__ import annotations

import numpy as np
import pytest

from labloop.core.errors import InvalidInput
from labloop.surrogate.screening import Window, potential_vs_reference, screen, usable_window

ACN_AL = usable_window("acn", "al")


def test_acn_with_aluminium_window():
    assert (ACN_AL.low_v, ACN_AL.high_v) == (0.44, 4.7)  # ACN reduction .. Al pitting (ACN alone: 6.54)
    assert usable_window("acn", "none").high_v == 6.54


def test_reference_scales():
    assert potential_vs_reference(np.array([6.0]), "li")[0] == pytest.approx(4.60)
    assert potential_vs_reference(np.array([6.0]), "she")[0] == pytest.approx(1.56)
    assert potential_vs_reference(np.array([6.0]), "fc")[0] == pytest.approx(0.93)
    assert potential_vs_reference(np.array([6.0]), "custom", offset_v=2.0)[0] == pytest.approx(4.0)


def test_cathode_decisions_and_margins_by_hand():
    # IE 6.00 -> 4.60 V; sigma 0.02 -> [4.5608, 4.6392], inside [0.44, 4.70] with margin 4.70 - 4.6392
    # IE 6.05 -> 4.65 V; sigma 0.10 -> [4.454, 4.846], sticks out by 0.146
    # IE 5.00 -> 3.60 V; sigma 0.30 -> [3.012, 4.188], margin 4.70 - 4.188 = 0.512
    t = screen(["A", "B", "C"], np.array([6.0, 6.05, 5.0]), np.array([0.02, 0.10, 0.30]), ACN_AL, z=1.96)
    rows = {r.smiles: r for r in t.itertuples()}
    assert rows["A"].passes and rows["A"].margin_v == pytest.approx(4.70 - 4.6392)
    assert not rows["B"].passes and rows["B"].margin_v == pytest.approx(-0.146)
    assert rows["C"].passes and rows["C"].margin_v == pytest.approx(0.512)
    assert t.smiles.tolist() == ["A", "C", "B"]  # passing first, highest cathode potential first


def test_anode_uses_lower_potential_first_and_the_reduction_limit():
    # EA 1.50 -> 0.10 V: below ACN's 0.44 V reduction limit; EA 2.2 -> 0.80 and EA 3.0 -> 1.60 pass
    t = screen(["low", "mid", "high"], np.array([1.5, 2.2, 3.0]), np.array([0.05, 0.05, 0.05]), ACN_AL,
               role="anode", z=1.96)
    assert t.smiles.tolist() == ["mid", "high", "low"]
    assert t.passes.tolist() == [True, True, False]
    assert t.margin_v.iloc[0] == pytest.approx(0.80 - 0.098 - 0.44)


def test_global_sigma_replaces_per_molecule_sigma():
    # per-molecule sigma 0.01 would pass; the thesis's global sigma 0.2 pushes the interval out (4.6 + 0.392)
    t = screen(["A"], np.array([6.0]), np.array([0.01]), ACN_AL, global_sigma=0.2)
    assert not t.passes.iloc[0] and t.sigma_v.iloc[0] == 0.2
    assert screen(["A"], np.array([6.0]), np.array([0.01]), ACN_AL).passes.iloc[0]


def test_reference_column_is_added():
    t = screen(["A"], np.array([6.0]), np.array([0.01]), ACN_AL, reference="she")
    assert t["potential_v_vs_she"].iloc[0] == pytest.approx(1.56)
    assert t["potential_v"].iloc[0] == pytest.approx(4.60)


def test_custom_window_and_errors():
    assert usable_window("acn", "al", (1.0, 4.0)) == Window(1.0, 4.0, usable_window("acn", "al", (1.0, 4.0)).source)
    with pytest.raises(InvalidInput, match="solvent"):
        usable_window("water", "al")
    with pytest.raises(InvalidInput, match="collector"):
        usable_window("acn", "gold")
    with pytest.raises(InvalidInput, match="overlap"):
        usable_window("acn", "al", (5.0, 6.0))
    with pytest.raises(InvalidInput, match="reference"):
        potential_vs_reference(np.array([1.0]), "calomel")
