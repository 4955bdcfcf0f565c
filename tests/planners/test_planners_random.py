"""The planner contract and the random planner: pure, seeded per step, JSON state, no repeats."""

from __future__ import annotations

import json
import random

from labloop.planners import Observation, PlannerState, RandomPlanner

LIBRARY = [f"C{'C' * k}O" for k in range(20)]


def test_same_state_same_proposals_and_state_round_trips_through_json():
    planner = RandomPlanner(LIBRARY, {"scan_rate_v_s": (0.02, 0.5)})
    state = PlannerState("random", seed=3, step=2, observations=(Observation(LIBRARY[0], {}, 4.1),),
                         pending=(LIBRARY[1],))
    again = PlannerState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert again == state
    first, second = planner.propose(state, 4), planner.propose(again, 4)
    assert first == second
    assert len({p.smiles for p in first}) == 4
    assert not {p.smiles for p in first} & {LIBRARY[0], LIBRARY[1]}
    assert all(0.02 <= p.conditions["scan_rate_v_s"] <= 0.5 for p in first)
    assert planner.propose(PlannerState("random", seed=3, step=3), 4) != first


def test_stops_when_the_library_is_used_up():
    planner = RandomPlanner(LIBRARY[:3], {"scan_rate_v_s": (0.1, 0.1)})
    state = PlannerState("random", seed=0, step=0, pending=tuple(LIBRARY[:2]))
    proposals = planner.propose(state, 5)
    assert [p.smiles for p in proposals] == [LIBRARY[2]]
    assert proposals[0].conditions == {"scan_rate_v_s": 0.1}
    assert proposals[0].mu is None and proposals[0].model_version is None


def test_rows_the_surrogate_cannot_read_are_never_drawn():
    """An invalid SMILES, a molecule without a heavy atom and a fragment with a dummy atom used to be proposed,
    and the dry run's world then crashed its emulator (``[H][H]``: a division by zero in the Born term)."""
    library = ["C1CC", "[H][H]", "*C", *LIBRARY[:3], "[He]"]
    planner = RandomPlanner(library, {"scan_rate_v_s": (0.1, 0.1)})
    drawn = set()
    for step in range(30):
        drawn |= {p.smiles for p in planner.propose(PlannerState("random", seed=1, step=step), 3)}
    assert drawn == {*LIBRARY[:3], "[He]"}
    left = PlannerState("random", seed=0, step=0, pending=(*LIBRARY[:3], "[He]"))
    assert planner.propose(left, 3) == []  # only unreadable rows left: the library is used up


def test_a_library_of_readable_molecules_is_drawn_as_before():
    """The redraw changes nothing while every drawn molecule is readable: the same seed proposes the same."""
    planner = RandomPlanner(LIBRARY, {"scan_rate_v_s": (0.1, 0.1)})
    expected = random.Random("3:4").sample(LIBRARY, 4)
    assert [p.smiles for p in planner.propose(PlannerState("random", seed=3, step=4), 4)] == expected


def test_a_molecule_the_rig_failed_is_proposed_again_until_it_failed_twice():
    """A pump's disconnect or an overload failed four molecules of an operator's campaign once each, and no planner
    proposed them again: a hit among them was lost to a flaky cable. A rig failure leaves the molecule to propose
    (planners/base.py INSTRUMENT_TRIES), a second one leaves it out; a failure of the molecule's own (an unusable
    voltammogram, a veto) or a refusal by the limits leaves it out at once, as a measurement does."""
    from labloop.planners.base import INSTRUMENT_TRIES

    planner = RandomPlanner(LIBRARY[:3], {"scan_rate_v_s": (0.1, 0.1)})
    rig = Observation(LIBRARY[0], {}, None, failure="instrument")
    others = (Observation(LIBRARY[1], {}, None, failure="analysis"),
              Observation(LIBRARY[2], {}, None, failure="configuration"))
    once = PlannerState("random", seed=0, step=1, observations=(rig, *others))
    assert once.tried == {LIBRARY[1], LIBRARY[2]}
    assert [p.smiles for p in planner.propose(once, 3)] == [LIBRARY[0]]
    assert INSTRUMENT_TRIES == 2
    twice = PlannerState("random", seed=0, step=2, observations=(rig, *others, rig))
    assert twice.tried == set(LIBRARY[:3]) and planner.propose(twice, 3) == []
    pending = PlannerState("random", seed=0, step=1, observations=(rig,), pending=(LIBRARY[0],))
    assert LIBRARY[0] in pending.tried  # proposed again and waiting: not twice at once


def test_a_molecule_a_software_bug_failed_is_proposed_again_however_often():
    """A plug-in's dispense raising AttributeError failed every experiment, and each molecule was left after its
    second such failure, a hit of the clean run among them (a plug-in engineer's trial): a software bug says nothing of
    the molecule (the run stops after such failures in a row until the code is fixed)."""
    planner = RandomPlanner(LIBRARY[:2], {"scan_rate_v_s": (0.1, 0.1)})
    bug = Observation(LIBRARY[0], {}, None, failure="software")
    state = PlannerState("random", seed=0, step=3, observations=(bug, bug, bug, Observation(LIBRARY[1], {}, 4.4)))
    assert state.tried == {LIBRARY[1]}
    assert [p.smiles for p in planner.propose(state, 2)] == [LIBRARY[0]]
    assert PlannerState.from_dict(state.to_dict()).tried == state.tried  # as the journal keeps it


def test_a_molecule_on_several_rows_is_drawn_once_as_its_first_row_writes_it():
    """Drawn from every row, phenol given twice was twice as likely and proposed as whichever row was drawn, so a
    chemist's campaign loaded the second row's vial and name (docs: a molecule takes its first row's)."""
    library = ["c1ccccc1O", "CCO", "Oc1ccccc1", "OCC", "CCCO"]
    planner = RandomPlanner(library, {})
    drawn = [p.smiles for step in range(40) for p in planner.propose(PlannerState("random", seed=2, step=step), 2)]
    assert set(drawn) == {"c1ccccc1O", "CCO", "CCCO"}
    assert [p.smiles for p in planner.propose(PlannerState("random", seed=0, step=0,
                                                           pending=("Oc1ccccc1", "OCC")), 3)] == ["CCCO"]
