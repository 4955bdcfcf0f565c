"""Hückel descriptors against textbook results for small pi systems."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem

from labloop.surrogate.descriptors import NAMES, _huckel_many, _pi_bonds, _pi_bonds_per_bond, descriptor_matrix

HOMO, LUMO, GAP, HOMO_1, LUMO_1, PI_ENERGY, ELECTRONS, PER_CENTRE, CENTRES = range(9)


def huckel(mol: Chem.Mol) -> np.ndarray:
    """The 9 Hückel columns of one molecule, float64 (featurisation computes them a chunk at a time)."""
    return _huckel_many([mol])[0]


def descriptors(mol: Chem.Mol) -> np.ndarray:
    """Every descriptor column of :data:`NAMES` for one molecule, float32."""
    return descriptor_matrix([mol])[0]


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


# Hückel columns of bundled molecules as computed by the original per-bond implementation; saved models
# were trained on these values, so any faster implementation must reproduce them.
PINNED = {
    "C#Cc1c2cc3ccc(F)cc3cc2c(C#C)c2cc3ccc(F)cc3cc12":
        [0.1682118116, -0.1682118116, 0.3364236232, 0.6180339887, -0.6180339887, 1.3666853454, 26, 1.0, 26],
    "C#Cc1c2cc3ccccn3c2c(C#C)c2cc3ccccn3c12":
        [0.0671449664, -0.45091441, 0.5180593764, 0.4296550848, -0.8154408536, 1.5315507135, 26, 1.0833333333, 24],
    "Oc1cccc(NC(=S)Nc2cccc(I)c2)c1":
        [0.5922194806, -0.9446451544, 1.536864635, 0.6439059826, -1.0, 1.7980096237, 20, 1.1764705882, 17],
    "N#Cc1c(C(=O)O)c(C(=O)O)n2ccc(Nc3ccccc3)nc12":
        [0.519898169, -0.253531594, 0.773429763, 0.705588123, -0.6862860197, 1.9849429371, 29, 1.2083333333, 24],
    "C1=C(c2ccccc2)[SiH2]C(c2ccccc2)=C1":
        [0.3858882976, -0.3858882976, 0.7717765951, 1.0, -1.0, 1.3375652019, 16, 1.0, 16],
}


@pytest.mark.parametrize("smiles", PINNED)
def test_pinned_values_of_bundled_molecules(smiles):
    assert huckel(Chem.MolFromSmiles(smiles)) == pytest.approx(PINNED[smiles], abs=1e-9)


def test_batch_matches_one_at_a_time():
    smiles = [*PINNED, "c1ccccc1", "CCCC", "C=CC=C", "c1ccncc1", "CC=CC", "OB(O)c1ccccc1"]
    mols = [Chem.MolFromSmiles(s) for s in smiles]
    batch = descriptor_matrix(mols)
    assert batch.shape == (len(mols), len(NAMES)) and batch.dtype == np.float32
    assert np.array_equal(batch, np.array([descriptors(m) for m in mols]))
    assert descriptor_matrix([]).shape == (0, len(NAMES))


def test_bond_of_order_zero_falls_back_to_every_bond():
    # a zero-order bond is missing from the bond-order adjacency matrix the fast path reads
    mol = Chem.RWMol(Chem.MolFromSmiles("C=CC=C.[Fe]"))
    mol.AddBond(3, 4, Chem.BondType.ZERO)
    Chem.SanitizeMol(mol)
    assert huckel(mol) == pytest.approx(huckel(Chem.MolFromSmiles("C=CC=C")))


def test_fast_pi_bonds_equal_asking_every_bond(ocelot):
    # the adjacency-matrix path (all molecules at once) must find exactly the bonds RDKit flags, in any batch,
    # including a molecule whose zero-order bond sends it down the per-bond path
    odd = Chem.RWMol(Chem.MolFromSmiles("C=CC=C.[Fe]"))
    odd.AddBond(3, 4, Chem.BondType.ZERO)
    Chem.SanitizeMol(odd)
    # single bonds at a saturated atom next to a pi system (enamine, vinyl ether, amide, ester, nitro) are
    # conjugated; those between saturated atoms (and in a skipped diene) are not, and are never asked
    extra = ["CCCC", "CN(C)C=CC", "COC=C", "CC(=O)N(C)C", "CCOC(=O)C", "C=CCC=C", "CC#CC", "CC#N",
             "C[N+](=O)[O-]", "CS(=O)(=O)c1ccccc1", "CC(C)(C)c1ccc(N)cc1", "OC=O", "C1CC=CC1N"]
    mols = [Chem.MolFromSmiles(s) for s in ocelot.smiles.head(40)] + [odd.GetMol()] + [Chem.MolFromSmiles(s)
                                                                                        for s in extra]
    fast = _pi_bonds(mols)
    for m, mol in enumerate(mols):
        pairs, in_double = _pi_bonds_per_bond(mol)
        mine = fast.mol == m
        found = zip(fast.first[mine].tolist(), fast.second[mine].tolist(), strict=True)
        assert sorted((min(i, j), max(i, j)) for i, j in found) == sorted((min(i, j), max(i, j)) for i, j in pairs)
        assert {a for k, a in fast.in_double if k == m} == in_double
    assert np.array_equal(descriptor_matrix(mols), np.array([descriptors(mol) for mol in mols]))
