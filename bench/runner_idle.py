"""Do the instruments wait for the model? Idle time of the rig while a surrogate retrain runs; prints JSON.

Why: retraining runs in the background (orchestrator/background.py) precisely so that the instruments never
wait for the model. This runs the example campaign on zero-latency emulators with a retrain every 5
experiments and a budget large enough that retrains follow one another while experiments go on, then reads
the journal: for each retrain (its ``retrain`` event to its model version), how long it took, how many
experiments ran meanwhile, and the rig's idle time inside that window — the time no experiment was running
(proposals, journal commits and the loop itself count as idle), and, stricter, the time no instrument action
was running. A window is cut at the last experiment's end (afterwards the rig has nothing left to do, it does
not wait for the model). Times are reported, never asserted.

Usage: python bench/runner_idle.py [--budget N] [--retrain-every N] [--prior-rows N] [--epochs N]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

from labloop.orchestrator.cli import main as labloop
from labloop.orchestrator.journal import Journal, State

log = logging.getLogger(__name__)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "campaign.yaml"


def _t(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def _uncovered(start: float, end: float, intervals: list[tuple[float, float]]) -> float:
    """Seconds of [start, end] that no interval covers."""
    covered, cursor = 0.0, start
    for a, b in sorted((max(a, start), min(b, end)) for a, b in intervals if b > start and a < end):
        if b > cursor:
            covered += b - max(a, cursor)
            cursor = b
    return (end - start) - covered


def measure(store: Path) -> dict:
    with Journal.open(store, readonly=True) as journal:
        done = journal.experiments(states=(State.DONE, State.FAILED))
        experiments = [(_t(e.started_at), _t(e.finished_at)) for e in done if e.started_at and e.finished_at]
        actions = [(_t(a.started_at), _t(a.finished_at)) for e in done for a in journal.actions(e.id)
                   if a.finished_at and a.attempt == e.attempt]
        starts = {e.data["round"]: _t(e.time) for e in journal.events() if e.kind == "retrain"}
        ends = {m.metrics["round"]: _t(m.created_at) for m in journal.model_versions() if "round" in m.metrics}
    last = max(b for _, b in experiments)
    retrains = []
    for round_, start in sorted(starts.items()):
        if round_ not in ends:
            continue
        end = min(ends[round_], last)
        if end <= start:
            continue
        window = end - start
        idle = _uncovered(start, end, experiments)
        retrains.append({
            "round": round_, "retrain_s": round(ends[round_] - start, 2), "window_s": round(window, 2),
            "experiments_during": sum(start <= a < end for a, _ in experiments),
            "idle_no_experiment_s": round(idle, 3), "idle_fraction": round(idle / window, 4),
            "idle_no_action_fraction": round(_uncovered(start, end, actions) / window, 4),
        })
    fractions = [r["idle_fraction"] for r in retrains]
    return {"retrains": retrains, "max_idle_fraction": max(fractions, default=None),
            "mean_idle_fraction": round(sum(fractions) / len(fractions), 4) if fractions else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=120)
    parser.add_argument("--retrain-every", type=int, default=5)
    parser.add_argument("--prior-rows", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    campaign = yaml.safe_load(EXAMPLE.read_text())
    campaign["library"]["file"] = str(EXAMPLE.parent / campaign["library"]["file"])
    campaign["prior"].update(file=str(EXAMPLE.parent / campaign["prior"]["file"]), rows=args.prior_rows)
    campaign["protocol"] = str(EXAMPLE.parent / campaign["protocol"])
    campaign["surrogate"].update(retrain_every=args.retrain_every, epochs=args.epochs)
    campaign["budget"]["max_experiments"] = args.budget
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "campaign.yaml"
        campaign["store"] = str(Path(tmp) / "bench.db")
        path.write_text(yaml.safe_dump(campaign))
        began = time.perf_counter()
        code = labloop(["run", str(path), "--dry-run"])
        wall = time.perf_counter() - began
        result = measure(Path(campaign["store"]))
    print(json.dumps({"exit_code": code, "wall_s": round(wall, 1), "budget": args.budget,
                      "retrain_every": args.retrain_every, "prior_rows": args.prior_rows, "epochs": args.epochs,
                      **result}, indent=2))


if __name__ == "__main__":
    main()
