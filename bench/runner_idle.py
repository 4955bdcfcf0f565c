"""Do the instruments wait for the model? The rig's idle time while a surrogate retrain runs; prints JSON.

Why: retraining runs in the background (orchestrator/learning/retraining.py) precisely so that the instruments
never wait for the model. The check: in a zero-latency run retraining every 5 experiments, the rig's idle
time inside each retrain window stays below 10% of that retrain's duration.

What is run: the example campaign on zero-latency emulators (every instrument command takes ~0 s, so the
rig's time is all Python: CV simulation and analysis, journal commits, the loop) with the ``random``
planner by default (``--planner``): a ``bayes`` proposal (calibration, acquisition over the library and a
Gaussian-process fit for the conditions: 0.1-0.3 s per batch) is the planner's own time, as large with or
without retraining, and against 0.2-0.4 s zero-latency experiments it would swamp what retraining costs;
``--planner bayes`` measures it too. The campaign runs twice with the same seed
and therefore the same proposals — once retraining every ``--retrain-every`` experiments, once never
(``retrain_every`` above the budget: the baseline). Prior rows, folds and epochs are small so that a retrain
overlaps several experiments and at least five retrains happen within the budget. The bench sets
``surrogate.wait_for_retrain`` to false (the example campaign sets it true): retraining in the background, the
next proposal taking the newest model it has; ``--wait-for-retrain`` runs with it true instead, every proposal
made while a retrain runs waiting for it (the rig then waits for the model: compare ``waiting_for_model_s``).

What is measured, in-process (the bench wraps the runner's, the learning's and the retrainer's methods with
clocks; the code under test is unchanged) plus the journal's action rows:

- retrain window: from the runner starting a retrain (``Learning.after_done`` calls ``Retrainer.retrain``,
  which journals the ``retrain`` event) until the background thread has finished it, library predictions
  included (the model is ready to be taken). A window is cut at the last experiment's end: afterwards the
  rig has nothing left to do, so the runner's final ``Retrainer.wait`` is reported (``final_wait_s``) but is
  not idle time.
- idle (the acceptance number): wall time inside a window during which no experiment is running
  (``Runner._run_experiment``, from ``start_experiment`` to ``done``/``failed``). Conservative: proposing the
  next batch, starting the retrain (it reads the journal), the loop's own journal reads and the health check
  all count as idle. It is split into ``proposing_s`` (``Runner._propose`` less any wait inside it),
  ``starting_retrain_s`` (``Learning.after_done``), ``waiting_for_model_s`` (the runner thread blocked in
  ``Retrainer.wait``/``take_model`` — the only way the rig can *wait for the model*; it should be ~0 unless
  ``--wait-for-retrain``) and ``loop_other_s`` (the rest).
- no-action gaps (stricter): wall time inside a window with no instrument action open in the journal
  (``actions.started_at``..``finished_at``; millisecond stamps). With zero-latency instruments these gaps are
  the runner's own Python and journal work between commands, not instruments waiting for anything.
- baseline: the same two fractions over the whole run without retraining (first experiment start to last
  experiment end), and for the retraining run outside its windows. The difference in-window minus baseline
  is what retraining costs the rig (CPU and GIL contention with TensorFlow on the shared cores); the
  baseline itself is the loop's own overhead, which a retrain cannot remove.
- experiment duration inside windows vs the baseline: a retrain slows experiments down by sharing the cores;
  that is not idle time (the rig is working) but it is reported so it is not hidden.

The check holds when every retrain's ``idle_fraction`` is below 0.10 (``max_idle_fraction``; it is meant for
the default, background mode).
Times are reported, never asserted. Wrap runs in ``flock /tmp/labloop-cpu.lock`` on shared machines; the
1-minute load average before each run is printed, and so are ``TF_NUM_INTRAOP_THREADS`` /
``TF_NUM_INTEROP_THREADS`` when set (TensorFlow reads them at start-up; they cannot be changed per thread).

Usage: python bench/runner_idle.py [--budget N] [--retrain-every N] [--prior-rows N] [--folds N] [--epochs N]
                                   [--planner random|bayes|greedy] [--wait-for-retrain] [--no-baseline]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import yaml

from labloop.orchestrator.cli.main import main as labloop
from labloop.orchestrator.journal.store import Journal, State
from labloop.orchestrator.learning.learner import Learning
from labloop.orchestrator.learning.retraining import Retrainer
from labloop.orchestrator.loop.runner import Runner

log = logging.getLogger(__name__)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "campaign.yaml"

Interval = tuple[float, float]


class Probe:
    """Wall-clock intervals (``time.time``, the journal's clock) of what the runner and the retrainer do."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.intervals: dict[str, list[Interval]] = {}
        self.retrain_called: dict[int, float] = {}
        self.train_thread: dict[int, Interval] = {}

    def add(self, kind: str, start: float, end: float) -> None:
        with self.lock:
            self.intervals.setdefault(kind, []).append((start, end))

    def get(self, kind: str) -> list[Interval]:
        return self.intervals.get(kind, [])


@contextlib.contextmanager
def probed(probe: Probe) -> Iterator[None]:
    """Wrap the runner's, the learning's and the retrainer's methods with clocks for the duration of one run."""
    originals = []

    def timed(cls: type, name: str, kind: str) -> None:
        original = getattr(cls, name)
        originals.append((cls, name, original))

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            start = time.time()
            try:
                return original(*args, **kwargs)
            finally:
                probe.add(kind, start, time.time())
        setattr(cls, name, wrapper)

    timed(Runner, "_run_experiment", "experiment")
    timed(Runner, "_propose", "propose")
    timed(Learning, "after_done", "after_done")
    timed(Retrainer, "wait", "wait")
    timed(Retrainer, "take_model", "take_model")

    retrain, train = Retrainer.retrain, Retrainer._train
    originals += [(Retrainer, "retrain", retrain), (Retrainer, "_train", train)]

    def retrain_wrapper(self, measured, round_, on_done=None):
        probe.retrain_called[round_] = time.time()
        return retrain(self, measured, round_, on_done)

    def train_wrapper(self, measured, round_, on_done):
        start = time.time()
        try:
            return train(self, measured, round_, on_done)
        finally:
            probe.train_thread[round_] = (start, time.time())

    Retrainer.retrain, Retrainer._train = retrain_wrapper, train_wrapper
    try:
        yield
    finally:
        for cls, name, original in reversed(originals):
            setattr(cls, name, original)


def _t(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def _covered(start: float, end: float, intervals: list[Interval]) -> float:
    """Seconds of [start, end] that the union of ``intervals`` covers."""
    covered, cursor = 0.0, start
    for a, b in sorted((max(a, start), min(b, end)) for a, b in intervals if b > start and a < end):
        if b > cursor:
            covered += b - max(a, cursor)
            cursor = b
    return covered


def _covered_in(spans: list[Interval], intervals: list[Interval]) -> float:
    return sum(_covered(a, b, intervals) for a, b in spans)


def _breakdown(spans: list[Interval], probe: Probe, actions: list[Interval]) -> dict:
    """Where the time of ``spans`` (disjoint) went: experiments, proposing, ..., and the no-action gaps."""
    total = sum(b - a for a, b in spans)
    experiments = probe.get("experiment")
    busy = _covered_in(spans, experiments)
    idle = total - busy
    waits = probe.get("wait") + probe.get("take_model")
    waiting = _covered_in(spans, waits)
    # a proposal waits for the retrain inside Runner._propose (wait_for_retrain): that time is waiting's
    proposing = _covered_in(spans, probe.get("propose") + waits) - waiting
    starting = _covered_in(spans, probe.get("after_done"))
    no_action = total - _covered_in(spans, actions)
    durations = [b - a for a, b in experiments if any(s <= a < e for s, e in spans)]
    return {
        "span_s": round(total, 3),
        "experiments_started": len(durations),
        "mean_experiment_s": round(sum(durations) / len(durations), 4) if durations else None,
        "idle_no_experiment_s": round(idle, 3),
        "idle_fraction": round(idle / total, 4) if total else None,
        "proposing_s": round(proposing, 3),
        "starting_retrain_s": round(starting, 3),
        "waiting_for_model_s": round(waiting, 4),
        "loop_other_s": round(idle - proposing - starting - waiting, 3),
        "no_action_s": round(no_action, 3),
        "no_action_fraction": round(no_action / total, 4) if total else None,
    }


def _minus(span: Interval, holes: list[Interval]) -> list[Interval]:
    """``span`` without ``holes``, as disjoint intervals."""
    out, cursor = [], span[0]
    for a, b in sorted(holes):
        if b <= cursor or a >= span[1]:
            continue
        if a > cursor:
            out.append((cursor, a))
        cursor = max(cursor, b)
    if cursor < span[1]:
        out.append((cursor, span[1]))
    return out


def analyse(store: Path, probe: Probe) -> dict:
    with Journal.open(store, readonly=True) as journal:
        done = journal.experiments(states=(State.DONE, State.FAILED))
        actions = [(_t(a.started_at), _t(a.finished_at)) for e in done for a in journal.actions(e.id)
                   if a.finished_at and a.attempt == e.attempt]
    experiments = probe.get("experiment")
    first, last = min(a for a, _ in experiments), max(b for _, b in experiments)
    retrains, windows = [], []
    for round_, called in sorted(probe.retrain_called.items()):
        if round_ not in probe.train_thread:
            continue
        thread_start, thread_end = probe.train_thread[round_]
        end = min(thread_end, last)
        if end <= called:
            continue
        windows.append((called, end))
        retrains.append({
            "round": round_, "retrain_s": round(thread_end - called, 3), "window_s": round(end - called, 3),
            "thread_start_delay_s": round(thread_start - called, 4), "cut_at_last_experiment": thread_end > last,
            **_breakdown([(called, end)], probe, actions),
        })
    final_wait = _covered(last, float("inf"), probe.get("wait"))
    result = {
        "retrains": retrains,
        "n_retrains": len(retrains),
        "n_retrains_complete": sum(not r["cut_at_last_experiment"] for r in retrains),
        "in_windows": _breakdown(windows, probe, actions) if windows else None,
        "outside_windows": _breakdown(_minus((first, last), windows), probe, actions),
        "max_idle_fraction": max((r["idle_fraction"] for r in retrains), default=None),
        "max_no_action_fraction": max((r["no_action_fraction"] for r in retrains), default=None),
        "final_wait_s": round(final_wait, 3),
    }
    if not windows:  # the baseline: one span, the whole run
        result = {"whole_run": _breakdown([(first, last)], probe, actions), "final_wait_s": result["final_wait_s"]}
    return result


def run(args: argparse.Namespace, retrain_every: int) -> dict:
    campaign = yaml.safe_load(EXAMPLE.read_text())
    campaign["library"]["file"] = str(EXAMPLE.parent / campaign["library"]["file"])
    campaign["prior"].update(file=str(EXAMPLE.parent / campaign["prior"]["file"]), rows=args.prior_rows)
    campaign["protocol"] = str(EXAMPLE.parent / campaign["protocol"])
    campaign["surrogate"].update(retrain_every=retrain_every, epochs=args.epochs, folds=args.folds,
                                 wait_for_retrain=args.wait_for_retrain)
    campaign["budget"]["max_experiments"] = args.budget
    campaign["planner"] = {"kind": args.planner, "batch_size": campaign["planner"]["batch_size"]}
    probe = Probe()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "campaign.yaml"
        campaign["store"] = str(Path(tmp) / "bench.db")
        path.write_text(yaml.safe_dump(campaign))
        load = os.getloadavg()[0]
        began = time.perf_counter()
        with probed(probe):
            code = labloop(["run", str(path), "--dry-run"])
        wall = time.perf_counter() - began
        return {"retrain_every": retrain_every, "exit_code": code, "wall_s": round(wall, 1),
                "loadavg_1min_before": round(load, 2), **analyse(Path(campaign["store"]), probe)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=120)
    parser.add_argument("--retrain-every", type=int, default=5)
    parser.add_argument("--prior-rows", type=int, default=200)
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--planner", default="random", choices=["random", "bayes", "greedy"],
                        help="random (default) keeps the planner's own proposal time out of the measurement")
    parser.add_argument("--wait-for-retrain", action="store_true",
                        help="surrogate.wait_for_retrain: a proposal made while a retrain runs waits for it")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run without retraining")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out: dict = {"date": datetime.now().astimezone().isoformat(timespec="minutes"), "planner": args.planner,
                 "budget": args.budget, "wait_for_retrain": args.wait_for_retrain,
                 "prior_rows": args.prior_rows, "folds": args.folds, "epochs": args.epochs,
                 "cpus": len(os.sched_getaffinity(0)),
                 **{name: os.environ[name] for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
                    if name in os.environ}}
    out["with_retraining"] = with_ = run(args, args.retrain_every)
    if not args.no_baseline:
        out["without_retraining"] = base = run(args, args.budget + 1)
        if with_.get("in_windows"):
            inside, whole = with_["in_windows"], base["whole_run"]
            out["retrain_induced"] = {  # in-window minus baseline: what a running retrain costs the rig
                "idle_fraction": round(inside["idle_fraction"] - whole["idle_fraction"], 4),
                "no_action_fraction": round(inside["no_action_fraction"] - whole["no_action_fraction"], 4),
                "experiment_slowdown": round(inside["mean_experiment_s"] / whole["mean_experiment_s"], 3),
            }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
