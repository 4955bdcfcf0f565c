"""Hückel descriptors against textbook results for small pi systems."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem

from labloop.surrogate.descriptors import NAMES, descriptors, huckel

HOMO, LUMO, GAP, HOMO_1, LUMO_1, PI_ENERGY, ELECTRONS, PER_CENTRE, CENTRES = range(9)


def test_benzene():
    # eigenvalues of the 6-ring: 2, 1, 1, -1, -1, -2; 6 electrons fill the three bonding orbitals
    h = huckel(Chem.MolFromSmiles("c1ccccc1"))
    assert h[[HOMO, LUMO, GAP, HOMO_1, LUMO_1]] == pytest.approx([1, -1, 2, 1, -1])
    assert h[PI_ENERGY] == pytest.approx(2 * (2 + 1 + 1) / 6)
    assert h[[ELECTRONS, PER_CENTRE, CENTRES]] == pytest.approx([6, 1, 6])


def test_butadiene():
    golden = (1 + 5**0.5) / 2
    h = huckel(Chem.MolFromSmiles("C=CC=C"))
    assert h[[HOMO, LUMO, HOMO_1, LUMO_1]] == pytest.approx([golden - 1, 1 - golden, golden, -golden])
    assert h[[ELECTRONS, CENTRES]] == pytest.approx([4, 4])


def test_larger_conjugation_narrows_the_gap():
    gaps = [huckel(Chem.MolFromSmiles(s))[GAP] for s in ("c1ccccc1", "c1ccc2ccccc2c1", "c1ccc2cc3ccccc3cc2c1")]
    assert gaps[0] > gaps[1] > gaps[2]  # benzene > naphthalene > anthracene


def test_pyridine_nitrogen_stabilises_the_lumo():
    # h_N = 0.5 lowers the Coulomb integral: the LUMO (x) rises above benzene's -1, i.e. more stable
    assert huckel(Chem.MolFromSmiles("c1ccncc1"))[LUMO] > -1.0
    assert huckel(Chem.MolFromSmiles("c1ccncc1"))[ELECTRONS] == 6
    assert huckel(Chem.MolFromSmiles("c1cc[nH]c1"))[ELECTRONS] == 6  # pyrrole N gives two


def test_saturated_molecule_and_isolated_double_bond_have_no_pi_system():
    assert not huckel(Chem.MolFromSmiles("CCCC")).any()
    assert not huckel(Chem.MolFromSmiles("CC=CC")).any()  # RDKit: an isolated double bond is not conjugated
    d = descriptors(Chem.MolFromSmiles("CCCC"))
    assert d.dtype == np.float32 and len(d) == len(NAMES)
    assert d[NAMES.index("heavy_atoms")] == 4 and d[NAMES.index("fraction_csp3")] == 1.0
