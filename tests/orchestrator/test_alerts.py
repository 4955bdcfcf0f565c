"""Alerts (`alerts:` in campaign.yaml): a real local HTTP receiver gets exactly one apprise JSON message per
stop; with nobody listening the campaign still ends normally and the failed alert is journalled; alert URLs
(secrets) never appear in output, logs or the journal's public views; bad URLs are refused in one line."""

from __future__ import annotations

import html
import json
import os
import socket
import stat
import threading
import time

import pytest

from labloop.orchestrator.config.campaign import load_campaign
from labloop.orchestrator.journal.store import Journal


def _free_port() -> int:
    """A port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_each_stop_sends_exactly_one_message(tmp_path, labloop, write_campaign, receiver, monkeypatch):
    monkeypatch.setenv("LABLOOP_TEST_HOOK", "hook-secret-a1b2")
    url = f"json://127.0.0.1:{receiver.port}/${{LABLOOP_TEST_HOOK}}"
    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 2}, alerts=[url])
    # every logger at DEBUG: urllib3 logged the path; and a -vv dry run used to fail every CV (the driver timed
    # out reading the emulator's points while logging each byte)
    first = labloop("-vv", "run", campaign_file, "--dry-run")
    assert first.returncode == 0, first.stderr
    assert len(receiver.messages) == 1
    path, message = receiver.messages[0]
    assert path == "/hook-secret-a1b2"  # the ${VAR} was read from the environment at send time
    assert "finished" in message["title"] and "2 experiments done" in message["message"]
    assert message["type"] == "success"  # apprise's type: a destination colours or files it by type

    # already at its budget: says so and runs nothing, so no second "finished" (an operator's trial got one from
    # each such resume, for a campaign that had finished once)
    again = labloop("resume", tmp_path / "tiny.db")
    assert again.returncode == 0 and "already at its budget" in again.stderr, again.stderr
    assert len(receiver.messages) == 1

    with Journal.open(tmp_path / "tiny.db", readonly=True) as journal:
        alerts = [e for e in journal.events() if e.kind.startswith("alert")]
        assert [e.kind for e in alerts] == ["alert"]
        assert all(e.data["delivered"] == 1 for e in alerts)
        assert journal.campaign_info().config["alerts"] == [url]  # the journal keeps the template, not the secret
    public = labloop("log", tmp_path / "tiny.db", "--json").stdout
    for text in (first.stdout + first.stderr, public):  # the port as a URL has it: -vv logs the emulators' hex
        assert "hook-secret" not in text and f":{receiver.port}" not in text  # bytes, where 5 digits can occur


def test_receiver_down_the_campaign_finishes_and_the_failure_is_journalled(tmp_path, labloop, write_campaign):
    port = _free_port()
    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 2},
                                   alerts=[f"json://127.0.0.1:{port}/private-token-zz9"])
    old_hook = f"# the old pager, off: json://user:old-token-qq7@127.0.0.1:{port}/"  # commented out, secret and all
    cluster = "# compute: {scheduler: tcp://10.0.0.5:8786}"  # a scheduler's address, no secret: kept (a newcomer's)
    text = campaign_file.read_text().replace("alerts:", f"{old_hook}\n{cluster}\nalerts:", 1)
    campaign_file.write_text(text)
    result = labloop("-v", "run", campaign_file, "--dry-run")
    assert result.returncode == 0, result.stderr
    with Journal.open(tmp_path / "tiny.db", readonly=True) as journal:
        events = journal.events()
        assert len(journal.experiments(states=("done",))) == 2
    kinds = [e.kind for e in events]
    assert kinds.count("alert_failed") == 1 and "alert" not in kinds
    assert kinds.index("finished") < kinds.index("alert_failed")
    failed = events[kinds.index("alert_failed")]
    assert failed.data["failed"] and failed.data["delivered"] == 0
    assert "private-token" not in failed.message + json.dumps(failed.data)
    assert "private-token" not in result.stdout + result.stderr  # not even at -v
    # nor in the report, whose folder is made to be shared: its copy of the campaign file withholds the URL (a
    # dashboard trial found a webhook's token there), and a re-run of the copy is refused at it in one line
    report = labloop("report", tmp_path / "tiny.db", "-o", tmp_path / "report")
    assert report.returncode == 0, report.stderr
    files = [path for path in (tmp_path / "report").iterdir() if path.suffix != ".png"]
    assert files and all("private-token" not in path.read_text() and "old-token" not in path.read_text()
                         for path in files)
    copy = (tmp_path / "report" / "campaign.yaml").read_text()
    assert copy == text.replace(f"json://127.0.0.1:{port}/private-token-zz9", "alert-url-withheld-by-labloop-report"
                                ).replace(old_hook, "# (a comment holding a URL, withheld by labloop report)")
    page = " ".join((tmp_path / "report" / "index.html").read_text().split())
    assert ("the copy has its 1 alert URL withheld (alert-url-withheld-by-labloop-report) and 1 comment holding a URL "
            "withheld, so its own sha256 differs") in page
    (tmp_path / "copy.yaml").write_text(copy)
    again = labloop("validate", tmp_path / "copy.yaml")
    assert again.returncode == 2 and "alerts[0]" in again.stderr and len(again.stderr.strip().splitlines()) == 1


def test_a_campaign_file_whose_alert_url_cannot_be_withheld_is_not_copied_nor_said_to_be(tmp_path, labloop,
                                                                                           write_campaign):
    """An alert URL written with a YAML escape is not in the file's text as the campaign read it, so no copy is
    written; the page still linked one (with "its 1 alert URL withheld"), and an earlier report's campaign.yaml stayed
    in the folder under that link (a security trial)."""
    port = _free_port()
    campaign_file = write_campaign(tmp_path, budget={"max_experiments": 1}, alerts=["placeholder"])
    escaped = f'"json://127.0.0.1:{port}/\\x61-secret-yy3"'  # YAML reads \x61 as "a"
    campaign_file.write_text(campaign_file.read_text().replace("- placeholder", f"- {escaped}"))
    assert labloop("run", campaign_file, "--dry-run").returncode == 0
    (tmp_path / "report").mkdir()  # an earlier report of another campaign, with its copy
    (tmp_path / "report" / "index.html").write_text("<html><head><title>other: labloop report</title>")
    (tmp_path / "report" / "campaign.yaml").write_text("name: another campaign's\n")
    assert labloop("report", tmp_path / "tiny.db", "-o", tmp_path / "report").returncode == 0
    assert not (tmp_path / "report" / "campaign.yaml").exists()
    page = " ".join((tmp_path / "report" / "index.html").read_text().split())
    assert "is not copied here: an alert URL in it could not be withheld" in page
    assert 'href="campaign.yaml"' not in page and "secret-yy3" not in page


def test_a_password_written_out_in_an_alert_url_is_warned_of_without_showing_it(tmp_path, labloop, write_campaign,
                                                                                monkeypatch):
    """The journal keeps every setting, so a webhook's password written in the campaign file was in the .db for
    whoever is given it, four copies by ``strings``, and nothing said so (a security trial): validate warns at the
    entry, the URL not shown; one read from the environment is said nothing of."""
    campaign_file = write_campaign(tmp_path, alerts=["ntfy://lab-night-shift",
                                                     "json://user:pw-secret-77@127.0.0.1:9/hook",
                                                     "json://127.0.0.1:9/hook?token=tk-secret-88",
                                                     # a token in the path, as most services keep it
                                                     "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ"])
    result = labloop("validate", campaign_file, "--dry-run")
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "written out" in line]
    line = campaign_file.read_text().splitlines().index("- json://user:pw-secret-77@127.0.0.1:9/hook") + 1
    assert said == [f"warning: {campaign_file}:{line}: alerts[1]: holds a password or token written out (and 2 "
                    "more), which the journal keeps with the campaign's settings (so tiny.db is made readable by your "
                    "account alone, but anyone given it reads it): write that part as ${VAR}, read from the "
                    'environment when an alert is sent (docs/dashboard.md, "Alerts")'], result.stderr
    # the umask let every account of the machine read the journal, password and all (a security review)
    with Journal.create(tmp_path / "secret.db", load_campaign(campaign_file)) as journal:
        journal.add_event("note", "a write, which makes the WAL")
        assert {stat.S_IMODE(p.stat().st_mode) for p in tmp_path.glob("secret.db*")} == {0o600}
        assert (tmp_path / "secret.db-wal").is_file()
    assert "pw-secret" not in result.stdout + result.stderr and "tk-secret" not in result.stdout + result.stderr
    assert "TIiajkdnlazkcOXrIdevi7FQ" not in result.stdout + result.stderr
    from_env = write_campaign(tmp_path, name="env", alerts=["ntfy://lab-night-shift",
                                                           "json://user:${LABLOOP_TEST_PW}@127.0.0.1:9/hook"])
    monkeypatch.setenv("LABLOOP_TEST_PW", "pw-secret-99")
    result = labloop("validate", from_env, "--dry-run")
    assert result.returncode == 0 and "written out" not in result.stderr, result.stderr
    umask = os.umask(0o022)
    os.umask(umask)
    with Journal.create(tmp_path / "env.db", load_campaign(from_env)):  # nothing secret in it: as the umask says
        assert stat.S_IMODE((tmp_path / "env.db").stat().st_mode) == 0o666 & ~umask
    # a literal token beside a ${VAR} is written out all the same (a review found ${VAR} anywhere silenced it)
    mixed = write_campaign(tmp_path, name="mixed", alerts=["json://user:${LABLOOP_TEST_PW}@127.0.0.1:9/?token=lit-7"])
    result = labloop("validate", mixed, "--dry-run")
    assert result.returncode == 0 and "alerts[0]: holds a password or token written out" in result.stderr


@pytest.mark.parametrize(("url", "expected"), [
    ("nonsense://abc/secret-path-77", "not a notification URL that apprise knows"),
    ("json://127.0.0.1/${LABLOOP_SURELY_UNSET_VAR}", "environment variable LABLOOP_SURELY_UNSET_VAR is not set"),
])
def test_bad_alert_urls_are_refused_in_one_line_without_echoing_them(tmp_path, labloop, write_campaign, url,
                                                                     expected):
    campaign_file = write_campaign(tmp_path, alerts=[url])
    result = labloop("validate", campaign_file)
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "\n" not in line and "alerts" in line and expected in line
    assert "secret-path" not in line
    assert not (tmp_path / "tiny.db").exists()


SECRET_URL = "json://user:pass-w9x8@127.0.0.1:9/hook?token=tok-v7u6"


#: ``alerts:`` sections as YAML text: every wrong shape of the section and of anything under it, at any depth
WRONG_ALERTS = {
    "mapping": f"{{night: '{SECRET_URL}'}}",  # a mapping where a list belongs
    "text": f"'{SECRET_URL}'",  # one URL, not a list of them
    "number": "5",
    "list-of-mappings": f"[{{url: '{SECRET_URL}'}}]",
    "number-in-list": f"['{SECRET_URL}', 5]",
    "null-in-list": f"['{SECRET_URL}', null]",
    "nested-list": f"[['{SECRET_URL}']]",  # one level too deep
    "deep": f"[{{a: {{b: ['{SECRET_URL}']}}}}]",  # deeper still
    "as-key": f"{{'{SECRET_URL}': night}}",  # the URL as a key
    "key-twice": f"{{'{SECRET_URL}': a, '{SECRET_URL}': b}}",  # the URL as a key written twice
    "key-twice-deep": f"[{{'{SECRET_URL}': a, '{SECRET_URL}': b}}]",
    "tagged-int": f"[!!int '{SECRET_URL}']",  # values YAML cannot build: int() and PyYAML quote them
    "tagged-float": f"[!!float '{SECRET_URL}']",
    "tagged-bool": f"[!!bool '{SECRET_URL}']",
    "tagged-date": f"[!!timestamp '{SECRET_URL}']",
    "as-tag": f"[!{SECRET_URL} x]",  # a URL after '!' is a tag
}


@pytest.mark.parametrize("alerts", list(WRONG_ALERTS.values()), ids=list(WRONG_ALERTS))
def test_an_alerts_section_of_the_wrong_shape_is_refused_without_showing_any_part_of_its_urls(
        tmp_path, labloop, write_campaign, alerts):
    campaign_file = write_campaign(tmp_path, alerts=["ntfy://placeholder"])
    campaign_file.write_text(campaign_file.read_text().split("alerts:")[0] + f"alerts: {alerts}\n")
    for command in (("-vv", "validate", "--all"), ("-vv", "validate"), ("-vv", "run", "--dry-run"), ("-vv", "run")):
        result = labloop(*command[:2], campaign_file, *command[2:])
        assert result.returncode == 2, result.stderr
        said = result.stdout + result.stderr  # -vv: every logger's lines too
        assert "alerts" in said or "YAML syntax error" in said, said
        assert not any(part in said for part in ("json", "user", "pass-w9x8", "tok-v7u6", "127.0.0.1:9")), said
    assert not (tmp_path / "tiny.db").exists()  # nothing journalled


def test_a_changed_alert_url_is_refused_without_showing_either_url(tmp_path, labloop, write_campaign, free_port):
    from labloop.orchestrator.config.campaign import load_campaign

    port = free_port()
    before = [f"json://127.0.0.1:{port}/hook?token=old-token-q7", f"json://user:old-pass-k2@127.0.0.1:{port}/x"]
    campaign = load_campaign(write_campaign(tmp_path, alerts=before))
    Journal.create(campaign.store, campaign).close()
    after = [before[0], f"json://user:new-pass-k3@127.0.0.1:{port}/x"]  # the second differs past 60 characters
    result = labloop("validate", write_campaign(tmp_path, alerts=after), "--dry-run")
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "\n" not in line and "alerts" in line and "changed" in line
    assert not any(secret in line for secret in ("old-token", "old-pass", "new-pass", str(port)))


def test_a_question_left_unanswered_alerts_once_and_one_answered_at_once_not_at_all(tmp_path, write_campaign,
                                                                                     receiver):
    """The manual sample changer's question on a real rig, through the rig's PersonAsk: left unanswered, one
    ``operator_waiting`` alert saying what to do; answered at once (a script's ``yes ''``), none."""
    from labloop.instruments.manual_sampler import ManualSampleChanger
    from labloop.orchestrator.config.campaign import load_campaign
    from labloop.orchestrator.loop.alerts import Alerter
    from labloop.orchestrator.loop.rig import PersonAsk

    campaign = load_campaign(write_campaign(tmp_path))
    alerted = threading.Event()

    def person(_question: str) -> str:  # answers once the alert has reached the receiver
        _wait_until(lambda: receiver.messages)
        alerted.set()
        return ""

    answers = [person, lambda _question: ""]  # then a script answering at once
    asking = PersonAsk(lambda question: answers.pop(0)(question))
    with Journal.create(campaign.store, campaign) as journal:
        ids = journal.record_proposals([_Proposal("CCO")], step=0, planner="random")
        journal.start_experiment(ids[0])
        with Alerter([f"json://127.0.0.1:{receiver.port}/"], journal, campaign.name, asking=asking):
            ManualSampleChanger(ask=asking).load("S0001")
            _wait_until(lambda: any(e.kind == "alert" for e in journal.events()))
            ManualSampleChanger(ask=asking).load("S0002")
        kinds = [e.kind for e in journal.events()]
    assert alerted.is_set() and kinds.count("operator_waiting") == 1 and kinds.count("alert") == 1
    assert len(receiver.messages) == 1
    title, body = receiver.messages[0][1]["title"], receiver.messages[0][1]["message"]
    assert "tiny" in title and "operator waiting" in title
    assert body.startswith(f"experiment {ids[0]}: a person is waited for at the console: Place vial S0001 in line "
                           "with the sample pump, then press Enter")
    assert receiver.messages[0][1]["type"] == "info"


def test_a_real_rigs_rinse_alerts_a_person_waited_for_and_is_no_stalled_instrument(tmp_path, write_campaign,
                                                                                    receiver, monkeypatch):
    """A real rig's rinse asks the operator at the console; it alerted nothing (only the ``manual`` driver's
    instruments did) and the stall watch said it 10 minutes later as a stalled instrument ``cell`` (an operator's
    trial of an unattended week). The run's own wiring (`_with_journal`), a rig whose rinse is a person's (the
    dry run's instruments, the rinse left to the console), the stall floor at 0.5 s: the person answers once
    either an alert or a stall arrives, and it must be the alert, saying what to do and which campaign."""
    from contextlib import ExitStack

    from labloop.orchestrator.cli.run import _with_journal
    from labloop.orchestrator.compose import build_executor, build_rig
    from labloop.orchestrator.config.campaign import load_campaign
    from labloop.orchestrator.loop import stalls
    from labloop.orchestrator.loop.interrupts import Interrupts
    from labloop.orchestrator.loop.rig import Rig
    from labloop.orchestrator.loop.runner import EXIT_OK
    from labloop.surrogate.dataset import read_table

    monkeypatch.setattr(stalls, "STALL_FLOOR_S", 0.5)
    monkeypatch.setattr(stalls, "STALL_FACTOR", 0.0)
    campaign = load_campaign(write_campaign(tmp_path, budget={"max_experiments": 1},
                                            alerts=[f"json://127.0.0.1:{receiver.port}/"]))
    library = read_table(campaign.library.file).smiles
    asked: list[str] = []

    def operator(question: str) -> str:
        asked.append(question)
        with Journal.open(campaign.store, readonly=True) as journal:
            _wait_until(lambda: any(e.kind in ("stalled", "alert") for e in journal.events()))
        return ""

    with build_rig(campaign, dry_run=True, library=library) as emulated, \
            Journal.create(campaign.store, campaign) as journal, Interrupts() as interrupts:
        rig = Rig(emulated.instruments, closer=ExitStack(), ask=operator)  # the rinse asks a person
        code = _with_journal(campaign, journal, rig, build_executor(campaign, rig), library, False, interrupts, None)
        events = journal.events()
    assert code == EXIT_OK and asked == ["Rinse the cell, then press Enter: "]
    assert not [e.message for e in events if e.kind == "stalled"]
    waiting = [e for e in events if e.kind == "operator_waiting"]
    assert len(waiting) == 1 and waiting[0].message.endswith(
        "a person is waited for at the console: Rinse the cell, then press Enter")
    title, body = receiver.messages[0][1]["title"], receiver.messages[0][1]["message"]
    assert title == "labloop tiny: operator waiting" and "Rinse the cell, then press Enter" in body


class _Proposal:
    def __init__(self, smiles: str) -> None:
        self.smiles, self.conditions, self.mu, self.sigma, self.acquisition = smiles, {}, None, None, None


def _wait_until(predicate) -> None:
    deadline = time.monotonic() + 120
    while not predicate():
        assert time.monotonic() < deadline, "nothing happened in 120 s"
        time.sleep(0.05)


class _UnstoppablePotentiostat:
    """A plug-in potentiostat (the one fault a test injects): its second cv raises, and its abort cannot switch
    the cell off (the port is gone)."""

    def __init__(self, inner: object) -> None:
        self.inner, self.calls = inner, 0

    def run_cv(self, params: object) -> object:
        self.calls += 1
        if self.calls == 2:
            raise OSError("port closed")
        return self.inner.run_cv(params)  # type: ignore[attr-defined]

    def abort(self) -> None:
        raise OSError("port closed: cell not switched off")

    def close(self) -> None:
        self.inner.close()  # type: ignore[attr-defined]


def test_a_rig_not_made_safe_after_a_failure_stops_the_run_and_is_journalled_shown_and_alerted(
        tmp_path, labloop, write_campaign, receiver, monkeypatch):
    """A failure whose make-safe failed said "NOT made safe" on the console only (then journalled, alerted and
    shown), and the run went on: the next sample was loaded and dispensed into a cell a pump might still be
    filling. Now the run stops there (exit 1) with one ``stopped`` event naming the instrument and the advice, one
    alert titled as the rig left unsafe, kept in view by the log and heading the report; the failed experiment's
    liquid is not rinsed (the rinse pumps too), so the advice asks for the cell to be emptied. The alert leads with
    the stop, the instrument and what to do, within what a phone's lock screen shows (its body was the message, then
    the advice: 700-800 characters, the exception first, an operator's trial), then the message and where the
    journal has it all; its URL, a secret, is nowhere in it."""
    from labloop.orchestrator.compose import build_executor, build_rig
    from labloop.orchestrator.config.campaign import load_campaign
    from labloop.orchestrator.loop.alerts import Alerter
    from labloop.orchestrator.loop.interrupts import Interrupts
    from labloop.orchestrator.loop.runner import EXIT_FAULTS, Runner
    from labloop.surrogate.dataset import read_table

    campaign = load_campaign(write_campaign(tmp_path, budget={"max_experiments": 3}))
    library = read_table(campaign.library.file).smiles
    with build_rig(campaign, dry_run=True, library=library) as rig, \
            Journal.create(campaign.store, campaign) as journal, Interrupts() as interrupts:
        rig.instruments["potentiostat"] = _UnstoppablePotentiostat(rig.instruments["potentiostat"])
        monkeypatch.setenv("LABLOOP_TEST_HOOK", "hook-secret-c3d4")
        with Alerter([f"json://127.0.0.1:{receiver.port}/${{LABLOOP_TEST_HOOK}}"], journal, campaign.name):
            code = Runner(campaign, journal, rig, build_executor(campaign, rig), library, None, interrupts).run()
        rig.instruments.pop("potentiostat")  # closing the rig would make it safe again: not what is tested
        [stopped] = [e for e in journal.events() if e.kind == "stopped"]
        [failed] = journal.experiments(states=("failed",))
        later = [e for e in journal.experiments() if e.id > failed.id]
        assert all(journal.actions(e.id) == [] for e in later)  # no sample loaded after the failure
        assert "rinse" not in [a.command for a in journal.actions(failed.id)]
    assert code == EXIT_FAULTS
    assert stopped.message.startswith(f"NOT made safe after experiment {failed.id} failed: potentiostat: OSError: "
                                      "port closed: cell not switched off")
    assert stopped.data["unsafe"] == ["potentiostat: OSError: port closed: cell not switched off"]
    assert stopped.data["advice"] == (f"check potentiostat at the instrument (a pump may still be pumping, a cell "
                                      f"still be on), empty the cell (it holds 5 mL by labloop's count), then "
                                      f"`labloop resume {campaign.store} --cell-emptied`")
    bodies = [(m["type"], m["title"], m["message"]) for _, m in receiver.messages]
    assert len(bodies) == 1  # one stop, one alert
    [(kind, title, body)] = bodies
    assert (kind, title) == ("failure", f"labloop {campaign.name}: stopped, rig unsafe")
    lead = (f"Stopped after experiment {failed.id} failed; potentiostat NOT made safe. To do: check "
            "potentiostat at the instrument (a pump may still be pumping, a cell still be on)")
    assert body.startswith(lead) and len(lead) <= 160  # what a lock screen shows
    assert body == (f"Stopped after experiment {failed.id} failed; potentiostat NOT made safe. To do: "
                    f"{stopped.data['advice']}\n\nWhat happened: {stopped.message}\n\n"
                    f"All of it: labloop log {campaign.store} (on {socket.gethostname()})")  # the advice first
    assert "hook-secret" not in body and "json://" not in body and str(receiver.port) not in body
    shown = labloop("log", campaign.store).stdout  # however many events came after it
    assert "NOT made safe" in " ".join(shown.split())
    assert labloop("report", campaign.store, "--output", tmp_path / "report").returncode == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert "rig NOT made safe" in page and html.escape(stopped.data["advice"]) in page


def test_an_unsafe_finish_alerts_what_to_do_first_and_every_failure_it_names(tmp_path):
    """A campaign that finished with an instrument not made safe alerted "campaign finished: 2 experiments done
    (...)" alone: which instrument, why and what to do were in the event's data and the title's "rig unsafe" only.
    Its alert now leads with them, as the stop's does, and names each failure."""
    from labloop.orchestrator.journal.store import Event
    from labloop.orchestrator.loop.alerts import _body

    unsafe = ["potentiostat: RuntimeError: abort failed", "analyte_pump: InstrumentTimeout: no answer in 10 s"]
    event = Event(7, "2026-12-05T10:00:00+00:00", "finished", "campaign finished: 2 experiments done "
                  "(budget.max_experiments)", None, {"unsafe": unsafe})
    store = tmp_path / "lab runs" / "x.db"
    assert _body(event, store) == (
        "Finished; potentiostat and analyte_pump NOT made safe. To do: check them at the instruments now "
        "(a pump may still be pumping, a cell still be on)\n\nWhat happened: campaign finished: 2 experiments done "
        "(budget.max_experiments); NOT made safe: potentiostat: RuntimeError: abort failed; analyte_pump: "
        f"InstrumentTimeout: no answer in 10 s\n\nAll of it: labloop log '{store}' (on {socket.gethostname()})")
    safe = Event(8, event.time, "finished", event.message, None, None)
    assert _body(safe, store) == f"{event.message}\n\nAll of it: labloop log '{store}' (on {socket.gethostname()})"


def test_one_ctrl_c_alerts_once_and_its_advice_still_says_the_cell_holds_liquid(tmp_path, write_campaign, receiver,
                                                                               capsys):
    """One stop sent two alerts (the run's ``interrupted`` and one per experiment it interrupted), and the alert
    event, journalled after the stop's, hid the cell's liquid from the "continue with:" line (no --cell-emptied).
    The experiment runs again from its first step on resume, onto whatever is left, so the stop says what the cell
    holds by labloop's count (a Ctrl-C once said only "instruments in a safe state"). A real SIGINT to this
    process, sent while the manual sample changer asks for the vial after the electrolyte went in."""
    import os
    import signal

    from labloop.instruments.manual_sampler import ManualSampleChanger
    from labloop.orchestrator.cli.run import _resume_after_interrupt
    from labloop.orchestrator.compose import build_executor, build_rig
    from labloop.orchestrator.config.campaign import load_campaign
    from labloop.orchestrator.loop.alerts import Alerter
    from labloop.orchestrator.loop.interrupts import EXIT_INTERRUPTED, Interrupts
    from labloop.orchestrator.loop.runner import Runner
    from labloop.surrogate.dataset import read_table

    def ctrl_c(_question: str) -> str:
        os.kill(os.getpid(), signal.SIGINT)
        return ""

    electrolyte_first = [{"dispense": {"pump": "electrolyte_pump", "volume_ml": 4.5, "rate_ml_min": 5.0,
                                       "fluid": "electrolyte", "refill": True}},
                         "load_sample", {"cv": {"e_begin_v": -0.8, "e_vertex1_v": 1.95, "e_vertex2_v": -0.8}},
                         "rinse"]
    campaign = load_campaign(write_campaign(tmp_path, protocol=electrolyte_first))
    library = read_table(campaign.library.file).smiles
    with build_rig(campaign, dry_run=True, library=library) as rig, \
            Journal.create(campaign.store, campaign) as journal, Interrupts() as interrupts:
        rig.instruments["sampler"] = ManualSampleChanger.open(ask=ctrl_c)
        capsys.readouterr()
        with Alerter([f"json://127.0.0.1:{receiver.port}/"], journal, campaign.name):
            runner = Runner(campaign, journal, rig, build_executor(campaign, rig), library, None, interrupts)
            assert runner.run() == EXIT_INTERRUPTED
        [interrupted] = journal.experiments(states=("interrupted",))
        assert journal.events()[-1].kind == "alert"
        said = (f"the cell still holds 4.5 mL by labloop's count: empty it, then `labloop resume {campaign.store} "
                "--cell-emptied`")
        err = capsys.readouterr().err
        assert said in err
        # which experiment runs again, on the console too (an operator's trial: only the journal said it)
        # and what the stop cut short (the line began "instruments in a safe state": a plug-in engineer's trial)
        assert (f"stopped by SIGINT during sampler (load_sample) of experiment {interrupted.id}: instruments in a safe "
                f"state; experiment {interrupted.id} will run again on resume; the cell") in err
        stop = next(e for e in reversed(journal.events()) if e.kind == "interrupted")
        assert said in stop.message and stop.data["cell_ml"] == 4.5
    assert len(receiver.messages) == 1
    message = receiver.messages[0][1]["message"]
    assert receiver.messages[0][1]["type"] == "warning"
    assert f"experiment {interrupted.id} will run again on resume" in message and "holds 4.5 mL" in message
    assert _resume_after_interrupt(campaign.store, None) == (f"empty the cell, then labloop resume {campaign.store} "
                                                        "--cell-emptied")


def test_every_alert_names_the_journals_absolute_path_and_host_also_after_a_relative_resume(
        tmp_path, labloop, write_campaign, receiver, monkeypatch):
    """Alerts were titled by the campaign's name alone: several journals of one campaign were indistinguishable, a
    plain stop's alert said no path or host, and after `labloop resume runs/x.db` its advice said `labloop resume
    runs/x.db ...`, useless on a phone (an operator's trial). Each alert ends with the journal's absolute path and
    the host, and a relative resume's advice names the absolute path; the URL is in no alert. A cv window where no
    molecule has a wave (2.4-2.7 V vs Li/Li+): each run stops at its first unusable voltammogram."""
    protocol = ["load_sample", {"dispense": {"pump": "analyte_pump", "volume_ml": 0.5, "rate_ml_min": 0.5,
                                             "fluid": "sample", "refill": True}},
                {"dispense": {"pump": "electrolyte_pump", "volume_ml": 4.5, "rate_ml_min": 5.0,
                              "fluid": "electrolyte", "refill": True}},
                {"cv": {"e_begin_v": -0.8, "e_vertex1_v": -0.5, "e_vertex2_v": -0.8}}, "rinse"]
    folder = tmp_path / "runs"
    folder.mkdir()
    campaign_file = write_campaign(folder, protocol=protocol, budget={"max_experiments": 4,
                                                                      "max_consecutive_failed_analyses": 1},
                                   objective={"quantity": "oxidation_potential", "goal": "window",
                                              "window_v": [2.5, 2.6]},
                                   alerts=[f"json://127.0.0.1:{receiver.port}/"])
    assert labloop("run", campaign_file, "--dry-run").returncode == 1
    monkeypatch.chdir(tmp_path)
    assert labloop("resume", "runs/tiny.db").returncode == 1
    store = (folder / "tiny.db").resolve()
    assert len(receiver.messages) == 2
    for _, message in receiver.messages:
        body = message["message"]
        assert "unusable voltammograms" in body and "runs/tiny.db" in body
        assert body.endswith(f"\n\nAll of it: labloop log {store} (on {socket.gethostname()})"), body
        assert "`labloop log runs/tiny.db`" not in body and "resume runs/tiny.db" not in body
        assert f"`labloop log {store}`" in body and "json://" not in body and str(receiver.port) not in body
