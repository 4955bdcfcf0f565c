"""Plug-in drivers that break the contract, as a plug-in author's trial wrote them: a class that lacks methods
of its kind's contract (``validate --dry-run`` names the instrument and every missing method; it said
"'analyte_pump' is not a pump" at a protocol step, pointing at the protocol file; the conformance kit's
``open`` check lists them too), and an ``open`` that does not take ``time_scale`` (it was "the driver refused
its options", naming an option nobody wrote)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from labloop.instruments.contracts import SafetyLimits
from labloop.instruments.registry import load_driver
from labloop.sim.conformance import check_driver

from ..conftest import NE1000_PLUGIN

HALF = """
    from labloop.core.errors import ConfigError
    from labloop.instruments.ne1000 import NE1000Pump
    from labloop.instruments.registry import DriverDescriptor

    class HalfPump:
        # dispenses through a real NE-1000 driver, but never wrote withdraw(), status() nor close()
        def __init__(self, inner):
            self.inner = inner

        def set_diameter(self, mm):
            self.inner.set_diameter(mm)

        def set_rate(self, value, unit):
            self.inner.set_rate(value, unit)

        def dispense(self, volume_ml, rate_ml_min):
            return self.inner.dispense(volume_ml, rate_ml_min)

        def stop(self):
            self.inner.stop()

    def open_half(port, *, limits, time_scale=1.0, address=0, diameter_mm=None):
        return HalfPump(NE1000Pump.open(port, address, limits=limits, time_scale=time_scale,
                                        diameter_mm=diameter_mm, poll_s=0.0))

    HALF = DriverDescriptor(name="half-pump", kind="pump", open=open_half, default_baudrate=19200,
                            options=("address", "diameter_mm"))

    def open_untimed(port, *, limits, address=0, diameter_mm=None):
        return NE1000Pump.open(port, address, limits=limits, diameter_mm=diameter_mm, poll_s=0.0)

    UNTIMED = DriverDescriptor(name="untimed-pump", kind="pump", open=open_untimed, default_baudrate=19200,
                               options=("address", "diameter_mm"))

    def open_boom(port, *, limits, time_scale=1.0, address=0, diameter_mm=None):
        if address == 0:
            raise RuntimeError("boom in open")  # the driver's own failure, whatever the options
        if address == 2:
            raise ConfigError("address", "2 is the electrolyte pump's")  # an option value it refuses, saying so
        raise ValueError(f"address {address}: bad thing in __init__")  # a bad option value, or a bug: who knows

    BOOM = DriverDescriptor(name="boom-pump", kind="pump", open=open_boom, default_baudrate=19200,
                            options=("address", "diameter_mm"))

    class ExitingPump(NE1000Pump):
        # a stop() that calls sys.exit, and a close() that raises once the device is closed
        def stop(self):
            raise SystemExit(3)

        def close(self):
            super().close()
            raise RuntimeError("close failed")

    def open_exiting(port, *, limits, time_scale=1.0, address=0, diameter_mm=None):
        return ExitingPump.open(port, address, limits=limits, time_scale=time_scale, diameter_mm=diameter_mm,
                                poll_s=0.0)

    EXITING = DriverDescriptor(name="exiting-pump", kind="pump", open=open_exiting, default_baudrate=19200,
                               options=("address", "diameter_mm"))

    def fussy_emulator(context, *, address=0):
        raise ValueError(f"address {address}: bad thing in the emulator")

    # a driver that opens as the NE-1000 does, with an emulator that raises (fussy_emulator)
    FUSSY = DriverDescriptor(name="fussy-pump", kind="pump", open=open_exiting, default_baudrate=19200,
                             options=("address", "diameter_mm"))
    """


@pytest.fixture
def half_pump(install_plugin) -> None:
    """Installed plug-ins ``half-pump`` and ``untimed-pump``, with the NE-1000's emulator."""
    install_plugin("half_pump", HALF, {"half-pump": "HALF", "untimed-pump": "UNTIMED", "boom-pump": "BOOM",
                                       "exiting-pump": "EXITING"})


@pytest.mark.usefixtures("half_pump")
def _rig(driver: str, address: int = 0) -> dict:
    """The example's rig with the analyte pump on ``driver`` at ``address``."""
    return {"sampler": {"driver": "sim-sampler"},
            "analyte_pump": {"driver": driver, "options": {"address": address, "diameter_mm": 4.61}},
            "electrolyte_pump": {"driver": "ne1000", "options": {"address": 1, "diameter_mm": 14.57}},
            "potentiostat": {"driver": "emstat"}}


@pytest.mark.usefixtures("half_pump")
def test_an_open_without_time_scale_is_the_drivers_to_fix(tmp_path, labloop, write_campaign) -> None:
    assert _dry_run_refusal(labloop, write_campaign, tmp_path, "untimed-pump") == (
        "driver 'untimed-pump': its open() must take time_scale=, which labloop passes (the emulator's time scale, to "
        "a pump or potentiostat in a dry run; docs/drivers.md, What open() receives)")


def _line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), start=1) if text in line)


def _at_pump(path: Path) -> str:
    """How an error about the analyte pump of campaign file ``path`` begins: its file, line and field."""
    return f"error: {path}:{_line_of(path, 'analyte_pump:')}: instruments.analyte_pump: "


def _dry_run_refusal(labloop, write_campaign, folder: Path, driver: str, address: int = 0) -> str:
    """What ``validate --dry-run`` of the example's rig with ``driver`` as its analyte pump says after the pump's
    place (:func:`_at_pump`), once it has refused it (exit 2, one line)."""
    campaign_file = write_campaign(folder, instruments=_rig(driver, address))
    result = labloop("validate", campaign_file, "--dry-run")
    assert result.returncode == 2, result
    said = result.stderr.strip()
    assert said.startswith(_at_pump(campaign_file)), said
    return said.removeprefix(_at_pump(campaign_file))


#: a plug-in pump whose fault shows before anything opens: an open() that takes no limits=
UNOPENABLE = """
    from labloop.instruments.ne1000 import NE1000Pump
    from labloop.instruments.registry import DriverDescriptor

    def open_unlimited(port, *, address=0, diameter_mm=None, time_scale=1.0):
        return NE1000Pump.open(port, address, diameter_mm=diameter_mm)

    UNLIMITED = DriverDescriptor(name="unlimited-pump", kind="pump", open=open_unlimited, default_baudrate=19200,
                                 options=("address", "diameter_mm"))
    """


def test_an_open_without_limits_is_refused_by_validate_without_opening_it(tmp_path, labloop, write_campaign,
                                                                          install_plugin) -> None:
    """``validate`` without ``--dry-run`` opens nothing, and passed an open() without limits=, which ``run`` then
    refused (a plug-in author's trial): it is known from the descriptor, and said at the instrument's line."""
    install_plugin("unopenable_pump", UNOPENABLE, {"unlimited-pump": "UNLIMITED"})
    campaign_file = write_campaign(tmp_path, instruments=_rig("unlimited-pump"))
    result = labloop("validate", campaign_file, "--all")  # a real run's check: the sim-sampler is refused too
    assert result.returncode == 2
    assert _at_pump(campaign_file) + (
        "driver 'unlimited-pump': its open() must take limits=, which labloop passes (the campaign's safety limits, "
        "to every pump and potentiostat; docs/drivers.md, What open() receives)") in result.stderr.splitlines(), \
        result.stderr


@pytest.mark.usefixtures("half_pump")
def test_a_driver_lacking_contract_methods_is_named_with_what_it_lacks(tmp_path, labloop, write_campaign) -> None:
    assert _dry_run_refusal(labloop, write_campaign, tmp_path, "half-pump") == (
        "driver 'half-pump' is registered as a pump, but its HalfPump lacks withdraw, status, close (docs/drivers.md: "
        "the contracts)")
    report = check_driver(load_driver("half-pump").descriptor)
    assert not report.passed
    assert report.checks[0].name == "open" and report.checks[0].detail == (  # as the rig says it
        "driver 'half-pump' is registered as a pump, but its HalfPump lacks withdraw, status, close (docs/drivers.md: "
        "the contracts)")


@pytest.mark.usefixtures("half_pump")
def test_an_open_that_fails_is_not_said_to_refuse_its_options(tmp_path, labloop, write_campaign) -> None:
    """A RuntimeError in a plug-in's open() was "unexpected RuntimeError ... (a labloop bug)" and the newcomer saw
    every failure of theirs as "the driver refused its options": only an InputError is an options refusal; a
    ValueError or TypeError may be an option or a bug in the driver (a ValueError from a bug in __init__ was "the
    driver refused its options: bad thing in __init__"), and is said as either; anything else is the driver
    failing to open, with its type, in one line."""
    assert _dry_run_refusal(labloop, write_campaign, tmp_path, "boom-pump") == (  # as drivers.md promises
        "the driver failed to open: RuntimeError: boom in open (run with -v for the traceback)")
    assert _dry_run_refusal(labloop, write_campaign, tmp_path, "boom-pump", address=2) == (
        "the driver refused its options: address: 2 is the electrolyte pump's")
    assert _dry_run_refusal(labloop, write_campaign, tmp_path, "boom-pump", address=3) == (
        "the driver's open() raised ValueError: address 3: bad thing in __init__: its options, or a bug in the driver "
        "(run with -v for the traceback)")


def test_an_emulator_that_raises_is_not_said_to_be_the_driver_refusing_its_options(
        tmp_path, labloop, write_campaign, install_plugin) -> None:
    """The same for a plug-in's emulator: its ValueError was "the driver refused its options"."""
    install_plugin("fussy_pump", HALF, {"fussy-pump": "FUSSY"}, emulator="fussy_pump:fussy_emulator")
    assert _dry_run_refusal(labloop, write_campaign, tmp_path, "fussy-pump", address=4) == (
        "the emulator of driver 'fussy-pump' raised ValueError: address 4: bad thing in the emulator: its options, or "
        "a bug in the emulator (run with -v for the traceback)")


@pytest.mark.usefixtures("half_pump")
def test_the_kit_reports_a_driver_that_exits_or_fails_to_close_and_says_each_check_as_it_ends(labloop) -> None:
    """The kit broke on the driver bugs it exists to find (a plug-in engineer's trial): a SystemExit ended it in
    silence, exit 3; a close() that raised replaced the whole report with "a labloop bug"; and it printed nothing
    until every check had run, so a driver whose call hangs showed nothing at all. Each is a failed check now, and
    each check's line is told as it ends."""
    told = []
    report = check_driver(load_driver("exiting-pump").descriptor, on_check=told.append)
    assert told == list(report.checks)  # every check, as it ended, in order
    failed = {c.name: c.detail for c in report.checks if not c.passed}
    assert any(detail == "untyped exception SystemExit: 3" for detail in failed.values()), failed
    assert failed["close at the end"] == "untyped exception RuntimeError: close failed"
    result = labloop("drivers", "check", "exiting-pump")
    assert result.returncode == 1 and "labloop bug" not in result.stderr + result.stdout, result
    assert result.stdout.strip().splitlines()[-1].startswith("exiting-pump on ")
    assert "FAIL  close at the end" in result.stdout


CARELESS = """
    from dataclasses import replace

    from labloop.instruments.emstat import EmStatPotentiostat
    from labloop.instruments.ne1000 import NE1000Pump
    from labloop.instruments.registry import DriverDescriptor

    class DispenseOnlyPump(NE1000Pump):
        # checks every dispense, but withdraws as if its syringe and rate had no limit (a plug-in author's trial)
        def withdraw(self, volume_ml, rate_ml_min):
            careful = self.limits
            self.limits = replace(careful, syringe_ml=1e6, max_rate_ml_min=1e6)
            try:
                return super().withdraw(volume_ml, rate_ml_min)
            finally:
                self.limits = careful

    def open_pump(port, *, limits, time_scale=1.0, address=0, diameter_mm=None):
        return DispenseOnlyPump.open(port, address, limits=limits, time_scale=time_scale, diameter_mm=diameter_mm,
                                     poll_s=0.0)

    DISPENSE_ONLY = DriverDescriptor(name="dispense-only-pump", kind="pump", open=open_pump, default_baudrate=19200,
                                     options=("address", "diameter_mm"))

    class VertexOneStat(EmStatPotentiostat):
        # checks e_vertex1_v alone of the potentials a CV gives (e_begin_v, e_vertex1_v, e_vertex2_v)
        def _check_potentials(self, *potentials_v):
            super()._check_potentials(potentials_v[1])

    VERTEX_ONE = DriverDescriptor(name="vertex-one-stat", kind="potentiostat", open=VertexOneStat.open,
                                  default_baudrate=230400, options=("reference",))

    class CvOnlyStat(EmStatPotentiostat):
        # checks every CV, but sweeps impedance as if the window were unlimited
        def run_eis(self, params):
            careful = self.limits
            self.limits = replace(careful, potential_window_v=(-9.0, 9.0))
            try:
                return super().run_eis(params)
            finally:
                self.limits = careful

    CV_ONLY = DriverDescriptor(name="cv-only-stat", kind="potentiostat", open=CvOnlyStat.open,
                               default_baudrate=230400, options=("reference",))
    """


def test_the_kit_names_each_unsafe_request_a_careless_driver_does_not_refuse(install_plugin, labloop) -> None:
    """The kit asked a pump for an over-limit dispense only, and a potentiostat for its first vertex beyond the
    window only: a driver checking dispense but not withdraw, or e_vertex1_v alone, "conformed", then sent
    ``PULL 5.0`` onto a full syringe and a scan to -3 V (a plug-in author's trial). Every unsafe request the
    contract says a driver refuses is asked now, and each one accepted is named."""
    install_plugin("careless_drivers", CARELESS, {"dispense-only-pump": "DISPENSE_ONLY"})
    install_plugin("careless_stat", CARELESS,
                   {"vertex-one-stat": "VERTEX_ONE", "cv-only-stat": "CV_ONLY"},
                   emulator="labloop.sim.builtin_emulators:emstat_emulator")
    result = labloop("drivers", "check", "dispense-only-pump")
    assert result.returncode == 1, result
    refusals = next(line for line in result.stdout.splitlines() if "refuses unsafe input" in line)
    assert refusals.startswith("FAIL") and "2 of 8 unsafe requests not refused as due" in refusals, refusals
    assert ("withdraw(0.51 mL) onto the 9.99 mL the syringe holds, overfilling its 10 mL: accepted" in refusals
            and "a withdrawal at 100 mL/min, over the 50 mL/min limit" in refusals), refusals
    assert "dispense(" not in refusals.split("refused as due: ", 1)[1]  # every dispense was refused

    report = check_driver("vertex-one-stat")
    failed = {c.name: c.detail for c in report.checks if not c.passed}
    assert list(failed) == ["refuses unsafe input, sends nothing"], report.lines()
    assert failed["refuses unsafe input, sends nothing"] == (
        "2 of 6 unsafe requests not refused as due: a CV with e_vertex2_v 1.5 V, above the -1..1 V window: accepted; "
        "a CV with e_vertex2_v -1.5 V, below the -1..1 V window: accepted")
    assert "does NOT conform (1 of" in report.verdict()
    # a potentiostat that can sweep impedance holds an EIS's DC potential to the window too
    refusals = next(c for c in check_driver("cv-only-stat").checks if c.name == "refuses unsafe input, sends nothing")
    assert refusals.detail.startswith("2 of 6 unsafe requests not refused as due: an EIS at e_dc_v 1.5 V, above "
                                      "the -1..1 V window: "), refusals.detail
    assert "an EIS at e_dc_v -1.5 V, below the -1..1 V window: " in refusals.detail


MISREADING = """
    from dataclasses import replace

    import numpy as np

    from labloop.instruments.emstat import EmStatPotentiostat
    from labloop.instruments.registry import DriverDescriptor

    class MicroampStat(EmStatPotentiostat):
        # reads its currents in uA and labels them A (a plug-in author's trial: 43 A)
        def run_cv_series(self, series):
            return [replace(v, current_a=v.current_a * 1e6) for v in super().run_cv_series(series)]

    class NanStat(EmStatPotentiostat):
        # writes a NaN into a built voltammogram's currents (Voltammogram refuses one given to it)
        def run_cv_series(self, series):
            scans = super().run_cv_series(series)
            for v in scans:
                object.__setattr__(v, "current_a", np.where(np.arange(len(v)) == 5, np.nan, v.current_a))
            return scans

    class SignStat(EmStatPotentiostat):
        # reports anodic current negative, against IUPAC
        def run_cv_series(self, series):
            return [replace(v, current_a=-v.current_a) for v in super().run_cv_series(series)]

    class BackwardsRangeStat(EmStatPotentiostat):
        # says its model applies (2.0, -2.0) V, the pair the wrong way round, and checks the window alone
        def _identify_once(self):
            firmware = super()._identify_once()
            self.potential_range_v = (2.0, -2.0)
            return firmware

        def _check_potentials(self, *potentials_v):
            self.limits.check_potentials(*potentials_v, where=self.where)

    def descriptor(name, cls):
        return DriverDescriptor(name=name, kind="potentiostat", open=cls.open, default_baudrate=230400,
                                options=("reference",))

    MICROAMP = descriptor("microamp-stat", MicroampStat)
    NAN = descriptor("nan-stat", NanStat)
    SIGN = descriptor("sign-stat", SignStat)
    BACKWARDS = descriptor("backwards-range-stat", BackwardsRangeStat)
    """


@pytest.mark.parametrize(("name", "check", "says"), [
    ("microamp-stat", "short CV", "WrongReturn: microamp-stat: its driver's run_cv returned currents up to "),
    ("nan-stat", "short CV", "WrongReturn: nan-stat: its driver's run_cv returned a scan holding NaN or infinite "
                             "values: not analysed"),
    ("backwards-range-stat", "potential_range_v", "WrongReturn: backwards-range-stat: its driver's potential_range_v "
                                                  "returned (2.0, -2.0), not None or a (low, high) pair of numbers, "
                                                  "low below high"),
    ("sign-stat", "short CV", "anodic current negative: the sign convention is reversed (docs/drivers.md): the "
                              "anodic sweep over the emulator's couple at 0 V peaks at -"),
])
def test_the_kit_fails_a_driver_whose_answers_a_run_rejects(install_plugin, labloop, name, check, says) -> None:
    """The kit said "conforms" (exit 0) for a driver whose short CV returned currents of 43 A (uA labelled A), one
    holding a NaN point, one whose potential_range_v was (2.0, -2.0) (each failed every experiment of a run as
    WrongReturn, or refused the run at open), and one reporting anodic current negative (every experiment failed
    no_peak, blamed on the molecules): a plug-in author's trial. The kit now applies the run's own checks
    (instruments/voltammogram.py returned_scan, instruments/contracts.py returned_range) and the IUPAC sign on its
    emulator's couple, and fails the check saying what was wrong."""
    install_plugin("misreading_stats", MISREADING, {"microamp-stat": "MICROAMP", "nan-stat": "NAN",
                                                    "sign-stat": "SIGN", "backwards-range-stat": "BACKWARDS"},
                   emulator="labloop.sim.builtin_emulators:emstat_emulator")
    result = labloop("drivers", "check", name)
    assert result.returncode == 1, result
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1 and failed[0].startswith(f"FAIL  {check} ") and says in failed[0], result.stdout
    assert result.stdout.strip().splitlines()[-1].endswith("does NOT conform (1 of 9 checks failed)")


def test_the_kit_reads_a_drivers_potential_range_and_the_sign_of_its_anodic_peak() -> None:
    """A conforming potentiostat's report says the range it can apply and the anodic peak's current, positive."""
    report = check_driver("emstat")
    said = {c.name: c.detail for c in report.checks}
    assert said["potential_range_v"] == "-1.7..2 V", said  # the emulated EmStat Pico's
    assert ", anodic peak +" in said["short CV"] and report.passed, report.lines()


def test_a_driver_without_an_emulator_is_not_said_to_refuse_its_options(tmp_path, labloop, write_campaign,
                                                                         install_plugin) -> None:
    """A dry run of a rig whose plug-in driver has no emulator registered said "the driver refused its options:
    driver 'voltix-noemu': has no emulator (...)", where nothing was wrong with the options (a plug-in author's
    trial): it says the dry run needs an emulator for it, and where to read how to register one."""
    install_plugin("bare_pump", HALF, {"half-pump": "HALF"}, emulator=None)
    assert _dry_run_refusal(labloop, write_campaign, tmp_path, "half-pump") == (
        "driver 'half-pump' has no emulator, which a dry run needs for every instrument: register one under "
        "'labloop.emulators' (docs/drivers.md, Registering an emulator)")


def test_the_kit_says_what_open_must_take_as_the_rig_does(install_plugin) -> None:
    """The conformance kit said "untyped exception TypeError: ... unexpected keyword argument 'limits'" of an open()
    without limits=, where the rig names the keyword and why (a plug-in author's trial): the kit says it as the rig
    does, and opens nothing."""
    install_plugin("unopenable_pump", UNOPENABLE, {"unlimited-pump": "UNLIMITED"})
    report = check_driver(load_driver("unlimited-pump").descriptor)
    assert not report.passed and [c.name for c in report.checks][:1] == ["open"]
    assert report.checks[0].detail == ("driver 'unlimited-pump': its open() must take limits=, which labloop passes "
                                       "(the campaign's safety limits, to every pump and potentiostat; "
                                       "docs/drivers.md, What open() receives)")


#: a plug-in pump whose emulator's ``tick`` raises every time (the NE-1000's emulator otherwise)
TICK_BUG = NE1000_PLUGIN.format(cls="TickBug", name="tick-bug", device="""
    class TickBug(NE1000Emulator):
        def tick(self, link):
            raise ValueError("tick bug")
""") + """
    TICKING = DriverDescriptor(name="tick-bug", kind="pump", open=open_pump, default_baudrate=19200,
                               options=("address", "diameter_mm"))
    """


def test_an_emulator_that_raises_fails_the_kit_with_each_error_once(install_plugin) -> None:
    """An emulator raising in every ``tick`` made the kit's ``emulator raised nothing`` detail its error repeated
    thousands of times, over 30 KB on one line (a plug-in author's trial): each error once, with its count."""
    install_plugin("tick_bug", TICK_BUG, {"tick-bug": "TICKING"}, emulator="tick_bug:emulator")
    report = check_driver(load_driver("tick-bug").descriptor)
    [check] = [c for c in report.checks if c.name == "emulator raised nothing"]
    assert not check.passed and not report.passed
    count = re.fullmatch(r"ValueError: tick bug \(x(\d+)\)", check.detail)
    assert count is not None and int(count.group(1)) > 1, check.detail


#: a plug-in pump whose emulator's factory fails as it starts (a bug of its own, no option's fault)
BROKEN_FACTORY = HALF + """
    def broken_emulator(context, *, address=0):
        raise RuntimeError("no cell to fill")
    """


def test_an_emulator_factory_that_fails_is_not_said_to_be_the_driver_refusing_its_options(
        tmp_path, labloop, write_campaign, install_plugin) -> None:
    """An emulator's factory that raised a RuntimeError was said as "the driver refused its options: emulator ...:
    its factory ... failed" (a plug-in author's trial): the emulator's words, with nothing of a refusal."""
    install_plugin("broken_factory", BROKEN_FACTORY, {"fussy-pump": "FUSSY"},
                   emulator="broken_factory:broken_emulator")
    assert _dry_run_refusal(labloop, write_campaign, tmp_path, "fussy-pump") == (
        "the emulator of driver 'fussy-pump': its factory (broken_factory:broken_emulator) failed: RuntimeError: no "
        "cell to fill (a bug in the plug-in's emulator)")


#: two plug-in pumps on the NE-1000 driver: one that rewrites the limits it is given in place (its syringe's content
#: at once, where the campaign allows less), one that keeps every limits it is given in ``SEEN``
REWRITING = """
    from labloop.instruments.ne1000 import NE1000Pump
    from labloop.instruments.registry import DriverDescriptor

    SEEN = []

    def open_rewriting(port, *, limits, time_scale=1.0, address=0, diameter_mm=None):
        object.__setattr__(limits, "max_dispense_ml", limits.syringe_ml)
        return NE1000Pump.open(port, address, limits=limits, time_scale=time_scale, diameter_mm=diameter_mm,
                               poll_s=0.0)

    def open_seeing(port, *, limits, time_scale=1.0, address=0, diameter_mm=None):
        SEEN.append(limits)
        return NE1000Pump.open(port, address, limits=limits, time_scale=time_scale, diameter_mm=diameter_mm,
                               poll_s=0.0)

    REWRITING = DriverDescriptor(name="rewriting-pump", kind="pump", open=open_rewriting, default_baudrate=19200,
                                 options=("address", "diameter_mm"))
    SEEING = DriverDescriptor(name="seeing-pump", kind="pump", open=open_seeing, default_baudrate=19200,
                              options=("address", "diameter_mm"))
    """


def test_a_driver_rewriting_its_limits_changes_them_for_no_later_check(install_plugin) -> None:
    """The kit gave every driver one module-level SafetyLimits: a driver that rewrote the limits it was given
    changed them for every later check in the process (a pytest session checking several plug-ins), and for its own
    check, which then asked it only what its rewritten limits refused (a plug-in driver author's trial). Each driver
    gets its own copy: the rewriting pump fails the 1 mL dispense the kit's 0.5 mL limit forbids, and the next
    driver checked is given the kit's limits."""
    install_plugin("rewriting_pump", REWRITING, {"rewriting-pump": "REWRITING", "seeing-pump": "SEEING"})
    rewriting = check_driver(load_driver("rewriting-pump").descriptor)
    [refusals] = [c for c in rewriting.checks if c.name == "refuses unsafe input, sends nothing"]
    assert not refusals.passed and "dispense(1 mL), over the 0.5 mL limit" in refusals.detail, refusals.detail
    assert check_driver(load_driver("seeing-pump").descriptor).passed
    seen = importlib.import_module("rewriting_pump").SEEN
    assert seen and all(limits == SafetyLimits(max_dispense_ml=0.5, syringe_ml=10.0, potential_window_v=(-1.0, 1.0))
                        for limits in seen), seen


def test_an_open_that_returns_nothing_is_said_so() -> None:
    """An open() without its return was said as "its NoneType lacks run_cv, abort, close" (a plug-in author's
    trial): what the author forgot is the return."""
    from labloop.instruments.contracts import contract_problem

    assert contract_problem(None, "potentiostat", "tristat") == (
        "driver 'tristat' is registered as a potentiostat, but its open() returned None, not the opened potentiostat "
        "(docs/drivers.md: the contracts)")
