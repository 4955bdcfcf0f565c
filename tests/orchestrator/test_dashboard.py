"""`labloop dashboard`, driven in a real headless Chromium (Selenium with Debian's chromium-driver): the page
shows what the journal of a dry run holds, updates live (no reload) when an experiment is recorded, escapes a
molecule named like a script, and its approve/veto buttons move a real waiting runner only with the token.
Over plain HTTP: path traversal, bad tokens, foreign Host headers and stores that are not journals are refused.

Set LABLOOP_DOCS_SCREENSHOT=docs/dashboard.png to also write the README's screenshot.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from labloop.orchestrator.dashboard.app import without_paths
from labloop.orchestrator.journal.lock import sole_runner
from labloop.orchestrator.journal.store import WARNING, Journal, State
from labloop.orchestrator.journal.view import snapshot

CLI = [sys.executable, "-m", "labloop.orchestrator.cli.main"]
TOKEN = "test-token-0123456789"
#: a molecule named like markup; its "/" (double-bond geometry in SMILES) must survive the path scrubbing
XSS = 'C(/C=C/Cl)<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'

pytestmark = pytest.mark.skipif(shutil.which("chromedriver") is None or shutil.which("chromium") is None,
                                reason="needs Debian's chromium and chromium-driver (.ci/run installs them)")


class Dashboard:
    """``labloop dashboard STORE --port 0`` in a subprocess; ``url`` is read from its first line."""

    def __init__(self, store: Path, token: str = TOKEN, *, token_from_env: bool = False) -> None:
        given = {"env": {**os.environ, "LABLOOP_DASHBOARD_TOKEN": token}} if token_from_env else {}
        self.process = subprocess.Popen([*CLI, "dashboard", str(store), "--port", "0",
                                         *(() if token_from_env else ("--token", token))],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **given)
        first = self.process.stdout.readline()
        assert first.startswith("dashboard: http://127.0.0.1:"), first + self.process.stderr.read()
        self.url_with_token = first.split(" ", 1)[1].strip()
        self.url = self.url_with_token.split("#", 1)[0]
        self.port = urlsplit(self.url).port
        deadline = time.monotonic() + 60
        while self.get("/api/campaign")[0] != 200:  # serving starts just after the line is printed
            assert time.monotonic() < deadline and self.process.poll() is None, self.process.stderr.read()
            time.sleep(0.05)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """A raw request: ``path`` goes on the wire exactly as given (no ``..`` folding by a client)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        except ConnectionRefusedError:
            return 0, b""
        finally:
            conn.close()

    def get(self, path: str, **headers: str) -> tuple[int, bytes]:
        return self.request("GET", path, headers=headers)

    def close(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        self.process.stderr.close()


@pytest.fixture(scope="module")
def finished_store(tmp_path_factory, write_campaign) -> Path:
    """The journal of a finished 6-experiment dry run with a (tiny) surrogate and a retrain."""
    from labloop.orchestrator.cli.main import main

    folder = tmp_path_factory.mktemp("finished")
    assert main(["run", str(write_campaign(folder, prior=True, shared_prior=True)), "--dry-run"]) == 0
    return folder / "tiny.db"


@pytest.fixture(scope="module")
def served(finished_store):
    dashboard = Dashboard(finished_store)
    yield dashboard
    dashboard.close()


#: the size of every test's window (a test that resizes it has it back for the next)
WINDOW = (1400, 2200)


def _chromium(folder: Path):
    """A headless Chromium driven by Debian's chromedriver, its profile and home in ``folder``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--user-data-dir={folder / 'chromium-profile'}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, read by a test
    service = Service(executable_path=shutil.which("chromedriver"),
                      env={**os.environ, "HOME": str(folder)})  # nothing is written to the real home
    return webdriver.Chrome(options=options, service=service)


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    """One Chromium for the module's tests, in a list so that :func:`browser` can replace one it cannot reset. Why
    not one per test: starting one takes about 2 s of the suite's two shared cores, a test's whole page check less."""
    driver = [_chromium(tmp_path_factory.mktemp("chromium"))]
    yield driver
    driver[0].quit()


@pytest.fixture
def browser(chromium, tmp_path):
    """The module's Chromium as a fresh one is: one new tab (its own sessionStorage, where the page keeps the token;
    no timezone override, which is the tab's), the tabs before it closed (a page left polling a stopped dashboard
    stops), the window at :data:`WINDOW`, the console's log read empty. A browser that will not be reset so (an alert
    a failed test left open) is replaced by a new one."""
    from selenium.common.exceptions import WebDriverException

    driver = chromium[0]
    try:
        if driver.window_handles:
            driver.switch_to.window(driver.window_handles[0])
        left = driver.window_handles
        driver.switch_to.new_window("tab")
        fresh = driver.current_window_handle
        for handle in left:
            driver.switch_to.window(handle)
            driver.close()
        driver.switch_to.window(fresh)
        driver.set_window_size(*WINDOW)
        driver.get_log("browser")
    except WebDriverException:
        driver.quit()
        driver = chromium[0] = _chromium(tmp_path)
    return driver


def _wait(driver, condition, what: str, timeout: float = 120):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # a live page replaces its rows when the journal changes: an element read mid-update is simply read again
    return WebDriverWait(driver, timeout, poll_frequency=0.05,
                         ignored_exceptions=(StaleElementReferenceException,)).until(condition, message=what)


def _text(driver, css: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css).text


def _screenshot(driver, tmp_path: Path, name: str, *, for_docs: bool = False) -> Path:
    """A test artifact in ``tmp_path``; the README's picture too when asked (LABLOOP_DOCS_SCREENSHOT)."""
    path = tmp_path / name
    assert driver.save_screenshot(str(path))
    docs = os.environ.get("LABLOOP_DOCS_SCREENSHOT")
    if docs and for_docs:
        shutil.copyfile(path, docs)
    return path


def test_page_shows_the_journal_and_updates_live_with_text_escaped(served, finished_store, browser, tmp_path):
    from selenium.webdriver.common.by import By

    with Journal.open(finished_store, readonly=True) as journal:
        snap = snapshot(journal)
    browser.get(served.url_with_token)
    done, total = snap["progress"]["counts"]["done"], snap["progress"]["max_experiments"]
    _wait(browser, lambda d: _text(d, "#done-count") == f"{done}/{total}", "the progress")
    assert browser.current_url == served.url  # the token left the address bar (kept in this tab only)
    assert _text(browser, "#campaign-name") == snap["campaign"]["name"]
    assert _text(browser, "#hits") == str(snap["progress"]["hits"])
    assert _text(browser, "#model-version") == f"v{snap['models'][-1]['version']}"
    rows = browser.find_elements(By.CSS_SELECTOR, "#experiments-table tbody tr")
    assert [int(r.get_attribute("data-id")) for r in rows] == [e["id"] for e in reversed(snap["experiments"])]
    hits = browser.find_elements(By.CSS_SELECTOR, "#experiments-table tbody td.hit")  # the server's hit flags
    assert len(hits) == sum(e["hit"] for e in snap["experiments"] if e["id"] in {int(r.get_attribute("data-id"))
                                                                                  for r in rows})
    assert snap["campaign"]["objective_text"] in _text(browser, "#campaign-summary")
    best = browser.find_elements(By.CSS_SELECTOR, "#best-table tbody tr td.smiles")
    assert [b.text for b in best] == [e["smiles"] for e in snap["best"]]
    measured = [e for e in snap["experiments"] if e["status"] == "done"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#plot-best circle")) == len(measured)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#plot-parity circle")) == len(measured)
    # the first batch, predicted before any measurement calibrated the model, drawn apart (a newcomer's trial)
    uncalibrated = sum(bool(e["uncalibrated"]) for e in measured)
    assert uncalibrated and len(browser.find_elements(By.CSS_SELECTOR, "#plot-parity circle.parity-uncalibrated")) \
        == uncalibrated
    assert "bars ±1 sd" in _text(browser, "#plot-parity")  # what the error bars are
    assert len(browser.find_elements(By.CSS_SELECTOR, "#plot-error circle")) == len(measured)
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#plot-cv polyline"), "the latest voltammogram")
    assert f"#{measured[-1]['id']} " in _text(browser, "#cv-caption")
    assert "/" not in _text(browser, "#campaign-summary").split("store ", 1)[1]  # no folders shown
    _screenshot(browser, tmp_path, "dashboard-finished.png", for_docs=True)

    shown = browser.find_element(By.ID, "warnings-panel").is_displayed()
    assert shown == any(e["kind"] == WARNING for e in snap["events"])  # a journal without warnings has no panel
    browser.execute_script("window.__loaded = 'once'")
    with Journal.open(finished_store) as writer:  # the runner's part: record a new proposal
        writer.record_proposals([_Proposal(XSS)], step=99, planner="random")
        writer.add_event(WARNING, f"sample {XSS}: quasi-reversible", experiment_id=measured[-1]["id"],  # the runner's
                         data={"warning": "quasi_reversible_d", "for_later_experiments": False})
        committed = time.monotonic()
    # every element is read inside a wait: the page redraws a table at each push, and an element found before a push
    # is stale after it (a CI run's warning row, read a moment after it was found)
    cell = _wait(browser, lambda d: next((c.get_attribute("textContent") for c in
                                          d.find_elements(By.CSS_SELECTOR, "#experiments-table td.smiles")
                                          if c.text == XSS), None), "the new experiment on the page")
    latency = time.monotonic() - committed
    print(f"page updated {latency:.2f} s after the commit")
    assert browser.execute_script("return window.__loaded") == "once"  # no reload: the stream pushed it
    assert browser.execute_script("return window.__xss") is None  # the molecule is text, never markup
    assert not browser.find_elements(By.CSS_SELECTOR, "#experiments-table img, #experiments-table script")
    assert cell == XSS
    # a warning about a measurement stands out among the events, its message as text too
    warned = _wait(browser, lambda d: [(w.text, w.find_element(By.XPATH, "following-sibling::td").get_attribute(
        "textContent")) for w in d.find_elements(By.CSS_SELECTOR, "#events-table td.kind-warning")], "the warning")
    assert warned == [(WARNING, f"sample {XSS}: quasi-reversible")]
    assert not browser.find_elements(By.CSS_SELECTOR, "#events-table img, #events-table script")
    # and in the warnings' own panel, newest first, by its experiment
    first_row = "#warnings-panel tbody tr:first-child td"
    row = _wait(browser, lambda d: d.find_element(By.ID, "warnings-panel").is_displayed() and [
        td.get_attribute("textContent") for td in d.find_elements(By.CSS_SELECTOR, first_row)], "the warnings panel")
    assert row[0] == str(measured[-1]["id"]) and row[2] == f"sample {XSS}: quasi-reversible", row
    _screenshot(browser, tmp_path, "dashboard-live.png")


def test_the_page_says_how_the_last_run_ended_as_labloop_log_does(served, tmp_path, write_campaign, browser, labloop,
                                                                  monkeypatch):
    """A run that reached its budget, and one stopped by faults, were both 'no run is writing this journal: finished
    or stopped' on the page, though the journal says which (its finished and stopped events); the page now says it
    in the words of `labloop log`'s header, the stop's advice with the store's folders cut."""
    from labloop.orchestrator import console
    from labloop.orchestrator.config.campaign import load_campaign

    monkeypatch.setattr(console.out, "width", 400)  # `labloop log`'s header unfolded
    browser.get(served.url)
    _wait(browser, lambda d: _text(d, "#run-state").startswith("finished: budget reached (6/6) (no run is writing "
                                                               "this journal; nothing written for "), "the end")
    campaign = load_campaign(write_campaign(tmp_path, name="halted"))
    stopped = ("3 failed experiments in a row; campaign stopped (budget.max_consecutive_faults)", "see the rig")
    with Journal.create(campaign.store, campaign) as journal:
        journal.add_event("run", "run started (dry run on emulators)", data={"dry_run": True})
        journal.add_event("stopped", stopped[0], data={"advice": f"{stopped[1]}, then `labloop resume "
                                                                 f"{campaign.store} --cell-emptied`"})
    said = f"stopped: {stopped[0]}; {stopped[1]}, then `labloop resume {campaign.store} --cell-emptied`"
    assert said in labloop("log", campaign.store).stdout.splitlines()
    halted = Dashboard(campaign.store, token="another-token-456")
    try:
        browser.get(halted.url)
        _wait(browser, lambda d: _text(d, "#campaign-name") == "halted", "the stopped campaign")
        assert _text(browser, "#run-state").startswith(said.replace(str(tmp_path) + "/", "") + " (no run is writing")
    finally:
        halted.close()


def test_a_token_with_url_characters_reaches_the_page_whole(finished_store, browser):
    """The printed link carried the token as typed: ``+`` arrived as a space, ``&`` ended it, ``%`` and ``#`` broke
    it, so the page's token field held something else and every approve was refused. The link percent-encodes it."""
    from urllib.parse import unquote

    token = "a+b&c%41d#e=f?g/h"
    dashboard = Dashboard(finished_store, token=token)
    try:
        browser.get(dashboard.url_with_token)
        _wait(browser, lambda d: _text(d, "#campaign-name") == "tiny", "the page")
        assert browser.execute_script("return document.getElementById('token').value") == token
        assert browser.execute_script("return sessionStorage.getItem('labloop-token')") == token
        assert unquote(dashboard.url_with_token.split("#token=", 1)[1]) == token
    finally:
        dashboard.close()


def test_approve_and_veto_buttons_need_the_token_and_move_the_runner(tmp_path, write_campaign, browser):
    from selenium.webdriver.common.by import By

    campaign_file = write_campaign(tmp_path, planner={"kind": "random", "batch_size": 2, "approve": True},
                                   budget={"max_experiments": 2})
    store = tmp_path / "tiny.db"
    run = subprocess.Popen([*CLI, "run", str(campaign_file), "--dry-run"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not store.exists():
        assert run.poll() is None and time.monotonic() < deadline, run.stderr.read()
        time.sleep(0.05)
    dashboard = Dashboard(store)
    try:
        browser.get(dashboard.url)  # no token in the URL: the person has not typed it yet
        _wait(browser, lambda d: d.find_element(By.ID, "approval-panel").is_displayed(), "the approval panel")
        boxes = browser.find_elements(By.CSS_SELECTOR, "#approval-table input[type=checkbox]")
        waiting = [int(b.get_attribute("value")) for b in boxes]
        assert len(waiting) == 2

        for token in ("", "wrong-token-123"):
            field = browser.find_element(By.ID, "token")
            field.clear()
            field.send_keys(token)
            browser.find_element(By.ID, "approve-button").click()
            _wait(browser, lambda d: "refused (403)" in _text(d, "#approval-message"), "the refusal")
            browser.execute_script("document.getElementById('approval-message').textContent = ''")
        with Journal.open(store, readonly=True) as journal:
            assert [e.id for e in journal.experiments(states=(State.AWAITING_APPROVAL,))] == waiting

        field = browser.find_element(By.ID, "token")
        field.clear()
        field.send_keys(TOKEN)
        # who decides and why, journalled (every token holder was "the dashboard": a security trial)
        browser.find_element(By.ID, "decider").send_keys("alice")
        browser.find_element(By.ID, "reason").send_keys("too like experiment 1")
        boxes[0].click()  # veto the first
        browser.find_element(By.ID, "approve-button").click()
        _wait(browser, lambda d: _text(d, "#approval-message") == f"batch {waiting[0]}, {waiting[1]}: approved 1, "
                                                                   "vetoed 1", "the decision")
        # the runner measures the approved one, proposes one more (the budget is 2) and waits again
        _wait(browser, lambda d: _text(d, "#done-count") == "1/2", "the approved experiment done")
        _wait(browser, lambda d: d.find_element(By.ID, "approval-panel").is_displayed()
              and len(d.find_elements(By.CSS_SELECTOR, "#approval-table input")) == 1, "the second batch")
        _screenshot(browser, tmp_path, "dashboard-approval.png")
        browser.find_element(By.ID, "approve-button").click()  # the token stays in this tab
        _wait(browser, lambda d: _text(d, "#done-count") == "2/2", "the campaign done")
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err.decode()
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        dashboard.close()
    with Journal.open(store, readonly=True) as journal:
        experiments = {e.id: e for e in journal.experiments()}
    assert experiments[waiting[0]].status == "failed" and experiments[waiting[0]].cause.startswith("vetoed")
    assert experiments[waiting[0]].cause.endswith("by a person (alice with the dashboard): too like experiment 1")
    assert experiments[waiting[1]].status == "done"
    with Journal.open(store, readonly=True) as journal:
        decided = [(e.data["by"], e.data["reason"]) for e in journal.events() if e.kind == "approved"]
    # the name stays for the next decision, the reason was this one's
    assert decided == [("alice with the dashboard", "too like experiment 1"), ("alice with the dashboard", None)]


def test_refusals_over_http(served, finished_store):
    for path in ("/api/experiments/../../etc/passwd", "/api/experiments/%2e%2e/%2e%2e/etc/passwd",
                 "/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
                 "/api/experiments/abc", "/api/experiments/99999"):
        status, body = served.get(path)
        assert status in (400, 404), path
        assert b"root:" not in body
    # ids no journal holds, some beyond what int() converts (5,000 digits were a 500 with a traceback on the
    # server's console, for anyone who could reach the page), all 404 with nothing printed
    own = Dashboard(finished_store)
    try:
        for path in (f"/api/experiments/{'9' * 5000}", f"/api/experiments/{'9' * 19}", "/api/experiments/-1",
                     "/api/experiments/%D9%A1", "/api/experiments/1e3", "/api/experiments/0x1"):
            status, body = own.get(path)
            assert status == 404 and json.loads(body) == {"error": "no such experiment"}, path[:40]
        for _ in range(3):  # a guesser's writes are said in the log, not once per guess (a security trial)
            assert own.request("POST", "/api/approve", b"{}", {"X-Labloop-Token": "guess-1234"})[0] == 403
    finally:
        own.process.send_signal(signal.SIGINT)
        console = own.process.communicate(timeout=30)[1]
    assert "Traceback" not in console and "Error" not in console, console
    assert console.count("a write with a wrong token from 127.0.0.1 refused (1 so far)") == 1, console
    assert "so far" not in console.replace("(1 so far)", ""), console
    status, body = served.get("/api/experiments/1")
    detail = json.loads(body)
    assert status == 200 and detail["experiment"]["id"] == 1
    assert len(detail["voltammograms"][0]["potential_v"]) == len(detail["voltammograms"][0]["current_a"]) > 10

    status, body = served.get("/api/campaign")
    with Journal.open(finished_store, readonly=True) as journal:
        expected = snapshot(journal)
    document = json.loads(body)
    assert document.keys() == expected.keys() and document["experiments"] == json.loads(json.dumps(
        expected["experiments"]))
    assert str(finished_store.parent) not in body.decode()  # no folders of the lab computer

    decision = json.dumps({"veto": []}).encode()
    for headers in ({}, {"X-Labloop-Token": "nope"}, {"X-Labloop-Token": TOKEN[:-1]}):
        status, body = served.request("POST", "/api/approve", decision, headers)
        assert status == 403 and b"token" in body
    decision = json.dumps({"veto": [], "batch": [1, 2]}).encode()
    status, body = served.request("POST", "/api/approve", decision, {"X-Labloop-Token": TOKEN})
    assert status == 409 and b"no experiment is awaiting approval" in body
    status, _ = served.request("POST", "/api/approve", b"{not json", {"X-Labloop-Token": TOKEN})
    assert status == 400
    deep = b'{"veto": ' + b"[" * 30000 + b"]" * 30000 + b"}"  # 60 kB, under the size cap: was a 500
    status, _ = served.request("POST", "/api/approve", deep, {"X-Labloop-Token": TOKEN})
    assert status == 400
    assert served.get("/api/campaign", Host="evil.example:80")[0] == 400  # DNS rebinding
    status, _ = served.request("GET", "/api/approve")
    assert status == 405


def test_every_answer_forbids_framing_and_sniffing(served):
    """The page, its static files (``/static/index.html`` is the page too: framed by another local server's page,
    its approve button took a click, a security review), the API and refusals all carry the page's headers."""
    for path in ("/", "/static/index.html", "/static/dashboard.js", "/api/campaign", "/api/experiments/99999",
                 "/static/nothing-here"):
        conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
        finally:
            conn.close()
        assert "frame-ancestors 'none'" in (response.getheader("Content-Security-Policy") or ""), path
        assert response.getheader("X-Content-Type-Options") == "nosniff", path


def test_an_approval_must_name_the_batch_it_decides(tmp_path, write_campaign):
    """``POST /api/approve`` with the token and ``{}`` approved whatever batch waited: the 409 against a stale
    batch held only when the client sent one, so a script (or a page left open) could approve a batch that
    arrived after the operator looked. The batch is now required: 400 with a JSON error, nothing decided."""
    campaign, waiting = _held_batch(tmp_path, write_campaign)
    dashboard = Dashboard(campaign.store)
    try:
        for wrong in ({"by": 3}, {"by": "two\nlines"}, {"reason": ""}, {"reason": "x" * 501}):  # said as the CLI's
            status, answer = dashboard.request("POST", "/api/approve", json.dumps({"batch": waiting, **wrong}).encode(),
                                               {"X-Labloop-Token": TOKEN})
            assert status == 400, (wrong, answer)
        for body in ({}, {"veto": []}, {"veto": [waiting[1]]}, {"batch": []}, {"batch": None}):
            status, answer = dashboard.request("POST", "/api/approve", json.dumps(body).encode(),
                                               {"X-Labloop-Token": TOKEN})
            assert status == 400 and "say which batch you decide" in json.loads(answer)["error"], body
        with Journal.open(campaign.store, readonly=True) as journal:
            assert [e.id for e in journal.experiments(states=(State.AWAITING_APPROVAL,))] == waiting  # undecided
        decision = json.dumps({"veto": [waiting[1]], "batch": waiting}).encode()
        status, answer = dashboard.request("POST", "/api/approve", decision, {"X-Labloop-Token": TOKEN})
        assert status == 200 and json.loads(answer) == {"approved": [waiting[0]], "vetoed": [waiting[1]]}
    finally:
        dashboard.close()


def test_a_journal_begun_afresh_at_its_path_is_followed_and_not_decided_by_the_old_view(tmp_path, write_campaign):
    """A journal deleted and begun afresh at its path (docs/running.md's way to start over) left the dashboard on
    the old file, showing its batch, while an approval, which opens the store by its path, decided the new
    campaign's batch of the same ids, molecules nobody was shown (a security trial). The file gone is said (503),
    the new one is shown, and a decision naming the old campaign is refused (409) with nothing decided."""
    campaign, ids = _held_batch(tmp_path, write_campaign)
    dashboard = Dashboard(campaign.store)
    try:
        first = json.loads(dashboard.get("/api/campaign")[1])["campaign"]["created_at"]
        for path in tmp_path.glob(f"{campaign.store.name}*"):  # the journal and its -wal, -shm
            path.unlink()
        deadline = time.monotonic() + 60  # liveness only: the watcher looks every REFRESH_S
        while (answer := dashboard.get("/api/campaign"))[0] != 503:
            assert time.monotonic() < deadline, answer
            time.sleep(0.05)
        assert "the journal file is gone (deleted or moved)" in json.loads(answer[1])["error"]
        decision = {"veto": [], "batch": ids, "campaign": first}
        status, _ = dashboard.request("POST", "/api/approve", json.dumps(decision).encode(), {"X-Labloop-Token": TOKEN})
        assert status == 503
        time.sleep(0.01)  # another created_at, to the millisecond
        with Journal.create(campaign.store, campaign) as journal:
            assert journal.record_proposals([_Proposal("c1ccccc1O"), _Proposal("c1ccccc1N")], step=0,
                                            planner="random", awaiting_approval=True) == ids  # the same ids
        while "c1ccccc1O" not in (answer := dashboard.get("/api/campaign"))[1].decode():
            assert time.monotonic() < deadline, answer
            time.sleep(0.05)
        second = json.loads(answer[1])["campaign"]["created_at"]
        assert second != first
        status, body = dashboard.request("POST", "/api/approve", json.dumps(decision).encode(),
                                         {"X-Labloop-Token": TOKEN})
        assert status == 409 and f"not the one created {first} decided on" in json.loads(body)["error"]
        with Journal.open(campaign.store, readonly=True) as journal:
            assert [e.id for e in journal.experiments(states=(State.AWAITING_APPROVAL,))] == ids  # undecided
        status, body = dashboard.request("POST", "/api/approve", json.dumps({**decision, "campaign": second}).encode(),
                                         {"X-Labloop-Token": TOKEN})
        assert status == 200 and json.loads(body) == {"approved": ids, "vetoed": []}
    finally:
        dashboard.process.send_signal(signal.SIGINT)
        _, err = dashboard.process.communicate(timeout=30)
    assert "is another file now" in err and "Traceback" not in err


def test_a_persons_reason_for_a_veto_is_shown_as_written(tmp_path, write_campaign):
    """The folders cut from the page's messages cut a veto's reason too: "decomposes like O=C(/C=C/c1ccccc1)O"
    (cinnamic acid, no molecule of the campaign) was shown as "O=C(c1ccccc1)O", another molecule (a security
    trial). What a person wrote deciding a batch is shown as written; a run's own messages are still cut."""
    reason = "decomposes like cinnamic acid O=C(/C=C/c1ccccc1)O"
    campaign, ids = _held_batch(tmp_path, write_campaign)
    with Journal.open(campaign.store) as journal:
        journal.approve(veto=[ids[1]], by="alice with labloop approve", batch=ids, reason=reason)
        journal.add_event("note", "weights kept in /home/lab/models/v3.keras")
    dashboard = Dashboard(campaign.store)
    try:
        snap = json.loads(dashboard.get("/api/campaign")[1])
    finally:
        dashboard.close()
    approved = next(e for e in snap["events"] if e["kind"] == "approved")
    assert reason in approved["message"] and approved["data"]["reason"] == reason
    assert next(e for e in snap["experiments"] if e["id"] == ids[1])["cause"].endswith(f": {reason}")
    assert any(e["message"] == "weights kept in v3.keras" for e in snap["events"])  # still cut


def _held_batch(tmp_path: Path, write_campaign) -> tuple[Any, list[int]]:
    """A journal (``campaign.store``) of a campaign with ``planner.approve`` holding a batch of two, and its ids."""
    from labloop.orchestrator.config.campaign import load_campaign

    campaign = load_campaign(write_campaign(tmp_path, planner={"kind": "random", "batch_size": 2, "approve": True}))
    with Journal.create(campaign.store, campaign) as journal:
        return campaign, journal.record_proposals([_Proposal("CCO"), _Proposal("CCN")], step=0, planner="random",
                                                  awaiting_approval=True)


class _Proposal:
    """A proposal as the journal records it (a planner's, without a model)."""

    def __init__(self, smiles: str) -> None:
        self.smiles, self.conditions, self.mu, self.sigma, self.acquisition = smiles, {}, None, None, None


def test_bad_stores_and_ports_exit_2_with_one_line(tmp_path, labloop, served, monkeypatch):
    notes = tmp_path / "notes.db"
    notes.write_text("just text, not a journal " * 50)
    for store, needle in ((notes, "not a labloop journal"), (tmp_path / "missing.db", "no such journal (yet? a run "
                                                                                     "creates it as it starts")):
        result = labloop("dashboard", store)
        assert result.returncode == 2 and needle in result.stderr and result.stderr.count("\n") == 1
    busy = labloop("dashboard", served.process.args[-5], "--port", served.port)
    assert busy.returncode == 2 and "--port" in busy.stderr and busy.stderr.count("\n") == 1
    short = labloop("dashboard", served.process.args[-5], "--token", "abc")
    assert short.returncode == 2 and "--token" in short.stderr
    monkeypatch.setenv("LABLOOP_DASHBOARD_TOKEN", "abc")  # the token can come from the environment, out of `ps`
    short = labloop("dashboard", served.process.args[-5])  # named as the variable the value came from
    assert short.returncode == 2 and "LABLOOP_DASHBOARD_TOKEN" in short.stderr and "--token" not in short.stderr
    assert short.stderr.count("\n") == 1
    # twelve spaces, or a token with the line end of the file it was read from, matched no approve/veto
    for token in (" " * 12, "s3cret-token\n", "s3cret\ntoken"):
        monkeypatch.setenv("LABLOOP_DASHBOARD_TOKEN", token)
        for command, where in ((("dashboard", served.process.args[-5]), "LABLOOP_DASHBOARD_TOKEN"),
                               (("dashboard", served.process.args[-5], "--token", token), "--token")):
            bad = labloop(*command)
            assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
            assert where in bad.stderr and "without spaces or line breaks" in bad.stderr, bad.stderr
            assert "s3cret" not in bad.stderr + bad.stdout
    monkeypatch.delenv("LABLOOP_DASHBOARD_TOKEN")
    foreign = labloop("dashboard", served.process.args[-5], "--host", "192.0.2.1", "--port", 0)  # TEST-NET-1
    assert foreign.returncode == 2 and "--host" in foreign.stderr and "not an address of this machine" in foreign.stderr


def test_a_token_from_the_environment_is_not_printed_and_guards_writes(finished_store):
    """A token kept out of the process list (LABLOOP_DASHBOARD_TOKEN) was printed back in the URL and on a line of
    its own, into whatever log a service writes (a security trial): the URL is printed without it, the line says
    where it is, and approve/veto take it."""
    secret = "env-only-s3cret-token"
    dashboard = Dashboard(finished_store, token=secret, token_from_env=True)
    try:
        said = dashboard.process.stdout.readline()
        assert "LABLOOP_DASHBOARD_TOKEN's, not printed" in said and "#token=<that token>" in said, said
        assert dashboard.url_with_token == dashboard.url  # no fragment
        approve = {"Content-Type": "application/json"}
        assert dashboard.request("POST", "/api/approve", b'{"batch": [1]}',
                                 {**approve, "X-Labloop-Token": "wrong-token-123"})[0] == 403
        status, body = dashboard.request("POST", "/api/approve", b'{"batch": [1]}',
                                         {**approve, "X-Labloop-Token": secret})
        assert status == 409 and b"awaiting approval" in body, body  # past the token: nothing waits in this journal
    finally:
        dashboard.process.send_signal(signal.SIGINT)
        out, err = dashboard.process.communicate(timeout=30)
    assert secret not in said + out + err


def test_two_campaigns_in_two_tabs_and_no_paths_shown(served, tmp_path, write_campaign, browser):
    from selenium.webdriver.common.by import By

    from labloop.orchestrator.config.campaign import load_campaign

    campaign = load_campaign(write_campaign(tmp_path, name="second"))
    with Journal.create(campaign.store, campaign) as journal:
        journal.add_event("note", "weights kept in /home/lab/private/models/v3.keras", data={"dir": "/srv/lab/x/"})
        journal.add_event("note", "potentiostat: no reply on /dev/pts/7")  # a port is named whole (it read '7')
        # a quoted path whose folders hold spaces, as an advice's command names a store (it showed 'Lab Data/...')
        journal.add_event("note", "then: labloop resume '/home/lab/Lab Data/secret proj/runs/b.db' --cell-emptied")
    second = Dashboard(campaign.store, token="another-token-456")
    try:
        browser.get(served.url)
        _wait(browser, lambda d: _text(d, "#campaign-name") == "tiny", "the first campaign")
        first_tab = browser.current_window_handle
        browser.switch_to.new_window("tab")
        browser.get(second.url)
        _wait(browser, lambda d: _text(d, "#campaign-name") == "second", "the second campaign")
        _wait(browser, lambda d: "v3.keras" in _text(d, "#events-table"), "the event")
        events = _text(browser, "#events-table")
        assert "weights kept in v3.keras" in events and "/home/lab" not in events
        assert "potentiostat: no reply on /dev/pts/7" in events
        assert "then: labloop resume 'b.db' --cell-emptied" in events and "Lab Data" not in events
        assert browser.find_element(By.ID, "done-count").text == "0/6" and browser.title.startswith("second")
        browser.switch_to.window(first_tab)
        assert _text(browser, "#campaign-name") == "tiny" and browser.title.startswith("tiny")
        status, body = second.get("/api/campaign")
        assert status == 200 and b"/home/lab" not in body and b"/srv/lab" not in body and b"v3.keras" in body
        assert b"Lab Data" not in body and b"secret proj" not in body
    finally:
        second.close()


def test_the_page_names_the_molecules_the_library_names(tmp_path, write_campaign, browser):
    """A chemist knows molecules by name, and the page showed SMILES alone (the library's names were in the
    report's tables only): the best, experiments and voltammogram captions show the library's name above the
    SMILES, as text (a name written as markup runs nothing); an unnamed molecule shows its SMILES alone."""
    from selenium.webdriver.common.by import By

    from labloop.orchestrator.config.campaign import load_campaign

    quoted = XSS.replace('"', '""')  # as a CSV writes a name holding quotes
    (tmp_path / "named.csv").write_text(f'smiles,name\nCOc1ccc(OC)cc1,"{quoted}"\nCc1ccccc1N,o-toluidine\nCCO,\n')
    campaign = load_campaign(write_campaign(tmp_path, library={"file": str(tmp_path / "named.csv")}))
    with Journal.create(campaign.store, campaign) as journal:
        ids = journal.record_proposals([_Proposal(s) for s in ("COc1ccc(OC)cc1", "Cc1ccccc1N", "CCO")], step=0,
                                       planner="random")
        _measure(journal, ids[:2], (4.55, 4.4))
    dashboard = Dashboard(campaign.store)
    try:
        browser.get(dashboard.url_with_token)
        _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#best-table tbody tr")) == 2, "the best")
        names = [n.text for n in browser.find_elements(By.CSS_SELECTOR, "#best-table td.smiles .molecule-name")]
        assert names == [XSS, "o-toluidine"]
        cells = browser.find_elements(By.CSS_SELECTOR, "#experiments-table td.smiles")
        assert [c.text.splitlines() for c in cells] == [["CCO"], ["o-toluidine", "Cc1ccccc1N"],
                                                       [XSS, "COc1ccc(OC)cc1"]]
        _wait(browser, lambda d: "o-toluidine Cc1ccccc1N ·" in _text(d, "#cv-caption"), "the caption")
        assert browser.execute_script("return window.__xss") is None
        assert not browser.find_elements(By.CSS_SELECTOR, "td.smiles img, td.smiles script")
        _screenshot(browser, tmp_path, "dashboard-names.png")
    finally:
        dashboard.close()


def test_names_that_would_mislead_or_widen_the_page_are_shown_plainly(tmp_path, write_campaign, browser):
    """A name holding U+202E showed "exe.txt" as "txt.exe", and a 5000-character name widened the experiments table
    until its status and potential were out of view, then, wrapped, filled screens (security trials): bidirectional
    and other control characters (ESC, BEL) are shown as their escapes, as `labloop log` shows them, and a long name
    is cut at 80 characters, whole in its tooltip, as `labloop log` cuts it."""
    from selenium.webdriver.common.by import By

    from labloop.orchestrator.config.campaign import load_campaign

    spoof, long_name = "\u202eexe.txt\u202c evil-rlo \x1b[31mred\x07", "L" * 5000
    (tmp_path / "named.csv").write_text(f"smiles,name\nCOc1ccc(OC)cc1,{spoof}\nCc1ccccc1N,{long_name}\n")
    campaign = load_campaign(write_campaign(tmp_path, library={"file": str(tmp_path / "named.csv")}))
    with Journal.create(campaign.store, campaign) as journal:
        ids = journal.record_proposals([_Proposal(s) for s in ("COc1ccc(OC)cc1", "Cc1ccccc1N")], step=0,
                                       planner="random")
        _measure(journal, ids, (4.55, 4.4))
    dashboard = Dashboard(campaign.store)
    try:
        browser.get(dashboard.url_with_token)
        _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#experiments-table tbody tr")) == 2, "rows")
        names = [n.get_attribute("textContent")
                 for n in browser.find_elements(By.CSS_SELECTOR, "#experiments-table .molecule-name")]
        assert "\\u202eexe.txt\\u202c evil-rlo \\x1b[31mred\\x07" in names, names
        assert not any(c in n for n in names for c in "\u202e\x1b\x07"), names
        assert "L" * 79 + "…" in names  # cut, whole in its tooltip
        tips = [n.get_attribute("title")
                for n in browser.find_elements(By.CSS_SELECTOR, "#experiments-table .molecule-name")]
        assert long_name in tips
        table, panel = browser.execute_script(
            "const t = document.getElementById('experiments-table');"
            "return [t.getBoundingClientRect().width, t.parentElement.getBoundingClientRect().width]")
        assert table <= panel + 1, (table, panel)  # its status and potential in view, no sideways scroll
    finally:
        dashboard.close()


def test_a_journal_damaged_while_served_is_said_once_and_answered_clearly(finished_store, tmp_path):
    """A row damaged under a running dashboard printed a traceback every 0.1 s and /api/experiments/1 was a bare
    500; now the problem is logged once, the API answers 503 with the line that names the row, the stream tells
    the page, and all is well again once the row is put back."""
    store = tmp_path / "live.db"
    shutil.copy(finished_store, store)
    dashboard = Dashboard(store)
    try:
        with sqlite3.connect(store) as db:
            db.execute("UPDATE measurements SET flags_json = '[1' WHERE experiment_id = 1")
        deadline = time.monotonic() + 60
        while (answer := dashboard.get("/api/campaign"))[0] != 503:  # the watcher notices within a refresh
            assert time.monotonic() < deadline, answer
            time.sleep(0.05)
        says = "measurements row of experiment 1 (attempt 1), column flags_json"
        assert says in json.loads(answer[1])["error"]
        status, body = dashboard.get("/api/experiments/1")
        assert status == 503 and says in json.loads(body)["error"] and str(tmp_path) not in body.decode()
        connection = http.client.HTTPConnection("127.0.0.1", dashboard.port, timeout=30)
        connection.request("GET", "/api/stream")
        stream = connection.getresponse()
        lines = [stream.readline() for _ in range(6)]  # the document as last read, then the problem
        connection.close()
        assert lines[0] == b"event: campaign\n" and lines[3] == b"event: problem\n" and says.encode() in lines[4]
        time.sleep(1.0)  # ten more refreshes of the damaged journal
        with sqlite3.connect(store) as db:
            db.execute("UPDATE measurements SET flags_json = '[]' WHERE experiment_id = 1")
        while dashboard.get("/api/experiments/1")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        dashboard.process.send_signal(signal.SIGINT)
        _, err = dashboard.process.communicate(timeout=30)
    assert " ".join(err.split()).count("column flags_json") == 1, err  # once, not at every refresh
    assert "Traceback" not in err and "the journal reads again" in err


def test_run_active_turns_false_when_the_run_lets_go_of_the_journal(finished_store, tmp_path):
    """A run's last commit comes before it lets go of the store's lock, so a document cached per commit said
    ``run_active: true`` for ever after a run stopped (a chemist's trial: a script polling it would wait for
    ever); it now follows the lock, as ``labloop log --json`` does."""
    store = tmp_path / "held.db"
    shutil.copy(finished_store, store)
    with sole_runner(store):  # as `labloop run` holds it
        dashboard = Dashboard(store)
        try:
            assert json.loads(dashboard.get("/api/campaign")[1])["progress"]["run_active"] is True
        except BaseException:
            dashboard.close()
            raise
    try:
        deadline = time.monotonic() + 60  # liveness only: the watcher looks every REFRESH_S
        while json.loads(dashboard.get("/api/campaign")[1])["progress"]["run_active"]:
            assert time.monotonic() < deadline, "run_active stayed true after the run let go"
            time.sleep(0.05)
    finally:
        dashboard.close()


def test_a_run_killed_with_sigkill_is_shown_stopped_not_live(tmp_path, write_campaign, browser):
    from selenium.webdriver.common.by import By

    """The page said 'live' and the killed run's experiment 'running' for ever after ``kill -9`` (an operator's
    trial): it ignored ``progress.run_active``. It now says the run process is gone, as ``labloop log`` does."""
    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 2},  # in real time: a cv lasts seconds
                                   world={"truth": {"from": "ie_ea", "solvent": "acn"}, "time_scale": 1.0})
    store = tmp_path / "tiny.db"
    run = subprocess.Popen([*CLI, "run", str(campaign_file), "--dry-run"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
    dashboard = None
    try:
        deadline = time.monotonic() + 300
        while not store.exists():
            assert run.poll() is None and time.monotonic() < deadline, run.stderr.read()
            time.sleep(0.05)
        dashboard = Dashboard(store)
        browser.get(dashboard.url)
        _wait(browser, lambda d: "running 1" in _text(d, "#state-counts"), "an experiment running")
        assert _text(browser, "#connection").startswith("run live")
        assert _text(browser, "#run-state") == "run live: a labloop process is writing this journal"
        run.send_signal(signal.SIGKILL)
        run.wait()
        # in labloop log's words (a trial found the two worded apart), and what became of its experiment
        said = "stopped: the run process ended without a word in the journal (killed, crashed, or the journal"
        _wait(browser, lambda d: _text(d, "#run-state").startswith(said), "the stop")
        logged = subprocess.run([*CLI, "log", str(store)], capture_output=True, text=True, check=True).stdout
        assert said in " ".join(logged.split())
        assert _text(browser, "#connection").startswith("no run")
        assert "the experiment it was running stopped with it and runs again on resume" in _text(browser, "#run-state")
        assert "check the pumps and the cell at the rig" in _text(browser, "#run-state")  # nothing made it safe
        # as the journal says (resume marks it interrupted), but not in the blue of a live experiment
        counter = browser.find_element(By.CSS_SELECTOR, "#state-counts li.status-interrupted")
        assert counter.text == "running 1 (the run is gone)"
        assert not browser.find_elements(By.CSS_SELECTOR, "#state-counts li.status-running")
        _screenshot(browser, tmp_path, "dashboard-killed.png")
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        run.stderr.close()
        if dashboard is not None:
            dashboard.close()


KOLKATA = "Asia/Kolkata"  # UTC+5:30: a zone no test machine's and no UTC stamp's offset is by accident


def _since_utc(seconds: float) -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


def _in_kolkata(stamp: str) -> str:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(stamp).astimezone(ZoneInfo(KOLKATA)).strftime("%m-%d %H:%M:%S")


def test_nothing_written_counts_from_the_newest_write_of_any_kind_in_a_named_zone(tmp_path, write_campaign, browser,
                                                                                  monkeypatch):
    """After a kill -9 during a cv the page said "nothing written for 25 s, since 7:45:40" from the last event,
    though the cv's actions were journalled 23 s later; a night read "30000 s"; and no time said its zone, while
    `labloop log` printed the server's (an operator's trial). The page counts from progress.last_heard (actions
    too), says long silences in minutes and hours, and its times name the browser's zone as `log` names its own:
    both print a time alike, in the same zone."""
    import re

    from labloop.orchestrator.config.campaign import load_campaign
    from labloop.orchestrator.journal import store as store_module

    campaign = load_campaign(write_campaign(tmp_path, name="quiet"))
    old = _since_utc(8 * 3600 + 20 * 60 + 15)  # the whole journal written 8 h 20 min ago
    monkeypatch.setattr(store_module, "now", lambda: old)
    with Journal.create(campaign.store, campaign) as journal:
        journal.add_event("run", "run started (dry run on emulators)")
        [eid] = journal.record_proposals([_Proposal("CCO")], step=0, planner="random")
        journal.start_experiment(eid)
    dashboard = Dashboard(campaign.store)
    try:
        browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": KOLKATA})
        browser.get(dashboard.url)
        _wait(browser, lambda d: "nothing written for" in _text(d, "#run-state"), "the stop")
        said = re.search(r"nothing written for (\d+) h (\d+) min, since (.*?) UTC\+5:30\)",
                         _text(browser, "#run-state"))
        assert said and said[1] == "8" and said[3] == _in_kolkata(old), _text(browser, "#run-state")
        assert _text(browser, "#events-table thead") == "time (UTC+5:30) kind message"
        assert _text(browser, "#events-table tbody td") == _in_kolkata(old)

        acted = _since_utc(7 * 60 + 30)
        monkeypatch.setattr(store_module, "now", lambda: acted)
        with Journal.open(campaign.store) as journal:  # the cv's action, journalled after the last event
            journal.start_action(eid, 0, "potentiostat", "cv", {"scan_rate_v_s": 0.1})
        _wait(browser, lambda d: _in_kolkata(acted) in _text(d, "#run-state"), "the action's time")
        said = re.search(r"nothing written for (\d+) min (\d+) s, since (.*?) UTC\+5:30", _text(browser, "#run-state"))
        assert said and int(said[1]) >= 7 and said[3] == _in_kolkata(acted), _text(browser, "#run-state")
    finally:
        dashboard.close()
    printed = subprocess.run([*CLI, "log", str(campaign.store)], capture_output=True, text=True, check=True,
                             env={**os.environ, "TZ": KOLKATA, "COLUMNS": "200"}).stdout
    assert "recent events (times UTC+5:30)" in printed and f"│ {_in_kolkata(old)} │ run " in printed, printed


def _style(driver, css: str) -> dict[str, str]:
    return driver.execute_script("const s = getComputedStyle(document.querySelector(arguments[0])); "
                                 "return {weight: s.fontWeight, color: s.color, background: s.backgroundColor};", css)


def test_a_stop_that_left_the_rig_unsafe_is_the_loudest_line_and_a_finish_the_quietest(tmp_path, write_campaign,
                                                                                       browser):
    """ "stopped: NOT made safe after experiment 2 failed ... a pump may still be pumping" was shown in the muted grey
    of a normal finish, while a killed run was bold amber (an operator's trial). How the run ended now sets the line's
    style (progress.ended_as): a rig left NOT safe is white on red and says so first, a stop by faults (exit 1) is bold,
    a finish stays quiet."""
    from labloop.orchestrator.config.campaign import load_campaign

    endings = {
        "finished": [("finished", "campaign finished: budget reached", None)],
        "stopped": [("stopped", "3 failed experiments in a row; campaign stopped (budget.max_consecutive_faults)",
                     None)],
        "unsafe": [("stopped", "PumpStalled: NOT made safe after experiment 2 failed: analyte_pump: no reply; campaign "
                               "stopped before the next sample",
                    {"unsafe": ["analyte_pump: no reply"], "advice": "check analyte_pump at the instrument (a pump may "
                                                                     "still be pumping, a cell still be on)"})],
    }
    shown = {}
    for name, events in endings.items():
        (tmp_path / name).mkdir()
        campaign = load_campaign(write_campaign(tmp_path / name, name=name))
        with Journal.create(campaign.store, campaign) as journal:
            journal.add_event("run", "run started (dry run on emulators)")
            for kind, message, data in events:
                journal.add_event(kind, message, data=data)
        dashboard = Dashboard(campaign.store)
        try:
            browser.get(dashboard.url)
            _wait(browser, lambda d, name=name: _text(d, "#campaign-name") == name and _text(d, "#run-state"), name)
            shown[name] = (browser.find_element("id", "run-state").get_attribute("class"), _text(browser, "#run-state"),
                           _style(browser, "#run-state"))
        finally:
            dashboard.close()
    assert [shown[n][0] for n in endings] == ["run-stopped", "run-fault", "run-unsafe"]
    assert shown["unsafe"][1].startswith("RIG NOT MADE SAFE: stopped: PumpStalled: NOT made safe")
    assert int(shown["finished"][2]["weight"]) < 700 <= int(shown["stopped"][2]["weight"])
    assert int(shown["unsafe"][2]["weight"]) >= 700 and shown["unsafe"][2]["background"] not in (
        shown["stopped"][2]["background"], shown["finished"][2]["background"])  # on red: seen from across the lab
    assert len({shown[n][2]["color"] for n in endings}) == 3


def _measure(journal, ids, potentials) -> None:
    """Experiments ``ids`` run and measured at ``potentials``, each with a simulated voltammogram of its own."""
    import numpy as np

    from labloop.instruments.cv_analysis import analyze_cv
    from labloop.sim.cv_physics import random_couple, simulate_cv

    for eid, potential in zip(ids, potentials, strict=True):
        rng = np.random.default_rng(eid)
        voltammogram = simulate_cv(*random_couple(rng), rng)
        journal.start_experiment(eid)
        journal.record_raw(eid, voltammogram)
        journal.record_measurement(eid, analyze_cv(voltammogram), potential)
        journal.finish_experiment(eid)


def _waiting_batch(tmp_path, write_campaign, name="gate", past=None):
    """A journal with two measured experiments, one vetoed batch behind them, and a first-step batch of two
    awaiting approval (with predictions, at a planned scan rate): its path and the waiting ids. ``past``: the
    journal's past measurements (Journal.create)."""

    from labloop.orchestrator.config.campaign import load_campaign

    campaign = load_campaign(write_campaign(tmp_path, name=name,
                                            planner={"kind": "random", "batch_size": 2, "approve": True}))
    long_smiles = "C(=Cc1ccccc1)C=Nc1ccncc1" * 4  # a long molecule, as a library holds
    with Journal.create(campaign.store, campaign, past=past) as journal:
        ids = journal.record_proposals([_Proposal(s) for s in ("COc1ccc(OC)cc1", "Cc1ccccc1N")], step=0,
                                       planner="random")
        _measure(journal, ids, (4.55, 4.4))
        vetoed = journal.record_proposals([_Proposal("CCC")], step=1, planner="random", awaiting_approval=True)
        journal.approve(veto=vetoed, by="test", batch=vetoed)
        proposals = [_Proposal(long_smiles), _Proposal("CCO")]
        for proposal in proposals:
            proposal.conditions, proposal.mu, proposal.sigma = {"scan_rate_v_s": 0.25}, 4.5, 2.0
        waiting = journal.record_proposals(proposals, step=0, planner="random", awaiting_approval=True)
    return campaign.store, waiting


def test_the_page_fits_a_phone_and_a_desktop_without_scrolling_sideways(tmp_path, write_campaign, browser):
    """At 390 px wide the page was 762-910 px wide: the experiments table 762, the approval table 498, the failed
    counter cut off (an operator's trial). Wide tables now scroll inside their panels and the counters wrap."""
    from selenium.webdriver.common.by import By

    store, _ = _waiting_batch(tmp_path, write_campaign)
    dashboard = Dashboard(store)
    try:
        for width, height in ((390, 844), (1280, 800)):
            browser.set_window_size(width, height)
            browser.get(dashboard.url)
            _wait(browser, lambda d: d.find_element(By.ID, "approval-panel").is_displayed()
                  and d.find_elements(By.CSS_SELECTOR, "#experiments-table tbody tr"), "the page")
            inner, scroll = browser.execute_script("return [window.innerWidth, document.documentElement.scrollWidth]")
            assert inner <= width and scroll <= inner, (width, inner, scroll)
            right = browser.execute_script("return Math.max(...[...document.querySelectorAll('#state-counts li')]"
                                           ".map((li) => li.getBoundingClientRect().right))")
            assert right <= inner, (width, right)  # every counter in view, the failed one too
    finally:
        dashboard.close()


def test_veto_all_asks_first_and_its_answer_does_not_stay_under_the_next_batch(tmp_path, write_campaign, browser):
    """"veto all" vetoed a batch on one click, and its "approved 0, vetoed 4" stayed under the next batch, reading as
    if that one was vetoed; vetoes were counted as red failures; the approval table showed neither the planned scan
    rate nor which predictions are the first batch's, uncalibrated ones (`labloop log` marks them *); the best-so-far
    plot numbered experiments 1.2, 1.4, ...; the browser's console had a favicon 404 (an operator's trial)."""
    from selenium.webdriver.common.by import By

    store, waiting = _waiting_batch(tmp_path, write_campaign)
    dashboard = Dashboard(store)
    try:
        browser.get(dashboard.url_with_token)
        _wait(browser, lambda d: d.find_element(By.ID, "approval-panel").is_displayed(), "the approval panel")
        rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#approval-table tbody tr")]
        assert all("scan rate 0.250 V/s" in r and "4.500 *" in r for r in rows), rows
        assert browser.find_element(By.ID, "approval-note").is_displayed()
        assert "* the first batch, predicted before any measurement" in _text(browser, "#approval-note")
        counts = {li.text: li.get_attribute("class")
                  for li in browser.find_elements(By.CSS_SELECTOR, "#state-counts li")}
        assert counts["failed 0"] == "" and counts["vetoed 1"] == "status-vetoed", counts  # not red
        assert [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#experiments-table td.status-vetoed")] == [
            "vetoed"]
        ticks = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "#plot-best text[y='273']")]
        assert ticks == ["1", "2"], ticks  # two measurements: whole experiment numbers only
        # counted, not by id (a trial: a vetoed experiment between took no place on a plot labelled "experiment
        # number"), and the tables' potentials name their scale, as the plots and the best table do
        assert "n-th measured experiment (not its id)" in _text(browser, "#plot-best")
        headers = [th.text for th in
                   browser.find_elements(By.CSS_SELECTOR, "#experiments-table th, #approval-table th")]
        assert headers.count("predicted (V vs Li/Li+)") == 2 and "measured (V vs Li/Li+)" in headers, headers
        assert not [e for e in browser.get_log("browser") if "favicon" in e["message"]]

        browser.find_element(By.ID, "veto-all-button").click()
        alert = _wait(browser, lambda d: d.switch_to.alert, "the confirmation")
        assert f"({waiting[0]}, {waiting[1]})" in alert.text and "Veto all 2" in alert.text
        alert.dismiss()
        assert _text(browser, "#approval-message") == ""
        with Journal.open(store, readonly=True) as journal:  # dismissed: nothing decided
            assert [e.id for e in journal.experiments(states=(State.AWAITING_APPROVAL,))] == waiting
        browser.find_element(By.ID, "veto-all-button").click()
        _wait(browser, lambda d: d.switch_to.alert, "the confirmation").accept()
        _wait(browser, lambda d: _text(d, "#approval-message") == f"batch {waiting[0]}, {waiting[1]}: approved 0, "
                                                                   "vetoed 2", "the decision")
        _wait(browser, lambda d: "vetoed 3" in _text(d, "#state-counts"), "the vetoes counted")
        # the update that emptied the batch hid the panel and the answer with it, before or after the answer came
        # (CI met both orders): the answer stays in sight until the next batch, its buttons off
        assert _text(browser, "#approval-message") == f"batch {waiting[0]}, {waiting[1]}: approved 0, vetoed 2"
        assert not browser.find_element(By.ID, "veto-all-button").is_enabled()
        with Journal.open(store) as journal:  # the runner's next batch
            after = journal.record_proposals([_Proposal("CCCl")], step=2, planner="random", awaiting_approval=True)
        _wait(browser, lambda d: [b.get_attribute("value") for b in d.find_elements(By.CSS_SELECTOR,
                                                                                     "#approval-table input")]
              == [str(after[0])], "the next batch")
        assert _text(browser, "#approval-message") == ""  # what was said of the last batch is gone
        assert not browser.find_element(By.ID, "approval-note").is_displayed()  # no prediction, no footnote
    finally:
        dashboard.close()


def test_a_lost_connection_claims_nothing_about_the_run(finished_store, tmp_path, browser):
    """With the dashboard server down the badge said "connection lost" while the line below still said "run live: a
    labloop process is writing this journal" (an operator's trial); the line now says the run's state is unknown."""
    store = tmp_path / "held.db"
    shutil.copy(finished_store, store)
    with sole_runner(store):  # a run holds the journal
        dashboard = Dashboard(store)
        try:
            browser.get(dashboard.url)
            _wait(browser, lambda d: _text(d, "#run-state").startswith("run live"), "the live run")
        finally:
            dashboard.close()
        _wait(browser, lambda d: _text(d, "#connection").startswith("connection lost"), "the lost connection")
        said = _text(browser, "#run-state")
        assert "run live" not in said and said.startswith("connection to the dashboard lost: whether a run is writing "
                                                          "this journal is unknown"), said


def test_the_page_counts_past_measurements_apart_and_their_first_batch_is_calibrated(tmp_path, write_campaign,
                                                                                      browser):
    """A campaign started from the lab's past measurements (and a bound, a ``>5.1`` row): the page says them beside
    the counts, as `labloop log` does, and its first batch's predictions, calibrated on them, are not marked as the
    prior's (no *)."""
    from selenium.webdriver.common.by import By

    data = {"measurements_n": 2, "bounds_n": 1, "in_library": 3, "hits": 1,
            "measurements": [["Oc1ccccc1", 4.55], ["CCN", 3.9]], "bounds": [["CCCl", 5.1, 1]]}
    store, _ = _waiting_batch(tmp_path, write_campaign, past=("2 past measurements and 1 bound from past.csv", data))
    dashboard = Dashboard(store)
    try:
        browser.get(dashboard.url_with_token)
        _wait(browser, lambda d: d.find_element(By.ID, "approval-panel").is_displayed(), "the approval panel")
        assert "+ 2 past measurements and 1 bound, 1 hit" in _text(browser, "#state-counts")
        rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#approval-table tbody tr")]
        assert rows and all("4.500" in r and "*" not in r for r in rows), rows
        assert not browser.find_element(By.ID, "approval-note").is_displayed()
    finally:
        dashboard.close()



def _at(monkeypatch, start, seconds: float) -> str:
    """The journal's clock (``store.now``) set to ``seconds`` after ``start``; the stamp it writes."""
    from datetime import timedelta

    from labloop.orchestrator.journal import store as store_module

    stamp = (start + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")
    monkeypatch.setattr(store_module, "now", lambda: stamp)
    return stamp


def test_the_page_says_what_a_live_run_does_now_and_when_it_may_end(tmp_path, write_campaign, browser, monkeypatch):
    """The progress panel said how far a campaign was, not what the run was doing nor when it would end (an operator's
    request from a night shift). While a run holds the journal it says, in the words of `labloop log`'s header and in
    the browser's zone: the running experiment, its molecule (named as markup: shown as text) and the protocol step
    open at an instrument; the retrain in progress; the time left at the recent pace. Each follows the journal live,
    and all go once no run holds it."""
    from datetime import UTC, datetime, timedelta

    from selenium.webdriver.common.by import By

    from labloop.orchestrator.config.campaign import load_campaign

    quoted = XSS.replace('"', '""')
    (tmp_path / "named.csv").write_text(f'smiles,name\nCc1ccccc1N,"{quoted}"\nCCO,\nCCN,\nCCC,\n')
    campaign = load_campaign(write_campaign(tmp_path, library={"file": str(tmp_path / "named.csv")},
                                            budget={"max_experiments": 10}))
    start = datetime.now(UTC) - timedelta(hours=1)
    _at(monkeypatch, start, 0)
    with Journal.create(campaign.store, campaign) as journal:
        journal.add_event("run", "run started (dry run on emulators)")
        ids = journal.record_proposals([_Proposal(s) for s in ("CCO", "CCN", "CCC", "Cc1ccccc1N")], step=0,
                                       planner="random")
        # finished at 200, 550 and 1000 s: 200 (from the first's start), 350 and 450 s apart, a mean of 1000 / 3 s
        for eid, begun, lasted in zip(ids, (0, 300, 600), (200, 250, 400), strict=False):
            _at(monkeypatch, start, begun)
            journal.start_experiment(eid)
            _measure_only(journal, eid)
            _at(monkeypatch, start, begun + lasted)
            journal.finish_experiment(eid)
        retrained = _at(monkeypatch, start, 1000)
        journal.add_event("retrain", "retraining round 1 on 3 measurements started",
                          data={"round": 1, "n_measurements": 3})
        running = _at(monkeypatch, start, 1010)
        journal.start_experiment(ids[3])
        cv = _at(monkeypatch, start, 1030)
        action = journal.start_action(ids[3], 1, "potentiostat", "cv", {"scan_rate_v_s": 0.1})
    with sole_runner(campaign.store):  # a run holds the journal
        dashboard = Dashboard(campaign.store)
        try:
            browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": KOLKATA})
            browser.get(dashboard.url)
            _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#run-now li.now"), "what the run does")
            assert _text(browser, "#run-now li.now") == (f"now: experiment {ids[3]} {XSS} (Cc1ccccc1N): cv on "
                                                         f"potentiostat since {_in_kolkata(cv)} UTC+5:30")
            assert _text(browser, "#run-now li.retraining") == (f"retraining model (round 1, since "
                                                                f"{_in_kolkata(retrained)} UTC+5:30)")
            # the first retrain runs: the pace holds none, said as `labloop log` says it (a newcomer's trial)
            assert _text(browser, "#run-now li.eta") == ("about 38 min 53 s left at the recent pace (5 min 33 s "
                                                         "per experiment, the mean of the last 3; an estimate), plus "
                                                         "the retrain in progress, which no finished one has timed "
                                                         "yet")
            assert browser.execute_script("return window.__xss") is None  # the name is text, never markup
            assert not browser.find_elements(By.CSS_SELECTOR, "#run-now img, #run-now script")
            _screenshot(browser, tmp_path, "dashboard-now.png")

            with Journal.open(campaign.store) as journal:  # the cv ends and the retrain's model comes
                journal.finish_action(action)
                journal.add_model_version(3, {})
            # two commits: a refresh between them shows the step ended and the retrain still on, so both are waited for
            _wait(browser, lambda d: ("between protocol steps" in _text(d, "#run-now li.now")
                                      and not d.find_elements(By.CSS_SELECTOR, "#run-now li.retraining")),
                  "the step's end and the retrained model")
            assert _text(browser, "#run-now li.now").endswith(f"(running since {_in_kolkata(running)} UTC+5:30)")
            assert _text(browser, "#run-now li.eta").endswith("the mean of the last 3; an estimate)")
        except BaseException:
            dashboard.close()
            raise
    try:  # the run let go: what it was doing is no longer happening
        _wait(browser, lambda d: not d.find_element(By.ID, "run-now").is_displayed(), "the live lines gone")
        assert not browser.find_elements(By.CSS_SELECTOR, "#run-now li")
        assert not _text(browser, "#run-state").startswith("run live")
    finally:
        dashboard.close()


def test_the_pages_eta_of_a_zero_latency_dry_run_says_under_a_second(tmp_path, write_campaign, browser, monkeypatch):
    """A zero-latency dry run's experiments take milliseconds: the page's ETA said "about 0 s left at the recent pace
    (median 0 s per experiment ...)" with experiments left; it says "under 1 s", as `labloop log`'s header does."""
    from datetime import UTC, datetime, timedelta

    from selenium.webdriver.common.by import By

    from labloop.orchestrator.config.campaign import load_campaign
    from labloop.orchestrator.journal.view import live_line

    campaign = load_campaign(write_campaign(tmp_path, budget={"max_experiments": 40}))
    start = datetime.now(UTC) - timedelta(hours=1)
    with Journal.create(campaign.store, campaign) as journal:
        journal.add_event("run", "run started (dry run on emulators)")
        for n, eid in enumerate(journal.record_proposals([_Proposal(s) for s in ("CCO", "CCN", "CCC")], step=0,
                                                         planner="random")):
            _at(monkeypatch, start, 10 + 0.004 * n)  # one after the other, 4 ms each
            journal.start_experiment(eid)
            _measure_only(journal, eid)
            _at(monkeypatch, start, 10 + 0.004 * (n + 1))
            journal.finish_experiment(eid)
    said = "under 1 s left at the recent pace (under 1 s per experiment, the mean of the last 3; an estimate)"
    with sole_runner(campaign.store):  # a run holds the journal
        with Journal.open(campaign.store, readonly=True) as journal:
            assert live_line(snapshot(journal)["progress"]).endswith(f"; {said}")
        dashboard = Dashboard(campaign.store)
        try:
            browser.get(dashboard.url)
            _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#run-now li.eta"), "the ETA")
            assert _text(browser, "#run-now li.eta") == said
        finally:
            dashboard.close()


def _measure_only(journal, eid) -> None:
    """The running experiment ``eid``'s voltammogram and measurement (it is then finished by the caller)."""
    import numpy as np

    from labloop.instruments.cv_analysis import analyze_cv
    from labloop.sim.cv_physics import random_couple, simulate_cv

    rng = np.random.default_rng(eid)
    voltammogram = simulate_cv(*random_couple(rng), rng)
    journal.record_raw(eid, voltammogram)
    journal.record_measurement(eid, analyze_cv(voltammogram), 4.0)


def test_a_journal_copied_with_cp_while_only_a_dashboard_reads_it_holds_the_finished_campaign(tmp_path,
                                                                                              write_campaign):
    """After a run finished, with only the dashboard open on the journal, `cp runs/x.db` copied a journal with 0
    experiments (an operator's trial): the dashboard holds no read transaction between polls, but SQLite copies the
    WAL into the file at close only for the last connection, so the run's close left the campaign in `x.db-wal`.
    The writer's close now checkpoints it."""
    from labloop.orchestrator.config.campaign import load_campaign
    from labloop.orchestrator.dashboard.app import CampaignSource

    campaign = load_campaign(write_campaign(tmp_path))
    Journal.create(campaign.store, campaign).close()
    source = CampaignSource(campaign.store)
    try:
        with Journal.open(campaign.store) as journal:
            for n in range(20):
                journal.add_event("note", f"note {n}")
                source.refresh()  # the dashboard reads between the run's writes
        source.refresh()
        assert not source.journal._conn.in_transaction  # the dashboard holds no snapshot between polls
        shutil.copy(campaign.store, tmp_path / "copy.db")
    finally:
        source.close()
    copy = sqlite3.connect(tmp_path / "copy.db")
    try:
        assert copy.execute("SELECT COUNT(*) FROM events WHERE kind = 'note'").fetchone()[0] == 20
    finally:
        copy.close()


#: molecules of a campaign whose SMILES hold bond-direction slashes after a branch or a bracket atom
SLASHED = ("C(/C=C/Cl)c1ccccc1", "C[Si](C)(C)/C/C=C/C", "CC(=O)/N=C/C")


@pytest.mark.parametrize(("text", "shown"), [
    ("journal /home/lab/runs/a.db kept", "journal a.db kept"),
    ("labloop resume '/home/lab/Lab Data/a.db'", "labloop resume 'a.db'"),
    ("--store=/tmp/lab/x.db", "--store=x.db"),
    ("potentiostat at /dev/ttyUSB0", "potentiostat at /dev/ttyUSB0"),
    # folders whose names hold what SMILES hold (a review: a rule by characters showed them)
    ("journal /data/campaign=3/runs/a.db", "journal a.db"),
    ("/mnt/nas/user@lab/runs/a.db and /home/lab/exp(2)/[old]/a.db", "a.db and a.db"),
    ("sample S0012 (C(/C=C/Cl)c1ccccc1): quasi-reversible, in /home/lab/r/a.db",
     "sample S0012 (C(/C=C/Cl)c1ccccc1): quasi-reversible, in a.db"),
    ("C[Si](C)(C)/C/C=C/C and CC(=O)/N=C/C", "C[Si](C)(C)/C/C=C/C and CC(=O)/N=C/C"),
])
def test_the_page_cuts_folders_from_messages_but_not_the_campaigns_molecules(text, shown):
    """Event messages are shown with the folders of the lab computer cut; a warning quotes its molecule's SMILES,
    whose bond-direction slashes after a branch or a bracket atom were cut as folders (``C(/C=C/Cl)`` shown as
    ``C(Cl)``): the campaign's molecules are kept whole, and every folder is cut, whatever its name holds."""
    assert without_paths(text, SLASHED) == shown


def test_the_report_page_prints_its_tables_within_the_page(finished_store, tmp_path, labloop, browser):
    """The report's page printed to PDF cut its wide tables at the page's edge: the lab-grade table lost its Ru, iR and
    blank columns (a referee's trial, Chromium's print). Printed (print media, an A4 page's width), every table fits
    the page; on a screen a wide one scrolls as before. The report's page, in the dashboard's headless Chromium."""
    assert labloop("report", finished_store, "-o", tmp_path / "report").returncode == 0
    browser.set_window_size(760, 1000)  # about an A4 page's printable width at 96 dpi
    browser.get((tmp_path / "report" / "index.html").as_uri())
    widths = "return [...document.querySelectorAll('table')].map(t => [t.scrollWidth, document.body.clientWidth])"
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "screen"})
    assert any(table > body for table, body in browser.execute_script(widths)), "no table wider than the page: " \
                                                                                "the test proves nothing"
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    printed = browser.execute_script(widths)
    assert printed and all(table <= body for table, body in printed), printed


def test_a_request_for_another_host_is_said_once_in_the_dashboards_log(finished_store, tmp_path):
    """A colleague opening the page by the machine's address got "Invalid host header", and the person at the console
    heard nothing (a security trial): the refusal is logged once per host, naming the names answered and
    --allowed-host; the answer to the request stays Starlette's plain 400."""
    store = tmp_path / "seen.db"
    shutil.copy(finished_store, store)
    dashboard = Dashboard(store)
    try:
        for host in ("192.0.2.2:8050", "192.0.2.2:8050", "lab-pc.example"):
            status, body = dashboard.get("/api/campaign", Host=host)
            assert status == 400 and body == b"Invalid host header"
        assert dashboard.get("/api/campaign")[0] == 200
    finally:
        dashboard.process.send_signal(signal.SIGINT)
        _, err = dashboard.process.communicate(timeout=30)
    said = [line for line in err.splitlines() if "refused: the page answers" in line]
    assert len(said) == 2 and "'192.0.2.2:8050'" in said[0] and "'lab-pc.example'" in said[1], err
    assert "127.0.0.1" in said[0] and "--allowed-host NAME" in said[0]
