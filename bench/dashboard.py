"""Does watching a campaign slow it down? A zero-latency campaign's wall time with and without a dashboard
polled by 20 readers; prints JSON.

Why: watching a campaign must not slow it down or show it half-written. The check: 20 concurrent readers
polling ``GET /api/campaign`` every 100 ms grow a zero-latency campaign's wall time by at most 10%, and no
reader ever sees a half-written experiment.

What is run: the example campaign (``examples/campaign.yaml``) on zero-latency emulators with the ``random``
planner and no surrogate (so the campaign's time is all the loop's own Python, CV simulation and journal
commits: the worst case for a reader competing for the journal and the cores), ``--budget`` experiments,
batch 4. Each trial creates a fresh journal, then runs ``labloop run --dry-run`` in its own process. In a
``dashboard`` trial, ``labloop dashboard`` (its own process) serves that journal and ``--readers`` threads of
this process each poll ``/api/campaign`` every ``--interval-ms`` over a keep-alive connection, from before
the run starts until it ends; one more client holds the server-sent-events stream open (what a browser tab
does) and timestamps each message. Trials alternate (baseline, dashboard, baseline, ...) ``--repeats`` times.

Measured:

- campaign wall time: from the journal's ``run`` event to its ``finished`` event (the process start-up, the
  same in both arms, is left out);
- what the readers saw: requests served, their latency, and every document checked for a half-written
  experiment (``done`` without a measured potential or finish time, state counts that do not add up, or a
  done count that went backwards);
- how fresh the live page is: for each experiment, the time from its ``finished_at`` (journal clock) to the
  first stream message that shows it done (this machine's clock; the same machine, so comparable);
- CPU time (user + system) of the runner process, of the dashboard process and of this process (the 20
  readers and the stream client). On a machine shared with other work the wall-time growth mostly measures
  how the kernel shares the cores among more busy processes; the runner's own CPU time, and the CPU the
  dashboard takes, do not depend on that.

Wrap runs in ``flock /tmp/labloop-cpu.lock`` on shared machines; the 1-minute load average before each trial
is printed.

Usage: python bench/dashboard.py [--budget 40] [--readers 20] [--interval-ms 100] [--repeats 3] [--seed 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from labloop.orchestrator.config.campaign import load_campaign
from labloop.orchestrator.journal.store import Journal

log = logging.getLogger(__name__)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "campaign.yaml"
CLI = [sys.executable, "-m", "labloop.orchestrator.cli.main"]


def _campaign_file(folder: Path, budget: int, seed: int) -> Path:
    campaign = yaml.safe_load(EXAMPLE.read_text())
    campaign["library"]["file"] = str(EXAMPLE.parent / campaign["library"]["file"])
    campaign["protocol"] = str(EXAMPLE.parent / campaign["protocol"])
    campaign.pop("prior", None)
    campaign.pop("surrogate", None)
    campaign["planner"] = {"kind": "random", "batch_size": 4}
    campaign["budget"]["max_experiments"] = budget
    campaign["seed"] = seed
    campaign["store"] = str(folder / "bench.db")
    path = folder / "campaign.yaml"
    path.write_text(yaml.safe_dump(campaign))
    return path


class Reader(threading.Thread):
    """Polls ``/api/campaign`` every ``interval`` seconds and checks every document it gets."""

    def __init__(self, port: int, interval: float, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.interval, self.stop = port, interval, stop
        self.latencies: list[float] = []
        self.problems: list[str] = []
        self.errors = 0
        self.span = (0.0, 0.0)

    def run(self) -> None:
        began_polling = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        seen_done = 0
        while not self.stop.is_set():
            began = time.perf_counter()
            try:
                conn.request("GET", "/api/campaign")
                response = conn.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException):
                self.errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                time.sleep(self.interval)
                continue
            self.latencies.append(time.perf_counter() - began)
            if response.status != 200:
                self.errors += 1
            else:
                seen_done = self._check(json.loads(body), seen_done)
            time.sleep(max(0.0, self.interval - (time.perf_counter() - began)))
        conn.close()
        self.span = (began_polling, time.perf_counter())

    def _check(self, doc: dict, seen_done: int) -> int:
        experiments = doc["experiments"]
        done = [e for e in experiments if e["status"] == "done"]
        for e in done:
            if e["potential_v"] is None or e["finished_at"] is None or e["attempt"] < 1:
                self.problems.append(f"experiment {e['id']} done without its measurement")
        if sum(doc["progress"]["counts"].values()) != len(experiments):
            self.problems.append("state counts do not add up to the experiments")
        if doc["progress"]["counts"]["done"] != len(done) or len(done) < seen_done:
            self.problems.append("done count inconsistent or went backwards")
        return len(done)


class StreamClient(threading.Thread):
    """Holds ``/api/stream`` open; records when each experiment was first shown done."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.first_done: dict[int, float] = {}

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        conn.request("GET", "/api/stream")
        response = conn.getresponse()
        data = b""
        try:
            for line in response:
                if line.startswith(b"data: "):
                    data = line[6:]
                elif line == b"\n" and data:
                    now = time.time()
                    for e in json.loads(data)["campaign"]["experiments"]:
                        if e["status"] == "done":
                            self.first_done.setdefault(e["id"], now)
                    data = b""
        except (OSError, http.client.HTTPException, ValueError):
            return  # the server stopped


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _campaign_wall(store: Path) -> tuple[float, int]:
    with Journal.open(store, readonly=True) as journal:
        events = journal.events()
        done = len(journal.experiments(states=("done",)))
    started = next(e.time for e in events if e.kind == "run")
    finished = next(e.time for e in reversed(events) if e.kind == "finished")
    return (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds(), done


def _serve(store: Path) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen([*CLI, "dashboard", str(store), "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    port = urlsplit(process.stdout.readline().split(" ", 1)[1].strip()).port
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/api/campaign")
            if conn.getresponse().status == 200:
                return process, port
        except OSError:
            time.sleep(0.05)


def trial(args: argparse.Namespace, with_dashboard: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        campaign_file = _campaign_file(Path(tmp), args.budget, args.seed)
        campaign = load_campaign(campaign_file)
        Journal.create(campaign.store, campaign, source_yaml=campaign_file.read_text()).close()
        readers: list[Reader] = []
        stream = None
        server = None
        stop = threading.Event()
        if with_dashboard:
            server, port = _serve(campaign.store)
            stream = StreamClient(port)
            stream.start()
            readers = [Reader(port, args.interval_ms / 1000, stop) for _ in range(args.readers)]
            for reader in readers:
                reader.start()
        load = os.getloadavg()[0]
        children, own = _children_cpu(), time.process_time()
        run = subprocess.run([*CLI, "run", str(campaign_file), "--dry-run"], capture_output=True, text=True,
                             check=False)
        runner_cpu = _children_cpu() - children  # the only child waited for meanwhile is the run
        stop.set()
        for reader in readers:
            reader.join()
        readers_cpu = time.process_time() - own
        if server is not None:
            time.sleep(1.0)  # let the stream show the last experiment
            children = _children_cpu()
            server.send_signal(signal.SIGINT)
            server.wait()
            dashboard_cpu = _children_cpu() - children
        wall, done = _campaign_wall(campaign.store)
        result = {"dashboard": with_dashboard, "exit_code": run.returncode, "done": done,
                  "campaign_wall_s": round(wall, 2), "runner_cpu_s": round(runner_cpu, 2),
                  "loadavg_1min_before": round(load, 2)}
        if with_dashboard:
            latencies = [t for r in readers for t in r.latencies]
            with Journal.open(campaign.store, readonly=True) as journal:
                finished = {e.id: datetime.fromisoformat(e.finished_at).timestamp()
                            for e in journal.experiments(states=("done",))}
            delays = [stream.first_done[i] - t for i, t in finished.items() if i in stream.first_done]
            result.update({
                "dashboard_cpu_s": round(dashboard_cpu, 2), "readers_cpu_s": round(readers_cpu, 2),
                "requests": len(latencies), "request_errors": sum(r.errors for r in readers),
                "requests_per_s": round(len(latencies) / (max(r.span[1] for r in readers)
                                                          - min(r.span[0] for r in readers)), 1),
                "request_latency_ms_median": round(1000 * statistics.median(latencies), 1),
                "request_latency_ms_p99": round(1000 * statistics.quantiles(latencies, n=100)[98], 1),
                "half_written_seen": sum(len(r.problems) for r in readers),
                "stream_shown_done": len(delays),
                "stream_delay_s_median": round(statistics.median(delays), 3),
                "stream_delay_s_max": round(max(delays), 3),
            })
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--readers", type=int, default=20)
    parser.add_argument("--interval-ms", type=float, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    trials = [trial(args, with_dashboard) for _ in range(args.repeats) for with_dashboard in (False, True)]
    walls = {arm: [t["campaign_wall_s"] for t in trials if t["dashboard"] == arm] for arm in (False, True)}
    cpus = {arm: [t["runner_cpu_s"] for t in trials if t["dashboard"] == arm] for arm in (False, True)}

    def stats(values: list[float]) -> dict:
        return {"mean": round(statistics.fmean(values), 2),
                "sd": round(statistics.stdev(values), 2) if len(values) > 1 else None}

    summary = {
        "settings": {**vars(args), "planner": "random", "batch_size": 4, "emulators": "zero latency",
                     "cpus": os.cpu_count()},
        "baseline_wall_s": stats(walls[False]),
        "with_dashboard_wall_s": stats(walls[True]),
        "wall_time_growth": round(statistics.fmean(walls[True]) / statistics.fmean(walls[False]) - 1, 3),
        "baseline_runner_cpu_s": stats(cpus[False]),
        "with_dashboard_runner_cpu_s": stats(cpus[True]),
        "runner_cpu_growth": round(statistics.fmean(cpus[True]) / statistics.fmean(cpus[False]) - 1, 3),
        "dashboard_cpu_s": stats([t["dashboard_cpu_s"] for t in trials if t["dashboard"]]),
        "half_written_seen": sum(t.get("half_written_seen", 0) for t in trials),
        "trials": trials,
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
