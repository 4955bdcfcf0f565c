"""Two electrons in one wave (a quinone's in a protic electrolyte): the simulator's n-electron couple against
closed-form theory, and the analysis that reads the protocol's ``n_electrons`` (instruments/cv_analysis.py
for_couple, more_electrons; sim/cv_physics.py CellParams.n_electrons)."""
from __future__ import annotations

import math

import pytest

from labloop.instruments.cv_analysis import (
    CVAnalysisSettings,
    analyze_cv,
    for_couple,
    more_electrons,
    reversibility_criterion,
)
from labloop.instruments.voltammogram import CVParams
from labloop.sim.cv_physics import FARADAY, GAS_CONSTANT, CellParams, simulate_cv


def _scan(n_electrons: int, k0_cm_s: float = 10.0):
    cell = CellParams(e0_v=0.0, k0_cm_s=k0_cm_s, conc_mm=1.0, diffusion_cm2_s=1e-5, n_electrons=n_electrons)
    return cell, simulate_cv(cell, CVParams(e_begin_v=-0.4, e_vertex1_v=0.4, e_vertex2_v=-0.4, scan_rate_v_s=0.1,
                                            e_step_v=0.001))


def test_a_reversible_two_electron_couple_follows_randles_sevcik_and_nernst():
    """Bard and Faulkner eq. 6.2.19: ip = 0.4463 n F A C sqrt(n F v D / RT), so n^1.5 times one electron's; and the
    wave narrows to 1/n: dEp 2.218 RT/nF, 28.5 mV at 25 C. Read as two electrons' (a cubic over +/-20 mV) it is
    that (a cubic's flat top reads it 1-2 mV
    high); over one electron's +/-40 mV the fit read it 36 mV."""
    ip = {}
    for n in (1, 2):
        cell, scan = _scan(n)
        theory = 0.4463 * n * FARADAY * cell.area_cm2 * 1e-6 * math.sqrt(
            n * FARADAY * 0.1 * 1e-5 / (GAS_CONSTANT * 298.15))
        result = analyze_cv(scan, n_electrons=n)
        assert result.ipa_a == pytest.approx(theory, rel=0.01)
        assert result.dep_v == pytest.approx(2.218 * GAS_CONSTANT * 298.15 / (n * FARADAY), abs=0.002)
        assert result.reversibility == "reversible" and result.e_half_v == pytest.approx(0.0, abs=0.001)
        ip[n] = result.ipa_a
    assert ip[2] / ip[1] == pytest.approx(2**1.5, rel=0.005)
    assert analyze_cv(_scan(2)[1]).dep_v > 0.034  # one electron's peak fit on it


def test_two_electrons_classed_by_their_own_cut_offs():
    """A two-electron couple at k0 0.01 cm/s reads dEp 45-60 mV: under one electron's 68 mV, so "reversible" as one
    electron's; its n F dEp / RT is a quasi-reversible one-electron couple's 90-120 mV, which n_electrons: 2 says."""
    _, scan = _scan(2, k0_cm_s=0.01)
    as_one, as_two = analyze_cv(scan), analyze_cv(scan, n_electrons=2)
    assert 0.040 < as_two.dep_v < 0.068
    assert as_one.reversibility == "reversible" and as_two.reversibility == "quasi-reversible"
    scaled = for_couple(None, 298.15, 2)
    written = CVAnalysisSettings()
    assert (scaled.reversible_max_dep_v, scaled.irreversible_min_dep_v, scaled.peak_fit_half_width_v) == (
        pytest.approx(written.reversible_max_dep_v / 2), pytest.approx(written.irreversible_min_dep_v / 2),
        pytest.approx(written.peak_fit_half_width_v / 2))
    warm = for_couple(None, 333.15, 2)
    assert warm.reversible_max_dep_v == pytest.approx(written.reversible_max_dep_v * 333.15 / 298.15 / 2)
    rule = reversibility_criterion(n_electrons=2)
    assert "0 < dEp <= 34 mV" in rule and "dEp >= 100 mV" in rule
    assert "(2 electrons in the wave: the cut-offs 68 and 200 mV at 25 C for one electron over 2)" in rule
    assert "electron" not in reversibility_criterion()


def test_a_wave_narrower_than_its_electrons_allow_is_said_with_how_many_it_looks_like():
    """Analysed as one electron's, a two-electron wave's D reads 8 times high, unsaid; its dEp of 29 mV is what
    shows it. Analysed as two, nothing is said; a dEp no count of electrons explains (an adsorbed couple's few mV)
    names the other causes only."""
    result = analyze_cv(_scan(2)[1], n_electrons=2)
    said = more_electrons(result)
    assert said is not None and said.startswith("its dEp reads 2") and "under the 57 mV a one-electron couple" in said
    assert "2 electrons in one wave (then say n_electrons: 2 in the cv step; as it is, D reads 8 times high" in said
    assert more_electrons(result, n_electrons=2) is None
    assert more_electrons(analyze_cv(_scan(1)[1])) is None
    flat = more_electrons(result.__class__(**{**result.__dict__, "dep_v": 0.004}), n_electrons=2)
    assert flat is not None and "electrons in one wave" not in flat and "adsorbed" in flat


def test_n_electrons_is_a_whole_positive_number():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(Exception, match="n_electrons"):
            CellParams(e0_v=0.0, n_electrons=bad)


def test_a_journals_rule_is_its_cvs_electrons():
    """``labloop log --json`` and the report state the rule a journal's experiments were classed by: its protocol's
    cv's n_electrons (orchestrator/journal/view.py reversibility_said); a protocol without the field, one electron."""
    from labloop.orchestrator.journal.view import reversibility_said
    from labloop.protocols.steps import parse_steps

    assert "dEp <= 34 mV" in reversibility_said(parse_steps([{"cv": {"n_electrons": 2}}]))
    assert "dEp <= 68 mV" in reversibility_said(parse_steps(["cv"]))


@pytest.mark.parametrize(("n", "k0", "named"), [(3, 10.0, 3), (2, 0.05, 2), (2, 10.0, 2)])
def test_the_count_named_is_the_one_whose_own_reading_fits(n, k0, named):
    """Read with one electron's +/-40 mV fit, a three-electron wave (19.6 mV) read 32.5 mV and was named two, and a
    slow two-electron one's 39.4 mV none (a reviewer's probes): the count named is the fewest whose own reading of
    the scan (its fit and cut-offs) is no narrower than such a couple can read."""
    _, scan = _scan(n, k0_cm_s=k0)
    as_one = analyze_cv(scan)
    said = more_electrons(as_one, dep_as=lambda k: analyze_cv(scan, n_electrons=k).dep_v)
    assert said is not None and f"{named} electrons in one wave (then say n_electrons: {named} " in said, said
    assert f"D reads {named ** 3} times high" in said


def test_a_two_electron_couples_faradaic_impedance_is_a_quarter():
    """Rct = RT / (n^2 F^2 A k0 c) and the Warburg coefficient go as 1/n^2 (Bard and Faulkner ch. 10): with no
    double layer, the faradaic impedance of a two-electron couple at its E0 is a quarter of one electron's."""
    import numpy as np

    from labloop.sim.cv_physics import cell_impedance

    freqs = np.array([1e4, 1e2, 1.0])
    one, two = (cell_impedance([CellParams(e0_v=0.0, k0_cm_s=0.01, conc_mm=1.0, ru_ohm=100.0, n_electrons=n)], freqs,
                               0.0) - 100.0 for n in (1, 2))
    assert np.allclose(one / two, 4.0, rtol=1e-9)
