"""What ``labloop validate`` (without ``--dry-run``) knows about the instruments without opening a port: every
port value ``run`` refuses at once (an unknown URL scheme, a malformed address, a path that is no serial port,
an ``alt://``/``spy://`` around one, an ``hwgrep://`` that matches none)
and every driver option value the NE-1000 driver refuses, including a flow rate its syringe cannot reach. Each
passed ``validate`` and was refused by ``run``, some in Python's words ("'<=' not supported between ...")."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from labloop.instruments.transport import port_problem
from labloop.sim.pty_device import PtyDevice


class _Silent:
    """A device that never answers: only its pseudo-terminal matters here."""

    def new_framer(self):
        from labloop.sim.pty_device import TerminatorFramer

        return TerminatorFramer(b"\n")

    def handle(self, frame, link) -> None:
        return None

    def tick(self, link) -> None:
        return None


@pytest.mark.parametrize(("port", "says"), [
    ("http://127.0.0.1", "pyserial opens no http:// URL (it opens alt://"),
    ("socket://[::1", "expected socket://HOST:PORT (Invalid IPv6 URL)"),
    ("socket://lab-pc", "expected socket://HOST:PORT, e.g."),
    ("socket://lab-pc:99999", "expected socket://HOST:PORT (Port out of range"),
    ("rfc2217://:4001", "expected rfc2217://HOST:PORT"),
    ("/dev/null", "/dev/null is no serial port (a 'mem' device, not a terminal)"),
    ("/etc/passwd", "/etc/passwd is a file, not a serial port"),
    ("/tmp", "/tmp is a folder, not a serial port"),
    ("/dev/ttyUSB-none", "/dev/ttyUSB-none does not exist (is the device plugged in?"),
    ("/dev/tty", "/dev/tty is the terminal of whichever program opens it, not a serial port"),
    ("alt:///dev/ttyUSB-none?class=PosixPollSerial", "alt:///dev/ttyUSB-none?class=PosixPollSerial: "
                                                    "/dev/ttyUSB-none does not exist"),
    ("alt:///dev/ttyUSB0?class=Nope", "pyserial has no port class 'Nope' here (it has "),
    ("spy://loop://", "spy://loop://: spy:// wraps a device path, e.g. spy:///dev/ttyUSB0"),
    ("spy:///dev/null?file=/tmp", "spy:///dev/null?file=/tmp: file /tmp is a folder"),
    ("spy:///dev/null", "spy:///dev/null: /dev/null is no serial port"),
    ("hwgrep://no-such-device", "hwgrep://no-such-device: 0 serial ports match 'no-such-device', 1 needed"),
    ("hwgrep://(", "'(' is no regular expression"),
    ("hwgrep://tty&n=1", "hwgrep:// takes &n=N (a whole number >= 2) and &skip_busy, not 'n=1'"),
])
def test_ports_no_run_can_open_are_named(port, says):
    assert says in (port_problem(port) or "")


def test_ports_a_run_can_open_pass():
    with PtyDevice(_Silent()) as device:
        assert port_problem(device.port) is None  # a pseudo-terminal, like labloop sim serve's
        for wrapped in (f"spy://{device.port}?raw", f"alt://{device.port}?class=PosixPollSerial"):
            assert port_problem(wrapped) is None, wrapped  # pyserial opens the path they wrap
    for port in ("loop://", "socket://127.0.0.1:4001", "SOCKET://lab-pc:4001", "rfc2217://[::1]:2217"):
        assert port_problem(port) is None, port


def _real(write_campaign, folder: Path, **changes: object) -> Path:
    """The tiny campaign for real instruments (a manual sample changer, ports that a check passes: the pumps on
    ``loop://``, the potentiostat on a TCP serial server), with ``changes`` (``"instruments.x.port": value``)."""
    path = write_campaign(folder)
    campaign = yaml.safe_load(path.read_text())
    rig = campaign["instruments"]
    rig["sampler"] = {"driver": "manual"}
    rig["analyte_pump"]["port"] = rig["electrolyte_pump"]["port"] = "loop://"
    rig["potentiostat"]["port"] = "socket://127.0.0.1:4001"
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        node = campaign
        for part in parents:
            node = node[part]
        node[key] = value
    path.write_text(yaml.safe_dump(campaign, sort_keys=False))
    return path


def _refused(result, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: "), result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


def test_the_real_rig_passes_validate(tmp_path, labloop, write_campaign):
    result = labloop("validate", _real(write_campaign, tmp_path))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("port", ["http://127.0.0.1", "socket://[::1", "/dev/null", "/etc/passwd", "/tmp", "/dev/tty",
                                  "alt:///dev/ttyUSB-none?class=PosixPollSerial", "spy:///dev/ttyUSB-none",
                                  "hwgrep://no-such-device"])
def test_validate_names_the_port_run_would_refuse(tmp_path, labloop, write_campaign, port):
    campaign = _real(write_campaign, tmp_path, **{"instruments.potentiostat.port": port})
    for command in ("validate", "run"):
        _refused(labloop(command, campaign), "tiny.yaml:", "instruments.potentiostat.port: ", port_problem(port))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]


def test_validate_all_lists_every_missing_port(tmp_path, labloop, write_campaign):
    """Three devices unplugged: the one-line error says two more, and --all lists all three (it listed the
    first only, where a misspelt option of each is listed: a plug-in author's trial)."""
    campaign = _real(write_campaign, tmp_path, **{"instruments.analyte_pump.port": "/dev/ttyUSB-gone",
                                                  "instruments.electrolyte_pump.port": "/dev/ttyUSB-gone",
                                                  "instruments.potentiostat.port": "/dev/ttyACM-gone"})
    _refused(labloop("validate", campaign), "instruments.analyte_pump.port: /dev/ttyUSB-gone does not exist",
             "(and 2 more problems in the file: `labloop validate --all` lists every one)")
    every = labloop("validate", campaign, "--all")
    assert every.returncode == 2
    lines = every.stderr.strip().splitlines()
    assert [line.split(": ")[2] for line in lines] == ["instruments.analyte_pump.port",
                                                      "instruments.electrolyte_pump.port",
                                                      "instruments.potentiostat.port"], lines
    assert all("does not exist (is the device plugged in?" in line for line in lines)


@pytest.mark.parametrize(("option", "value", "says"), [
    ("diameter_mm", "big", "options.diameter_mm: must be the syringe's inner diameter, a number of mm in 0.1..80, "
                           "got 'big'"),
    ("diameter_mm", True, "options.diameter_mm: must be the syringe's inner diameter"),
    ("address", 100, "options.address: must be a whole number 0..99, got 100"),
    ("content_ml", "full", "options.content_ml: must be a number >= 0, got 'full'"),
    ("poll_s", -1, "options.poll_s: must be a number >= 0, got -1"),
])
def test_an_option_value_the_driver_refuses_names_the_option(tmp_path, labloop, write_campaign, option, value, says):
    campaign = _real(write_campaign, tmp_path, **{f"instruments.analyte_pump.options.{option}": value})
    for command in (("validate", campaign), ("validate", campaign, "--dry-run")):
        _refused(labloop(*command), "tiny.yaml:", f"instruments.analyte_pump.{says}")


@pytest.mark.parametrize(("content", "says"), [
    (0.3, "cv_screen.yaml:10: protocol[1].dispense.volume_ml: analyte_pump: dispense of 0.5 mL exceeds the 0.3 mL left "
          "in the 10 mL syringe; analyte_pump's syringe starts the campaign with 0.3 mL"),
    # at the option's own line (it pointed at the options line: a plug-in author's trial)
    (12, "instruments.analyte_pump.options.content_ml: its syringe would start with 12 mL, not a volume within its "
         "0..10 mL (safety.syringe_ml)"),
])
def test_what_a_syringe_is_loaded_with_is_judged_by_validate(tmp_path, labloop, write_campaign, content, says):
    """``content_ml`` (what the NE-1000's syringe holds when it opens) was the driver's alone: ``validate`` counted
    the syringe full, passed 0.3 mL under a 0.5 mL dispense, and left 12 mL in a 10 mL syringe to ``run``."""
    campaign = _real(write_campaign, tmp_path, **{"instruments.analyte_pump.options.content_ml": content})
    for command in (("validate", campaign), ("validate", campaign, "--dry-run")):
        _refused(labloop(*command), says)


def test_a_rate_the_syringe_cannot_reach_is_refused_by_validate(tmp_path, labloop, write_campaign):
    """A 1 mm syringe moves at most 0.04 mL/min; the example protocol dispenses the sample at 0.5 mL/min. Only
    the opened pump's rate range was checked, so ``validate`` passed and ``run`` refused."""
    campaign = _real(write_campaign, tmp_path, **{"instruments.analyte_pump.options.diameter_mm": 1.0})
    for command in (("validate", campaign), ("validate", campaign, "--dry-run")):
        _refused(labloop(*command), "cv_screen.yaml:10: protocol[1].dispense: rate 0.5 mL/min is beyond what "
                                    "'analyte_pump' can drive its syringe at, 5.5e-07..0.0401 mL/min")



def test_a_named_pipe_is_named_as_one_and_a_port_this_account_may_not_use_is_refused_before_run(tmp_path):
    """A named pipe was "a file, not a serial port"; a pty of mode 600 owned by another account passed ``validate``
    and ``run`` refused it at open ("Permission denied: ... dialout", a hardware trial): both are judged without
    opening, the permission in a forked process of another account (root may open anything)."""
    import os

    fifo = tmp_path / "ttyFIFO"
    os.mkfifo(fifo)
    assert port_problem(str(fifo)) == (f"{fifo} is a named pipe, not a serial port (a character device, e.g. "
                                       "/dev/ttyUSB0)")
    if os.geteuid() != 0:
        pytest.skip("judging another account's permission needs a process of another account (root's setuid)")
    with PtyDevice(_Silent()) as device:
        os.chmod(device.port, 0o600)
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # the account of nobody, as a user outside the port's group
            try:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                os.write(write, str(port_problem(device.port)).encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as said:
            problem = said.read()
        os.waitpid(child, 0)
    assert problem == (f"{device.port}: Permission denied: this account may not use the port: add it to the port's "
                       "group (dialout on Debian and Ubuntu, uucp on Arch: `sudo usermod -aG dialout $USER`) and log "
                       "in again (docs/hardware.md)")
