"""Featurisation: identical to RDKit's own fingerprints, invalid SMILES skipped and reported, parallel and
cached paths give the same matrix as the plain serial one."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import rdFingerprintGenerator

from labloop.core.errors import InvalidInput
from labloop.surrogate.featurize import FingerprintSettings, featurize
from labloop.surrogate.fingerprint_cache import FingerprintCache


@pytest.mark.parametrize("settings", [FingerprintSettings(2, 2048, True), FingerprintSettings(1, 1024, False),
                                      FingerprintSettings(3, 512, True, atom_pair_bits=256, torsion_bits=128)])
def test_fingerprints_equal_rdkit(ocelot, settings):
    # the featuriser parses without MolFromSmiles's stereo perception: molecules with explicit or isotopic
    # hydrogens, stereo marks, charges and several fragments must still come out as MolFromSmiles makes them
    smiles = [*ocelot.smiles.head(60).tolist(), "[H]C([H])([H])c1ccccc1", "[2H]c1ccccc1", "C[C@H](N)C(=O)O",
              "F/C=C/c1ccccc1", "C/C=C\\1/CC1", "[Na+].[O-]c1ccccc1", "C[N+](C)(C)C"]
    feats = featurize(smiles, settings, n_jobs=1)
    gens = [rdFingerprintGenerator.GetMorganGenerator(radius=settings.radius, fpSize=settings.n_bits)]
    if settings.atom_pair_bits:
        gens.append(rdFingerprintGenerator.GetAtomPairGenerator(fpSize=settings.atom_pair_bits))
    if settings.torsion_bits:
        gens.append(rdFingerprintGenerator.GetTopologicalTorsionGenerator(fpSize=settings.torsion_bits))
    for row, smi in zip(feats.X, smiles, strict=True):
        mol = Chem.MolFromSmiles(smi)
        ref = np.concatenate([g.GetCountFingerprintAsNumPy(mol) if settings.counts else g.GetFingerprintAsNumPy(mol)
                              for g in gens])
        np.testing.assert_array_equal(row, np.minimum(ref, 255))
    assert feats.X.dtype == np.uint8 and feats.X.shape == (len(smiles), settings.n_bits + settings.atom_pair_bits +
                                                           settings.torsion_bits)


def test_invalid_smiles_are_skipped_and_reported_with_rows():
    smiles = ["CCO", "C1CC", "", "c1ccccc1", "not a smiles", "N#N", "c1cccc1", "FC(F)(F)(F)F"]
    feats = featurize(smiles, n_jobs=1)
    assert [(i.row, i.smiles) for i in feats.invalid] == [(1, "C1CC"), (2, ""), (4, "not a smiles"),
                                                         (6, "c1cccc1"), (7, "FC(F)(F)(F)F")]
    assert feats.rows.tolist() == [0, 3, 5]
    assert feats.X.shape[0] == 3
    np.testing.assert_array_equal(feats.X[1], featurize(["c1ccccc1"], n_jobs=1).X[0])


def test_molecules_no_redox_screen_has_are_skipped_with_the_reason():
    """No heavy atom (nothing for the world's Born radius) or a dummy atom (a fragment, not a molecule): skipped
    like invalid SMILES, so no planner proposes them."""
    feats = featurize(["[H][H]", "*c1ccccc1", "[He]", "c1ccccc1"], n_jobs=1)
    assert feats.rows.tolist() == [2, 3]
    assert [(i.row, i.reason) for i in feats.invalid] == [
        (0, "has no atom heavier than hydrogen: no molecule to measure"),
        (1, "holds a dummy atom '*', a fragment's attachment point, not a whole molecule")]


def test_parallel_equals_serial(ocelot):
    smiles = [*ocelot.smiles.head(5000).tolist(), "C(((("]
    serial = featurize(smiles, n_jobs=1)
    parallel = featurize(smiles, n_jobs=2)
    np.testing.assert_array_equal(serial.X, parallel.X)
    assert [i.row for i in parallel.invalid] == [5000]


def test_cache_returns_same_features_and_stores_canonical_smiles(tmp_path, ocelot):
    cache = FingerprintCache(tmp_path)
    settings = FingerprintSettings()
    smiles = [*ocelot.smiles.head(200).tolist(), "OCC", "bad(("]  # "OCC" is not canonical (ethanol: CCO)
    first = featurize(smiles, settings, cache=cache, n_jobs=1)
    stored = cache.get_many(["CCO", "OCC"], settings)
    assert set(stored) == {"CCO"}  # stored under the canonical SMILES only
    second = featurize(smiles, settings, cache=cache, n_jobs=1)
    np.testing.assert_array_equal(first.X, second.X)
    assert [i.row for i in second.invalid] == [201]
    assert len(cache.get_many(smiles, settings)) == 200  # every canonical input is a cache hit now


def test_cache_keeps_settings_apart_and_survives_damage(tmp_path):
    cache = FingerprintCache(tmp_path)
    a, b = FingerprintSettings(2, 2048, True), FingerprintSettings(1, 1024, False)
    featurize(["c1ccccc1O"], a, cache=cache)
    assert cache.get_many(["Oc1ccccc1"], b) == {}
    (tmp_path / f"{b.key()}.sqlite").write_bytes(b"this is not a database" * 100)
    feats = featurize(["Oc1ccccc1"], b, cache=cache)
    assert feats.n_valid == 1 and set(cache.get_many(["Oc1ccccc1"], b)) == {"Oc1ccccc1"}


def test_a_cache_folder_that_cannot_be_made_only_costs_the_speed_up(tmp_path, caplog):
    """A read-only HOME failed every retrain of an unattended campaign on its fingerprint cache (a trial); root runs
    the suite, so the folder is made impossible by a file where its parent should be."""
    (tmp_path / "home").write_text("a file, not a folder")
    cache = FingerprintCache(tmp_path / "home" / ".cache" / "labloop")
    settings = FingerprintSettings()
    with caplog.at_level("WARNING", logger="labloop.surrogate.fingerprint_cache"):
        cached = featurize(["c1ccccc1O", "CCO"], settings, cache=cache, n_jobs=1)
        again = featurize(["c1ccccc1O", "CCO"], settings, cache=cache, n_jobs=1)
    np.testing.assert_array_equal(cached.X, featurize(["c1ccccc1O", "CCO"], settings, n_jobs=1).X)
    np.testing.assert_array_equal(cached.X, again.X)
    said = [r.getMessage() for r in caplog.records if "cannot be written" in r.getMessage()]
    assert len(said) == 1 and "LABLOOP_CACHE_DIR" in said[0], caplog.text  # once, then quiet


@pytest.mark.parametrize("kwargs", [{"radius": 9}, {"n_bits": 8}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(InvalidInput):
        FingerprintSettings(**kwargs)


def test_chunks_are_equal_and_shared_evenly_between_workers():
    from labloop.surrogate.featurize import CHUNK_SIZE, _chunk_size

    for n, jobs in [(21411, 2), (100_000, 2), (4000, 2), (21411, 1), (7, 1)]:
        size = _chunk_size(n, jobs)
        chunks = -(-n // size)
        assert size <= CHUNK_SIZE
        assert chunks % jobs == 0, (n, jobs, size)  # every worker gets the same number of chunks
    assert _chunk_size(21411, 2) == 1785  # 12 chunks; fixed 2,000s gave 11 (6 for one worker, 5 for the other)


def test_check_rows_says_in_one_parse_what_the_three_checks_say_apart():
    """validate's row checks (orchestrator/compose.py: library_rows) read each SMILES once, over a process pool from
    PARALLEL_THRESHOLD rows: each row's reasons and canonical SMILES are exactly those of unreadable, beyond_prior
    and canonical_smiles, in order, in the pool and in this process."""
    from pathlib import Path

    import pandas as pd

    from labloop.surrogate.featurize import PARALLEL_THRESHOLD, beyond_prior, canonical_smiles, check_rows, unreadable

    data = Path(__file__).resolve().parents[2] / "data" / "ocelot_chromophore_v1_ie_ea.csv"
    odd = ["C[N+](C)(C)C.[Cl-]", "c1ccccc1XX", "", "OCC", "CCO", "[O]c1ccccc1", "*C", "[H][H]", "C[N+](=O)[O-]",
           "[NH4+]"]
    smiles = pd.read_csv(data, nrows=PARALLEL_THRESHOLD).smiles.tolist() + odd
    done: list[int] = []
    pooled = check_rows(smiles, n_jobs=2, progress=done.append)
    assert sum(done) == len(smiles) and len(done) > 1  # told chunk by chunk
    here = check_rows(smiles, n_jobs=1)
    assert here == pooled
    # remembered in this process: a second check (validate, then run) parses nothing again
    assert all(again is first for again, first in zip(check_rows(smiles, n_jobs=1), here, strict=True))
    assert [c.unreadable for c in pooled] == [unreadable(s) for s in smiles]
    assert [c.beyond_prior for c in pooled] == [beyond_prior(s) for s in smiles]
    assert [c.canonical for c in pooled] == canonical_smiles(smiles)
    tail = pooled[-len(odd):]
    assert [c.unreadable is None for c in tail] == [True, False, False, True, True, True, False, False, True, True]
    assert tail[3].canonical == tail[4].canonical == "CCO"
    assert [c.beyond_prior is not None for c in tail] == [True, False, False, False, False, True, False, False, True,
                                                          True]


def test_a_ctrl_c_while_the_pool_starts_is_raised_once_it_stands_and_ends_it():
    """A Ctrl-C during the pool's forks (core/signals.py held_signals) is raised inside the pool's block, which
    ends the pool: raised at once it was dropped in a fork hook, and the run hung; raised after the block, the pool
    was left to the interpreter's exit. The forked workers ignore it."""
    import os
    import signal

    from labloop.surrogate import featurize

    ctx = featurize._fork_context()
    started = []

    class CtrlCDuringTheStart:
        """The real context, with a Ctrl-C sent to this process as the pool starts its workers."""

        def Pool(self, *args, **kwargs):  # multiprocessing's name
            started.append(ctx.Pool(*args, **kwargs))
            os.kill(os.getpid(), signal.SIGINT)
            return started[-1]

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    reached: list[str] = []
    try:
        with pytest.raises(KeyboardInterrupt), featurize._pool(CtrlCDuringTheStart(), 2) as pool:
            reached.append("block")
            pool.map(abs, [-1])
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert reached == [] and len(started) == 1
        assert not any(worker.is_alive() for worker in started[0]._pool)  # ended by the pool's block
    finally:
        signal.signal(signal.SIGINT, before)
