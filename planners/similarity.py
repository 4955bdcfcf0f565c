"""Tanimoto similarity between library molecules, for batch diversity and for learning from failures.

Why Morgan bit vectors of radius 2 (ECFP4, 2048 bits) and RDKit's ``BulkTanimotoSimilarity``: it is the
similarity chemists read ("these two share most of their substructures"), and the bulk call compares one
molecule with a whole library in C++ — a 100,000-molecule library in tens of milliseconds. Fingerprints
are computed once per molecule and kept, since a campaign asks about the same library at every proposal.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np
from rdkit import Chem, DataStructs, RDLogger
from rdkit.Chem import rdFingerprintGenerator

log = logging.getLogger(__name__)

RADIUS = 2
N_BITS = 2048


class SimilarityIndex:
    """Fingerprints of molecules by SMILES (None for SMILES RDKit cannot read), computed on first use."""

    def __init__(self) -> None:
        self._generator = rdFingerprintGenerator.GetMorganGenerator(radius=RADIUS, fpSize=N_BITS)
        self._fps: dict[str, DataStructs.ExplicitBitVect | None] = {}

    def fingerprint(self, smiles: str) -> DataStructs.ExplicitBitVect | None:
        fps = self._fps
        if smiles not in fps:
            RDLogger.DisableLog("rdApp.*")
            self.add(smiles, Chem.MolFromSmiles(smiles))
        return fps[smiles]

    def add(self, smiles: str, mol: Chem.Mol | None) -> None:
        """Keep the fingerprint of ``smiles`` from its molecule parsed elsewhere (None: unreadable), so a
        caller that needs other fingerprints of it too parses it once (parsing is most of the cost)."""
        if smiles not in self._fps:
            self._fps[smiles] = None if mol is None else self._generator.GetFingerprint(mol)

    def max_similarity(self, candidates: Sequence[str], references: Iterable[str]) -> np.ndarray:
        """For each candidate, its highest Tanimoto similarity to any reference (0 without references;
        unreadable molecules are similar to nothing)."""
        best = np.zeros(len(candidates))
        readable = [i for i, s in enumerate(candidates) if self.fingerprint(s) is not None]
        fps = [self.fingerprint(candidates[i]) for i in readable]
        for ref in references:
            ref_fp = self.fingerprint(ref)
            if ref_fp is None or not fps:
                continue
            sims = np.asarray(DataStructs.BulkTanimotoSimilarity(ref_fp, fps))
            best[readable] = np.maximum(best[readable], sims)
        return best
