"""Library rows that parse but are no molecule a redox screen has (``[H][H]``: no heavy atom, whose Born radius
is zero; ``*C``: a fragment) are treated as invalid SMILES are: named by CSV line in one warning, never
proposed. A dry run used to propose them (and invalid SMILES too, with the random planner): the simulated world
raised inside the potentiostat's emulator, printed tracebacks, and every later experiment timed out."""

from __future__ import annotations

from pathlib import Path

import pytest

from labloop.orchestrator.journal.store import Journal, State
from labloop.surrogate.featurize import beyond_prior, parse_smiles, unreadable

LIBRARY = Path(__file__).resolve().parents[2] / "examples" / "library.csv"
#: what a redox screen cannot hold, and what it can (a salt, a metal atom, a noble gas, an isotope label)
REFUSED = ["[H][H]", "*C", "C1CC"]
ACCEPTED = ["[Na+].[Cl-]", "[Li]", "[He]", "[2H]C"]


@pytest.mark.parametrize("smiles", REFUSED)
def test_no_heavy_atom_or_a_dummy_atom_is_no_molecule(smiles):
    assert parse_smiles(smiles) is None and unreadable(smiles)


@pytest.mark.parametrize("smiles", ACCEPTED)
def test_salts_atoms_and_isotopes_are_molecules(smiles):
    assert parse_smiles(smiles) is not None and unreadable(smiles) is None


def test_the_world_refuses_what_it_cannot_compute_by_name():
    """No ZeroDivisionError from the Born term: the same KeyError as any molecule the world does not know."""
    from labloop.sim.world import TruthTable, World

    world = World(TruthTable({"[H][H]": (15.4, -0.7), "[He]": (24.6, -0.5)}), source="ie_ea",
                  quantity="oxidation_potential")
    with pytest.raises(KeyError, match="no atom heavier than hydrogen"):
        world.truth_v("[H][H]")
    assert world.truth_v("[He]") == pytest.approx(world.truth_v("[He]"))  # one heavy atom: a finite Born term


def test_a_dry_run_skips_them_and_measures_the_rest(tmp_path, labloop, write_campaign):
    rows = LIBRARY.read_text().splitlines()[:7]  # the header and 6 molecules
    rows += [f"{smiles},7.5,0.5" for smiles in [*ACCEPTED[:2], *REFUSED, *ACCEPTED[2:]]]
    (tmp_path / "odd.csv").write_text("\n".join(rows) + "\n")
    campaign = write_campaign(tmp_path, library={"file": str(tmp_path / "odd.csv")},
                              budget={"max_experiments": 20})
    validated = labloop("validate", campaign, "--dry-run")
    assert validated.returncode == 0, validated.stderr
    warning = ("odd.csv will never be proposed: line 10 '[H][H]' (has no atom heavier than "
               "hydrogen: no molecule to measure), line 11 '*C' (holds a dummy atom")
    assert warning in validated.stderr and "line 12 'C1CC'" in validated.stderr
    result = labloop("run", campaign, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "emulator raised" not in result.stderr
    with Journal.open(tmp_path / "tiny.db", readonly=True) as journal:
        experiments = journal.experiments()
    assert {e.smiles for e in experiments} == {*(r.split(",")[0] for r in rows[1:7]), *ACCEPTED}
    # each measured, or its voltammogram judged (a lone Li or He atom has no wave in the window): no rig fault
    assert all(e.status == State.DONE or e.cause.startswith("analysis:") for e in experiments), \
        [(e.smiles, e.cause) for e in experiments]


SALT = "parts, a salt or a mixture, read as one molecule (counter-ions included)"
NEUTRAL = "neutral, but 2 charged atoms (a nitro group, an N-oxide or a zwitterion: none in the prior)"


@pytest.mark.parametrize(("smiles", "said"), [("C[N+](C)(C)C", "an ion, charge +1"),
                                              ("CC(=O)[O-]", "an ion, charge -1"),
                                              ("[O-][n+]1ccccc1", NEUTRAL), ("O=[N+]([O-])c1ccccc1", NEUTRAL),
                                              ("[O-]C(=O)C(=O)[O-]", "an ion, charge -2"),
                                              ("[CH2]c1ccccc1", "1 unpaired electron"), ("c1ccccc1", None),
                                              ("CC1(C)CCCC(C)(C)[N+]1=O.F[B-](F)(F)F", f"2 {SALT}"),
                                              ("CN(C)c1ccc(N(C)C)cc1.Cl.Cl", f"3 {SALT}"),
                                              ("[2H]C", None), ("[nH]1cccc1", None), ("C1CC", None)])
def test_ions_and_radicals_are_named_as_beyond_the_prior(smiles, said):
    assert beyond_prior(smiles) == said


def _ions_and_radicals(folder: Path) -> Path:
    """The example library's first 4 molecules, then an ammonium ion (line 6), a benzyl radical (line 7) and an
    acetate ion (line 8)."""
    rows = LIBRARY.read_text().splitlines()[:5]
    rows += [f"{smiles},7.5,0.5" for smiles in ["C[N+](C)(C)C", "[CH2]c1ccccc1", "CC(=O)[O-]"]]
    (folder / "ions.csv").write_text("\n".join(rows) + "\n")
    return folder / "ions.csv"


ION_WARNING = ("3 molecules in {path} lie outside the neutral closed-shell DFT prior: predicted by extrapolation, "
               "with a sigma too small to show it: line 6 'C[N+](C)(C)C' (an ion, charge +1), line 7 '[CH2]c1ccccc1' "
               "(1 unpaired electron), line 8 'CC(=O)[O-]' (an ion, charge -1)")


def test_validate_and_run_name_the_ions_and_radicals_by_line(tmp_path, labloop, write_campaign):
    """The prior is neutral and closed-shell: an ion or a radical was accepted silently and predicted with a
    sigma as small as any molecule's. It is still measured, with a warning naming its line."""
    campaign = write_campaign(tmp_path, library={"file": str(_ions_and_radicals(tmp_path))},
                              budget={"max_experiments": 1})
    validated = labloop("validate", campaign, "--dry-run")
    assert validated.returncode == 0, validated.stderr
    assert ION_WARNING.format(path=tmp_path / "ions.csv") in validated.stderr
    result = labloop("run", campaign, "--dry-run")
    assert result.returncode == 0 and ION_WARNING.format(path=tmp_path / "ions.csv") in result.stderr, result.stderr


@pytest.mark.parametrize("command", ["predict", "screen"])
def test_surrogate_predict_and_screen_name_the_ions_and_radicals(tmp_path, labloop, tiny_model_dir, command):
    library = _ions_and_radicals(tmp_path)
    result = labloop("surrogate", command, tiny_model_dir, library, "-o", tmp_path / "out.csv", "--no-cache")
    assert result.returncode == 0, result.stderr
    assert ION_WARNING.format(path=library) in result.stderr
