"""Morgan (ECFP) fingerprints of SMILES, as dense numpy matrices the network can eat.

Why its own module: featurisation is the only place the surrogate touches RDKit, it is the hot path of
screening large libraries (100k SMILES), and it is where bad input (unparsable SMILES) first shows up.
Invalid SMILES are never fatal: they are skipped and reported with their row numbers. So are molecules no redox
screen has (:func:`molecule_problem`: ``[H][H]``, ``*C``), and SMILES longer
than ``labloop.surrogate.dataset.MAX_SMILES_LENGTH``, unparsed: RDKit's parse time grows faster than the
length, and one 1,000,000-character SMILES once held a featurisation for more than 15 minutes.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from rdkit import Chem, RDLogger
from rdkit.Chem import rdFingerprintGenerator
from rdkit.rdBase import BlockLogs

from labloop.core.errors import InvalidInput
from labloop.core.signals import held_signals
from labloop.core.text import plural
from labloop.surrogate.dataset import shown, unusable
from labloop.surrogate.descriptors import NAMES as DESCRIPTOR_NAMES
from labloop.surrogate.descriptors import descriptor_matrix

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext
    from multiprocessing.pool import Pool

    from labloop.surrogate.fingerprint_cache import FingerprintCache

log = logging.getLogger(__name__)

#: Below this many molecules a process pool costs more than it saves.
PARALLEL_THRESHOLD = 4000
CHUNK_SIZE = 2000
#: the library rows whose checks a process remembers (:func:`_check_row`): a few MB, the rows of a campaign's
#: library up to :data:`PARALLEL_THRESHOLD` and beyond
CHECKED_ROWS_KEPT = 20_000
#: what labloop's runner turns into its own exception (orchestrator/loop/interrupts.py), which pool workers must not
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


@dataclass(frozen=True)
class FingerprintSettings:
    """How a molecule becomes a vector; stored in every model manifest so predictions featurise alike.

    The vector is the Morgan (ECFP) fingerprint of ``radius`` and ``n_bits``, optionally followed by a
    hashed atom-pair fingerprint (``atom_pair_bits``) and a topological-torsion fingerprint
    (``torsion_bits``), all from RDKit's fingerprint generators; 0 bits leaves a block out. Atom pairs
    add what ECFP's local environments miss and IE/EA depend on: how far apart atom types sit, i.e. the
    size and shape of the conjugated system. ``counts=True`` stores how often each hashed feature
    occurs (clipped to 255) instead of a bit, which matters for molecules with repeated units.
    ``descriptors=True`` adds the float columns of :mod:`labloop.surrogate.descriptors` (Hückel pi
    orbital energies, size, rings), kept apart from the uint8 fingerprint matrix.
    """

    radius: int = 2
    n_bits: int = 2048
    counts: bool = True
    atom_pair_bits: int = 0
    torsion_bits: int = 0
    descriptors: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.radius <= 6:
            raise InvalidInput(f"fingerprint radius must be 0..6, got {self.radius}")
        for name in ("n_bits", "atom_pair_bits", "torsion_bits"):
            bits = getattr(self, name)
            if not (16 <= bits <= 65536 or (bits == 0 and name != "n_bits")):
                raise InvalidInput(f"fingerprint {name} must be 16..65536{' or 0' if name != 'n_bits' else ''}, "
                                   f"got {bits}")

    @property
    def width(self) -> int:
        """Length of the fingerprint vector (uint8 columns)."""
        return self.n_bits + self.atom_pair_bits + self.torsion_bits

    @property
    def n_descriptors(self) -> int:
        """Number of float descriptor columns."""
        return len(DESCRIPTOR_NAMES) if self.descriptors else 0

    def key(self) -> str:
        """Stable text key (cache file names, manifests)."""
        kind = "count" if self.counts else "bit"
        extra = (f"-ap{self.atom_pair_bits}" if self.atom_pair_bits else "") + (
            f"-tt{self.torsion_bits}" if self.torsion_bits else "") + ("-desc" if self.descriptors else "")
        return f"morgan-r{self.radius}-n{self.n_bits}{extra}-{kind}"

    def generators(self) -> list[tuple[object, int]]:
        """(RDKit generator, bits) of each block, in vector order."""
        gens = [(rdFingerprintGenerator.GetMorganGenerator(radius=self.radius, fpSize=self.n_bits), self.n_bits)]
        if self.atom_pair_bits:
            gens.append((rdFingerprintGenerator.GetAtomPairGenerator(fpSize=self.atom_pair_bits),
                         self.atom_pair_bits))
        if self.torsion_bits:
            gens.append((rdFingerprintGenerator.GetTopologicalTorsionGenerator(fpSize=self.torsion_bits),
                         self.torsion_bits))
        return gens

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FingerprintSettings:
        return cls(radius=int(data["radius"]), n_bits=int(data["n_bits"]), counts=bool(data["counts"]),
                   atom_pair_bits=int(data.get("atom_pair_bits", 0)), torsion_bits=int(data.get("torsion_bits", 0)),
                   descriptors=bool(data.get("descriptors", False)))


@dataclass(frozen=True)
class InvalidSmiles:
    """One input that was skipped; ``row`` is its 0-based position in the input sequence, ``reason`` why."""

    row: int
    smiles: str
    reason: str = "not a valid SMILES"

    @property
    def shown(self) -> str:
        """The SMILES for a message (shortened when long) and, unless it just did not parse, why it was skipped."""
        return shown(self.smiles) + ("" if self.reason == InvalidSmiles.reason else f" ({self.reason})")


@dataclass
class Features:
    """Features of the valid inputs, and where they came from.

    ``X`` holds the fingerprints (uint8), ``D`` the descriptors (float32, zero columns when off);
    ``rows[i]`` is the input position of ``X[i]``; ``invalid`` lists the skipped inputs.
    """

    X: np.ndarray
    D: np.ndarray
    rows: np.ndarray
    invalid: list[InvalidSmiles] = field(default_factory=list)

    @property
    def n_valid(self) -> int:
        return int(self.X.shape[0])

    def __len__(self) -> int:
        return self.n_valid

    def subset(self, index: np.ndarray | slice) -> Features:
        """The molecules at ``index`` (positions in this object, not input rows)."""
        return Features(self.X[index], self.D[index], self.rows[index])


def parse_smiles(smiles: object) -> Chem.Mol | None:
    """RDKit molecule, or None for anything that is not a non-empty parsable SMILES string of a molecule
    labloop can screen (:func:`molecule_problem`).

    Why not plain ``Chem.MolFromSmiles``: after sanitising it also perceives stereochemistry, a fifth of the
    parse time, and none of the features uses it (the generators run without chirality; the descriptors are
    2D; ``Chem.MolToSmiles`` perceives stereo itself when the cache asks for canonical SMILES). Parsing
    unsanitised, then sanitising and removing explicit hydrogens as ``MolFromSmiles`` does, gives the same
    molecules and bit-identical features on all bundled molecules (bench/RESULTS.md).
    """
    return _parse(smiles)[0]


def canonical_smiles(smiles: Sequence[str]) -> list[str]:
    """RDKit's canonical SMILES of each input ("" where :func:`parse_smiles` reads no molecule): the key on which
    two spellings of one molecule (``OCC``, ``CCO``) meet, when a table is checked for repeated molecules
    (``surrogate train``, a backtest's truth table). Unreadable rows are for the caller to report, once."""
    with BlockLogs():
        return [Chem.MolToSmiles(mol) if (mol := parse_smiles(s)) is not None else "" for s in smiles]


def stereo_free(canonical: Sequence[str]) -> list[str]:
    """Each of ``canonical`` (:func:`canonical_smiles`) without its stereo marks (``@``, ``/``, ``\\``): what the
    surrogate's fingerprint sees of it, one for every stereoisomer; a key without marks, or "", as it is. Why: a
    training table's E and Z isomer (or two enantiomers) are one input to the network, which can learn one value
    for them, as it can for a molecule given twice (surrogate/repeats.py)."""
    with BlockLogs():
        return [_flat(mol) if _STEREO_MARKS.intersection(key) and (mol := parse_smiles(key)) is not None else key
                for key in canonical]


def _flat(mol: Chem.Mol) -> str:
    """The canonical SMILES of ``mol`` without stereo marks (:attr:`RowCheck.flat`, :func:`stereo_free`), its isotopes
    kept (the fingerprint sees them; ``isomericSmiles=False`` dropped both)."""
    flat = Chem.Mol(mol)
    Chem.RemoveStereochemistry(flat)
    return Chem.MolToSmiles(flat)


def first_spellings(smiles: Sequence[str]) -> dict[str, str]:
    """Each molecule of ``smiles`` once, as its first row writes it, in order, with its canonical SMILES ("" for an
    unreadable row, kept once per spelling: the planners skip it, and ``validate`` names it). Why:
    ``O=C1c2ccccc2C(=O)c2ccccc12`` after ``O=C2c1ccccc1C(=O)c3ccccc23`` is the same anthraquinone, which planners
    that compared spellings proposed twice, and a campaign counted as two hits (a chemist's library)."""
    first: dict[str, tuple[str, str]] = {}
    for written, key in zip(smiles, canonical_smiles(smiles), strict=True):
        first.setdefault(key or f"\0{written}", (written, key))  # "\0": no canonical SMILES starts with it
    return dict(first.values())


#: what a SMILES of a salt, an ion or a stereoisomer writes: parts, charges, tetrahedral and double-bond stereo
_FORM_MARKS = frozenset(".+-@/\\")
#: the characters that write stereochemistry in a SMILES
_STEREO_MARKS = frozenset("@/\\")


def parent_smiles(smiles: str) -> str:
    """The canonical SMILES of ``smiles``'s parent ("" when it is no molecule :func:`parse_smiles` reads): its largest
    organic part (a salt's counter-ion, an HCl left out), neutralised where a proton does it (a carboxylate, an
    ammonium), without stereochemistry. Why: a lab's table records the form it made (the HCl salt, the E isomer)
    while a library lists the parent, and the two met on nothing (:func:`forms_of` says where they meet)."""
    from rdkit.Chem.MolStandardize import rdMolStandardize

    mol = parse_smiles(smiles)
    if mol is None:
        return ""
    with BlockLogs():
        parent = rdMolStandardize.Uncharger().uncharge(
            rdMolStandardize.LargestFragmentChooser(preferOrganic=True).choose(mol))
        Chem.RemoveStereochemistry(parent)
        return Chem.MolToSmiles(parent)


def forms_of(written: Sequence[str], library: dict[str, str]) -> list[tuple[str, str]]:
    """(SMILES as ``written``, the library molecule it is another form of) for each of ``written`` (a table's
    molecules) that is no molecule of ``library`` (canonical SMILES -> as the library writes it) but whose parent
    (:func:`parent_smiles`) is one, or is one without its stereochemistry, and is not itself among ``written`` (then
    the table has the library's molecule too, and the form is a molecule of its own beside it: a review). Only SMILES
    that write parts, charges or stereo can be such a form; the library's stereo SMILES are parsed again only when a
    form's parent is not found as the library writes it."""
    maybe = [w for w in written if _FORM_MARKS.intersection(w)]
    if not maybe:
        return []
    found = []  # (as written, its parent), for those whose parent is another molecule than itself
    for w, key in zip(maybe, canonical_smiles(maybe), strict=True):
        if key and key not in library and (parent := parent_smiles(w)) and (
                parent != key or _STEREO_MARKS.intersection(w)):
            found.append((w, parent))
    if not found:
        return []
    flat = dict(library)
    if any(parent not in library for _, parent in found):
        with BlockLogs():
            for key, as_written in library.items():
                if _STEREO_MARKS.intersection(key) and (mol := parse_smiles(as_written)) is not None:
                    Chem.RemoveStereochemistry(mol)
                    flat.setdefault(Chem.MolToSmiles(mol), as_written)
    forms = [(w, parent) for w, parent in found if parent in flat]
    if not forms:
        return []
    formed = {w for w, _ in forms}
    own = set(canonical_smiles([w for w in written if w not in formed]))
    return [(w, flat[parent]) for w, parent in forms if parent not in own]


def unreadable(smiles: object) -> str | None:
    """Why :func:`parse_smiles` gives None for ``smiles`` (the reason an :class:`InvalidSmiles` shows), or None
    when it reads it."""
    return _parse(smiles)[1] or None


def beyond_prior(smiles: object) -> str | None:
    """Why the surrogate's prediction for ``smiles`` is an extrapolation however small its sigma, or None: an ion
    (a net charge), a neutral molecule written with charged atoms (a nitro group, an N-oxide, a zwitterion) or a
    radical (an unpaired electron). The DFT prior (data/SOURCES.md) holds neutral closed-shell molecules only, none
    with a charged atom (so no nitro group either), so nothing it was trained or calibrated on resembles such a
    species, and the ensemble members can agree on a wrong number. The reason says which, since a nitroarene
    called "2 charged atoms" read to a chemist as a neutral molecule taken for an ion. A salt or a mixture (parts
    written with ``.``: TEMPO+ BF4-, TMPD 2HCl) is one too: the prior holds single molecules, and the fingerprint
    and the planners read the parts as one molecule, counter-ion or HCl included (a chemist's trial: TMPD 2HCl
    passed unsaid, and the TEMPO salt was called a nitro group). None too for what :func:`parse_smiles` does not
    read (reported as invalid instead). Only a bracket atom can carry a charge or an unpaired electron, and only
    ``.`` separates parts, so a SMILES with neither is not parsed (a million-row library)."""
    if not isinstance(smiles, str) or not _may_be_beyond_prior(smiles):
        return None
    mol = parse_smiles(smiles)
    return None if mol is None else _beyond_prior(mol)


def _may_be_beyond_prior(smiles: str) -> bool:
    """Whether ``smiles`` can be beyond the prior at all: only a bracket atom carries a charge or an unpaired
    electron, and only ``.`` separates parts, so a SMILES with neither need not be looked at."""
    return "[" in smiles or "." in smiles


def _beyond_prior(mol: Chem.Mol) -> str | None:
    """:func:`beyond_prior` of a parsed molecule."""
    parts = len(Chem.GetMolFrags(mol))
    if parts > 1:
        return f"{parts} parts, a salt or a mixture, read as one molecule (counter-ions included)"
    charged = sum(atom.GetFormalCharge() != 0 for atom in mol.GetAtoms())
    net = Chem.GetFormalCharge(mol)
    unpaired = sum(atom.GetNumRadicalElectrons() for atom in mol.GetAtoms())
    if net:
        return f"an ion, charge {net:+d}"
    if charged:
        return f"neutral, but {charged} charged atoms (a nitro group, an N-oxide or a zwitterion: none in the prior)"
    if unpaired:
        return f"{unpaired} {plural(unpaired, 'unpaired electron')}"
    return None


def molecule_problem(mol: Chem.Mol) -> str | None:
    """Why a molecule that parses is still no candidate of a redox screen, or None.

    A dummy atom (``*``, atomic number 0) is a fragment's attachment point: no one can put it in a vial.
    A molecule without an atom heavier than hydrogen (``[H][H]``, ``[H+]``) has no size for the simulated
    world's Born term (its radius grows with the heavy atoms: zero of them divided by zero) and no
    fingerprint bit the surrogate learns from. Anything else (a salt, a metal atom, a noble gas, an isotope)
    is a molecule the surrogate, the planners and the world handle, whether or not it shows a wave.
    """
    numbers = [atom.GetAtomicNum() for atom in mol.GetAtoms()]
    if 0 in numbers:
        return "holds a dummy atom '*', a fragment's attachment point, not a whole molecule"
    if max(numbers) <= 1:
        return "has no atom heavier than hydrogen: no molecule to measure"
    return None


def _parse(smiles: object) -> tuple[Chem.Mol | None, str]:
    """(the molecule, "") or (None, why not): one reading of a SMILES for :func:`parse_smiles` and
    :func:`unreadable`."""
    if not isinstance(smiles, str) or not smiles.strip():
        return None, InvalidSmiles.reason
    if (reason := unusable(smiles)) is not None:
        return None, reason
    mol = Chem.MolFromSmiles(smiles, sanitize=False)
    if mol is None or mol.GetNumAtoms() == 0:
        return None, InvalidSmiles.reason
    try:
        Chem.SanitizeMol(mol)
    except Chem.MolSanitizeException:  # valence, kekulisation, aromaticity: not a molecule
        return None, InvalidSmiles.reason
    if (reason := molecule_problem(mol)) is not None:
        return None, reason
    if mol.GetNumHeavyAtoms() != mol.GetNumAtoms():
        mol = Chem.RemoveHs(mol)
    return mol, ""


Chunk = tuple[np.ndarray, np.ndarray, np.ndarray, list[str] | None]


def _fill_chunk(smiles: Sequence[str], settings: FingerprintSettings, want_canonical: bool, out: np.ndarray,
                desc: np.ndarray, valid: np.ndarray) -> list[str] | None:
    """Featurise one chunk into ``out`` (fingerprints), ``desc`` (descriptors) and ``valid`` (all zeros on entry,
    one row per SMILES); returns the canonical SMILES ("" for invalid input) if ``want_canonical``.

    Why it writes into given arrays: on one core the chunks fill the final matrix directly; concatenating
    per-chunk matrices (88 MB for 21,411 molecules with the default settings) cost ~10 us per molecule.
    """
    RDLogger.DisableLog("rdApp.*")  # invalid SMILES are reported by us, once, not by RDKit per row
    # One pass over the chunk per step (parse, each fingerprint, descriptors) rather than all steps per
    # molecule: each step's RDKit code then stays in the CPU's caches, which made the chunk ~8% faster.
    parsed = [parse_smiles(smi) for smi in smiles]
    rows = [i for i, mol in enumerate(parsed) if mol is not None]
    mols = [parsed[i] for i in rows]
    valid[rows] = True
    end = 0
    for gen, bits in settings.generators():
        fingerprint = gen.GetCountFingerprintAsNumPy if settings.counts else gen.GetFingerprintAsNumPy
        start, end = end, end + bits
        # rows are copied as RDKit gives them (uint32) and clipped to uint8 once per chunk: a clipping
        # ufunc call per molecule and generator cost ~3 us
        raw = np.empty((len(mols), bits), dtype=np.uint32)
        for k, mol in enumerate(mols):
            raw[k] = fingerprint(mol)
        if len(mols) == len(smiles):
            np.minimum(raw, 255, out=out[:, start:end], casting="unsafe")
        else:
            out[rows, start:end] = np.minimum(raw, 255)
    if settings.descriptors and mols:
        desc[valid] = descriptor_matrix(mols)  # batched: same-size Hückel matrices are diagonalised together
    if not want_canonical:
        return None
    canonical = [""] * len(smiles)
    for i, mol in zip(rows, mols, strict=True):
        canonical[i] = Chem.MolToSmiles(mol)
    return canonical


def _featurize_chunk(args: tuple[Sequence[str], FingerprintSettings, bool]) -> Chunk:
    """Featurise one chunk: (fingerprints, descriptors, validity mask, canonical SMILES or None).

    Runs in worker processes, so it only takes picklable arguments and touches no shared state.
    """
    smiles, settings, want_canonical = args
    out = np.zeros((len(smiles), settings.width), dtype=np.uint8)
    desc = np.zeros((len(smiles), settings.n_descriptors), dtype=np.float32)
    valid = np.zeros(len(smiles), dtype=bool)
    return out, desc, valid, _fill_chunk(smiles, settings, want_canonical, out, desc, valid)


@dataclass(frozen=True)
class RowCheck:
    """What one library row is, read once (:func:`check_rows`): why it is unreadable (:func:`unreadable`), why it
    lies beyond the prior (:func:`beyond_prior`), and its canonical SMILES ("" when unreadable)."""

    unreadable: str | None
    beyond_prior: str | None
    canonical: str
    #: the canonical SMILES without its stereo marks (``@``, ``/``, ``\\``), when the row has any ("" otherwise): what
    #: the surrogate's fingerprint sees of it, the same for every stereoisomer
    flat: str = ""


def check_rows(smiles: Sequence[str], n_jobs: int | None = None,
               progress: Callable[[int], None] | None = None) -> list[RowCheck]:
    """:class:`RowCheck` of every row, each SMILES parsed once, over ``n_jobs`` processes (default: every core)
    from :data:`PARALLEL_THRESHOLD` rows. Why one pass: ``validate`` and ``run`` ask all three of every library row
    before the first byte, and asked apart they parsed each SMILES three times (51 s per 100,000 rows, measured);
    ``progress`` is told the rows done since its last call."""
    jobs = n_jobs or default_jobs()
    if jobs <= 1 or len(smiles) < PARALLEL_THRESHOLD:
        checked = _check_chunk(smiles)
        if progress:
            progress(len(smiles))
        return checked
    size = _chunk_size(len(smiles), jobs)
    chunks = [smiles[start:start + size] for start in range(0, len(smiles), size)]
    checked = []
    with _pool(_fork_context(), min(jobs, len(chunks))) as pool:
        for chunk, done in zip(chunks, pool.imap(_check_chunk, chunks), strict=True):
            checked += done
            if progress:
                progress(len(chunk))
    return checked


def _check_chunk(smiles: Sequence[str]) -> list[RowCheck]:
    """:func:`check_rows` of one chunk (in a pool worker, or in this process)."""
    with BlockLogs():
        return [_check_row(text) for text in smiles]


@lru_cache(maxsize=CHECKED_ROWS_KEPT)
def _check_row(text: str) -> RowCheck:
    """:class:`RowCheck` of one SMILES, remembered: a pure function of the text, and a process that checks a campaign
    more than once (``validate`` then ``run`` of ``labloop``'s commands called in one process, a dashboard, the tests)
    checks the same library rows each time."""
    mol, why = _parse(text)
    if mol is None:
        return RowCheck(why, None, "")
    canonical = Chem.MolToSmiles(mol)
    flat = _flat(mol) if _STEREO_MARKS.intersection(canonical) else ""
    return RowCheck(None, _beyond_prior(mol) if _may_be_beyond_prior(text) else None, canonical, flat)


def default_jobs() -> int:
    """Worker processes to use: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _fork_context() -> BaseContext:
    """Fork where the platform has it: the workers start in milliseconds and only run RDKit/numpy, never
    TensorFlow."""
    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)


@contextmanager
def _pool(ctx: BaseContext, processes: int) -> Iterator[Pool]:
    """A pool whose workers stop as plain processes: forked, they inherited the handler a run installs for Ctrl-C
    and ``kill`` (orchestrator/loop/interrupts.py), so the SIGTERM with which the pool ends its workers raised the
    runner's exception in each: a traceback after a successful run (``--scheduler none``, a 5,000-row library), a
    page of them on Ctrl-C, and once a worker that outlived its SIGTERM, for which the run then waited for good.

    The signals stay blocked in the workers from the fork until :func:`_worker_signals` has set their own. Here a
    signal during the forks is noted and raised once the pool stands, inside the block, which ends the pool: raised
    at once, it landed in a fork hook (logging's lock release), which drops exceptions, so the Ctrl-C was lost and
    logging's lock left held, and the run then hung. Handlers can only be set in the main thread; a pool started
    in another (a retraining) only keeps its workers' signals blocked."""
    with held_signals(_STOP_SIGNALS) as noted:
        pool = ctx.Pool(processes, initializer=_worker_signals)
    with pool:
        for signum in noted[:1]:
            signal.raise_signal(signum)  # to the handler in place again (a run's raises its exception)
        yield pool


def _worker_signals() -> None:
    """In a pool worker: Ctrl-C and a terminal's hangup are ignored (a terminal sends them to the whole process
    group; the main process ends the pool), and the pool's SIGTERM ends the worker at once, as it would any process
    without a handler."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


def _chunk_size(n: int, jobs: int) -> int:
    """At most :data:`CHUNK_SIZE` molecules per chunk, and as many equal chunks per worker: with a fixed size
    the last round leaves workers idle (21,411 molecules in 2,000s: 6 chunks for one worker, 5 for the other)."""
    per_worker = max(1, math.ceil(n / jobs))
    return math.ceil(per_worker / math.ceil(per_worker / CHUNK_SIZE))


def _compute(
    smiles: Sequence[str],
    settings: FingerprintSettings,
    n_jobs: int,
    want_canonical: bool,
    progress: Callable[[int], None] | None,
) -> Chunk:
    parallel = n_jobs > 1 and len(smiles) >= PARALLEL_THRESHOLD
    size = _chunk_size(len(smiles), n_jobs if parallel else 1)
    bounds = [(i, min(i + size, len(smiles))) for i in range(0, len(smiles), size)]
    X = np.zeros((len(smiles), settings.width), dtype=np.uint8)
    D = np.zeros((len(smiles), settings.n_descriptors), dtype=np.float32)
    valid = np.zeros(len(smiles), dtype=bool)
    canonical: list[str] | None = [] if want_canonical else None
    if parallel:
        tasks = [(smiles[start:stop], settings, want_canonical) for start, stop in bounds]
        with _pool(_fork_context(), min(n_jobs, len(tasks))) as pool:
            for (start, stop), res in zip(bounds, pool.imap(_featurize_chunk, tasks), strict=True):
                X[start:stop], D[start:stop], valid[start:stop] = res[:3]
                if canonical is not None:
                    canonical += res[3]  # type: ignore[arg-type]
                if progress:
                    progress(stop - start)
    else:
        for start, stop in bounds:
            chunk_canonical = _fill_chunk(smiles[start:stop], settings, want_canonical, X[start:stop],
                                          D[start:stop], valid[start:stop])
            if canonical is not None:
                canonical += chunk_canonical  # type: ignore[arg-type]
            if progress:
                progress(stop - start)
    return X, D, valid, canonical


def featurize(
    smiles: Sequence[str],
    settings: FingerprintSettings | None = None,
    *,
    n_jobs: int | None = None,
    cache: FingerprintCache | None = None,
    progress: Callable[[int], None] | None = None,
) -> Features:
    """Fingerprints of ``smiles`` (uint8 matrix, one row per valid input), skipping invalid SMILES.

    With a ``cache``, inputs already seen (by their SMILES text, which for canonical input is the
    canonical SMILES) are not parsed again; new ones are computed and stored under their canonical
    SMILES. ``progress`` is called with the number of molecules finished since the last call.
    """
    settings = settings or FingerprintSettings()
    smiles = list(smiles)
    n_jobs = default_jobs() if n_jobs is None else max(1, n_jobs)
    X = np.zeros((len(smiles), settings.width), dtype=np.uint8)
    D = np.zeros((len(smiles), settings.n_descriptors), dtype=np.float32)
    valid = np.zeros(len(smiles), dtype=bool)
    todo = list(range(len(smiles)))
    if cache is not None:
        found = cache.get_many(smiles, settings)
        todo = []
        for i, smi in enumerate(smiles):
            hit = found.get(smi) if isinstance(smi, str) else None
            if hit is None:
                todo.append(i)
            else:
                X[i], D[i], valid[i] = hit[0], hit[1], True
        if progress and len(smiles) - len(todo):
            progress(len(smiles) - len(todo))
        log.debug("fingerprint cache: %d hits, %d misses", len(smiles) - len(todo), len(todo))
    if todo:
        sub = [smiles[i] for i in todo]
        X_new, D_new, valid_new, canonical = _compute(sub, settings, n_jobs, cache is not None, progress)
        if len(todo) == len(smiles):  # nothing from the cache: no copy (88 MB for 21,411 default rows)
            X, D, valid = X_new, D_new, valid_new
        else:
            idx = np.asarray(todo)
            X[idx], D[idx], valid[idx] = X_new, D_new, valid_new
        if cache is not None and canonical is not None:
            ok = np.flatnonzero(valid_new)
            cache.put_many([canonical[i] for i in ok], X_new[ok], D_new[ok], settings)
    with BlockLogs():  # why each row was skipped is said once, below and by the caller, not by RDKit per row
        invalid = [InvalidSmiles(int(i), str(smiles[i]), unreadable(smiles[i]) or InvalidSmiles.reason)
                   for i in np.flatnonzero(~valid)]
    if invalid:
        log.info("skipped %d invalid SMILES (first at row %d: %s)", len(invalid), invalid[0].row, invalid[0].shown)
    rows = np.flatnonzero(valid)
    if len(rows) < len(smiles):
        X, D = X[rows], D[rows]
    return Features(X=X, D=D, rows=rows, invalid=invalid)



def featurize_canonical(smiles: Sequence[str], settings: FingerprintSettings) -> tuple[Features, list[str]]:
    """Features of one chunk in this process, plus the canonical SMILES of every input ("" where invalid).

    Why apart from :func:`featurize`: a library pipeline task (:mod:`labloop.surrogate.library_pipeline`) is
    already one chunk on one core and keys its results by canonical SMILES, which the parse gives for free.
    """
    X, D, valid, canonical = _featurize_chunk((list(smiles), settings, True))
    rows = np.flatnonzero(valid)
    with BlockLogs():
        invalid = [InvalidSmiles(int(i), str(smiles[i]), unreadable(smiles[i]) or InvalidSmiles.reason)
                   for i in np.flatnonzero(~valid)]
    return Features(X=X[rows], D=D[rows], rows=rows, invalid=invalid), canonical or []
