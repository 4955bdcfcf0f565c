"""Driver registry (entry points), conformance kit, and the simulated rig pieces it starts."""

from __future__ import annotations

import dataclasses
import math
import shutil
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

from labloop.core.entry_points import group_entry_points
from labloop.core.errors import ConfigError, Disconnected
from labloop.instruments.contracts import SampleChanger
from labloop.instruments.registry import GROUP, DriverDescriptor, DriverKind, driver_names, load_driver, registered_by
from labloop.sim.cell import Cell, Fluid
from labloop.sim.conformance import KIT_LIMITS, check_driver
from labloop.sim.cv_physics import CellParams
from labloop.sim.emulation import DEFAULT_BLANK, Emulation, EmulatorContext
from labloop.sim.emulators import load_emulator, start_emulator
from labloop.sim.ne1000_emulator import NE1000Emulator
from labloop.sim.pty_device import PtyDevice, TimeScale
from labloop.sim.sample_changer import SimSampleChanger

BUILT_IN = {"ne1000": DriverKind.PUMP, "emstat": DriverKind.POTENTIOSTAT, "sim-sampler": DriverKind.SAMPLE_CHANGER,
            "relay-valve": DriverKind.GAS_VALVE}


def install_plugin(root: Path, module: str, source: str, entry_points: dict[str, str]) -> None:
    """A minimal installed distribution in ``root``: a module and a dist-info with its entry points."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    dist_info = root / f"{module.replace('_', '-')}-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
    (dist_info / "entry_points.txt").write_text(f"[{GROUP}]\n{lines}")


def test_built_in_drivers_are_registered_through_entry_points() -> None:
    assert set(BUILT_IN) <= set(driver_names())
    targets = {ep.name: ep.value for ep in metadata.entry_points(group=GROUP)}  # "module:attribute"
    for name, kind in BUILT_IN.items():
        registered = load_driver(name)
        assert registered.descriptor.name == name and registered.descriptor.kind is kind
        attribute = name.upper().replace("-", "_")
        # hardware drivers live in the instrument layer; the simulated-only changer in the simulated world
        home = "labloop.sim.builtin_emulators" if name == "sim-sampler" else "labloop.instruments.builtin_drivers"
        assert targets[name] == f"{home}:{attribute}"
        assert registered.descriptor.simulated_only is (name == "sim-sampler")
    assert load_driver("emstat").descriptor.default_baudrate == 230400
    assert load_driver("ne1000").descriptor.default_baudrate == 19200


def test_an_unknown_driver_is_one_line_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError) as unknown:
        load_driver("picostat")
    message = str(unknown.value)
    assert "\n" not in message and "unknown driver 'picostat'" in message
    assert "emstat, manual, ne1000" in message and "sim-sampler" in message


def test_a_plugin_registers_like_a_built_in_and_broken_ones_are_typed(tmp_path, monkeypatch) -> None:
    install_plugin(tmp_path, "toy_drivers", """
        from labloop.instruments.registry import DriverDescriptor
        from labloop.sim.sample_changer import SimSampleChanger
        TOY = DriverDescriptor(name="toy", kind="sample_changer", open=SimSampleChanger.open, summary="a toy")
        MISNAMED = DriverDescriptor(name="other", kind="pump", open=print)
        NOT_A_DESCRIPTOR = object()
        """, {"toy": "toy_drivers:TOY", "misnamed": "toy_drivers:MISNAMED", "wrong": "toy_drivers:NOT_A_DESCRIPTOR",
              "missing": "no_such_module:X"})
    monkeypatch.syspath_prepend(str(tmp_path))
    assert {"toy", "misnamed", "wrong", "missing"} <= set(driver_names())
    toy = load_driver("toy")
    assert toy.distribution == "toy-drivers" and toy.descriptor.kind is DriverKind.SAMPLE_CHANGER
    changer = toy.descriptor.open("bench", cell=Cell())
    assert isinstance(changer, SampleChanger)
    # which of the two names to change, and where (a plug-in author's trial asked)
    with pytest.raises(ConfigError) as misnamed:
        load_driver("misnamed")
    assert str(misnamed.value) == (
        "labloop.drivers: entry point 'misnamed' (toy_drivers:MISNAMED) describes a driver named 'other': the two must "
        "be equal; change the DriverDescriptor's name to 'misnamed', or the entry point's (and its emulator's) to "
        "'other' in the package's pyproject.toml, then reinstall it (docs/drivers.md, Registering a driver)")
    for name, needle in [("wrong", "is not a DriverDescriptor"),
                         ("missing", "cannot be loaded")]:
        with pytest.raises(ConfigError, match=needle):
            load_driver(name)
        assert registered_by(name) == "toy-drivers"  # the package to fix, known without loading it
    sys.modules.pop("toy_drivers", None)


def test_entry_points_are_read_once_and_again_after_each_install(tmp_path, monkeypatch) -> None:
    """The registries read the installed entry points once (core/entry_points.py: the campaign's checks ask dozens of
    times), and again as soon as a distribution is installed: on a folder already on sys.path, two in a row (within
    one tick of the file system's clock, which the folder's entry count tells apart), and removed."""
    monkeypatch.syspath_prepend(str(tmp_path))
    first = group_entry_points(GROUP)
    assert group_entry_points(GROUP) is first  # nothing installed since: the same read
    descriptor = "from labloop.instruments.registry import DriverDescriptor\nX = DriverDescriptor(name='{}', " \
                 "kind='pump', open=print)\n"
    install_plugin(tmp_path, "first_pump", descriptor.format("first-pump"), {"first-pump": "first_pump:X"})
    install_plugin(tmp_path, "second_pump", descriptor.format("second-pump"), {"second-pump": "second_pump:X"})
    assert {"first-pump", "second-pump"} <= set(driver_names()) and "first-pump" not in {e.name for e in first}
    assert load_driver("second-pump").distribution == "second-pump"
    shutil.rmtree(tmp_path / "first-pump-1.0.dist-info")
    assert "first-pump" not in driver_names() and "second-pump" in driver_names()
    for module in ("first_pump", "second_pump"):
        sys.modules.pop(module, None)


def test_descriptors_validate_themselves() -> None:
    with pytest.raises(ConfigError, match="lower case"):
        DriverDescriptor(name="My Driver", kind="pump", open=print)
    with pytest.raises(ConfigError, match="kind must be one of"):
        DriverDescriptor(name="x", kind="thermostat", open=print)
    with pytest.raises(ConfigError, match="callable"):
        DriverDescriptor(name="x", kind="pump", open="not callable")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"diameter_option must name one of its options \(a, b\), got 'dia'"):
        DriverDescriptor(name="x", kind="pump", open=print, options=("a", "b"), diameter_option="dia")
    # a content_ml option no hook reads: the syringe counted full whatever it said (a plug-in engineer's trial)
    with pytest.raises(ConfigError, match=r"^driver 'x': takes a content_ml option but declares no content_ml hook"):
        DriverDescriptor(name="x", kind="pump", open=print, options=("content_ml",))
    read = DriverDescriptor(name="x", kind="pump", open=print, options=("content_ml",),
                            content_ml=lambda options: options.get("content_ml"))
    assert read.content_ml({"content_ml": 0.3}) == 0.3
    with pytest.raises(ConfigError, match="has no emulator"):
        start_emulator("no-such-driver", EmulatorContext())


# -- conformance kit -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_every_built_in_driver_passes_the_kit_against_its_emulator(name: str) -> None:
    report = check_driver(name)
    assert report.passed, "\n".join(report.lines())
    names = [c.name for c in report.checks]
    assert names[0] == "open" and "refuses unsafe input, sends nothing" in names
    assert {"potentiostat": "short CV", "pump": "small dispense", "sample_changer": "load twice",
            "gas_valve": "flow, read back, stop"}[BUILT_IN[name]] in names
    assert report.lines()[-1].endswith("conforms")


def test_the_kit_also_checks_a_device_on_a_given_port() -> None:
    with PtyDevice(NE1000Emulator(time_scale=TimeScale.zero_latency()), name="bench-pump") as device:
        report = check_driver("ne1000", device.port, options={"time_scale": math.inf})
        assert report.passed, "\n".join(report.lines())
        assert report.port == device.port and b"0RUN\r" in device.received
        # on a port, nothing beyond the limits is asked of the driver: one that did not refuse would send it
        refusals = next(c for c in report.checks if c.name == "refuses unsafe input, sends nothing")
        assert refusals.passed and refusals.skipped and refusals.detail.startswith("skipped on a real port")
        assert report.lines()[-2].endswith("conforms (1 check skipped)")
        assert any(line.startswith("SKIP  refuses unsafe input") for line in report.lines())
        # the kit set its own 14.57 mm syringe on the device (no diameter_mm given), and its last line says so
        note = ("note: the pump's syringe diameter is now 14.57 mm (the kit's); set it back to your syringe's, or "
                "run the check with --option diameter_mm=<yours>")
        assert report.notes == (note,) and report.lines()[-1] == note
        # a plug-in whose descriptor names no diameter option: the kit cannot know it, and says to set it back
        unnamed = dataclasses.replace(load_driver("ne1000").descriptor, diameter_option=None)
        report = check_driver(unnamed, device.port, options={"time_scale": math.inf, "diameter_mm": 4.61})
        assert report.passed and report.notes == ("note: the pump's syringe diameter is now 14.57 mm (the kit's); "
                                                  "set it back to your syringe's",)


def _dry_pump_emulator(context: EmulatorContext, **_options: object) -> Emulation:
    """An NE-1000 emulator that pours into a cell of its own, never into the rig's: what a plug-in author
    gets wrong when nothing tells them an emulator must fill the simulated cell."""
    emulator = NE1000Emulator(cell=Cell(), time_scale=context.time_scale)
    return Emulation.on_pty(PtyDevice(emulator, name="dry-pump").start())


def test_the_kit_fails_a_pump_emulator_that_never_fills_the_cell() -> None:
    report = check_driver(load_driver("ne1000").descriptor, emulator=_dry_pump_emulator)
    failed = {c.name: c.detail for c in report.checks if not c.passed}
    assert list(failed) == ["small dispense"] and not report.passed
    assert "put 0 mL into the simulated cell" in failed["small dispense"]
    # the kit also drives what a campaign never would on its own: diameter, rate and a withdrawal
    assert {"set diameter", "set rate", "small withdrawal"} <= {c.name for c in report.checks if c.passed}


class _SloppyChanger(SimSampleChanger):
    """Breaks the contract twice: an untyped error for a bad id, and it keeps working after close()."""

    def load(self, sample_id: str) -> None:
        if not sample_id:
            raise ValueError("empty")
        self.cell.load_sample(sample_id, 1.0)


def test_the_kit_fails_a_driver_that_breaks_the_contract() -> None:
    sloppy = DriverDescriptor(name="sloppy", kind="sample_changer", open=_SloppyChanger.open)
    report = check_driver(sloppy, emulator=load_emulator("sim-sampler"))
    failed = {c.name: c.detail for c in report.checks if not c.passed}
    assert set(failed) == {"refuses unsafe input, sends nothing", "close twice, then typed errors"}
    assert "untyped exception ValueError" in failed["refuses unsafe input, sends nothing"]
    assert failed["close twice, then typed errors"] == "a closed driver still answered"
    assert not report.passed and "does NOT conform (2 of 5" in report.lines()[-1]


# -- the simulated rig ---------------------------------------------------------------------------------------


def test_the_sample_changer_loads_into_the_shared_cell() -> None:
    cell = Cell()
    changer = SimSampleChanger(cell, stocks_mM={"TEMPO": 20.0, "Fc": 5.0})
    changer.load("TEMPO")
    changer.load("TEMPO")
    assert cell.state().sample_id == "TEMPO" == changer.loaded and cell.state().stock_mM == 20.0
    with pytest.raises(ConfigError, match="no sample 'DMFc'"):
        changer.load("DMFc")
    changer.unload()
    changer.unload()
    assert changer.loaded is None
    changer.close()
    changer.close()
    with pytest.raises(Disconnected):
        changer.load("Fc")
    with pytest.raises(ConfigError):
        SimSampleChanger(cell, default_stock_mM=-1.0)


def test_the_context_describes_what_the_cell_holds() -> None:
    couples = {"A": CellParams(e0_v=0.3), "B": CellParams(e0_v=-0.2, k0_cm_s=0.01)}
    context = EmulatorContext(couple_of=couples.__getitem__, time_scale=TimeScale.zero_latency())
    assert context.contents() == [DEFAULT_BLANK]  # empty cell: the electrode in electrolyte
    changer = SimSampleChanger(context.cell, stocks_mM={"A": 10.0, "B": 4.0})
    context.cell.add("electrolyte", 0.9, Fluid.ELECTROLYTE)
    changer.load("A")
    context.cell.add("sample pump", 0.1, Fluid.SAMPLE)
    changer.load("B")
    context.cell.add("sample pump", 0.1, Fluid.SAMPLE)
    a, b = context.contents()
    assert (a.e0_v, b.e0_v, b.k0_cm_s) == (0.3, -0.2, 0.01)
    assert a.conc_mm == pytest.approx(10.0 * 0.1 / 1.1) and b.conc_mm == pytest.approx(4.0 * 0.1 / 1.1)
    assert context.injector("emstat") is None


def test_a_pump_emulator_started_by_name_pours_the_loaded_sample() -> None:
    context = EmulatorContext(time_scale=TimeScale.zero_latency())
    SimSampleChanger(context.cell, default_stock_mM=10.0).load("S1")
    ne1000 = load_driver("ne1000").descriptor
    emulation = start_emulator("ne1000", context, {"holds": "sample"})
    try:
        pump = ne1000.open(emulation.port, limits=KIT_LIMITS, time_scale=math.inf)
        assert pump.dispense(0.2, 2.0) == pytest.approx(0.2)
        pump.close()
    finally:
        emulation.stop()
    assert emulation.device is not None and emulation.device.errors == []
    (couple,) = context.contents()
    assert couple.conc_mm == pytest.approx(10.0)  # only sample stock in the cell


def test_a_serial_drivers_port_is_judged_before_opening_and_another_drivers_is_its_own() -> None:
    """`drivers check --port`: a serial driver (one with a default baud rate) is not opened on an http:// URL,
    as validate would refuse it; a driver without a serial line (a networked pump) is given its address."""
    opened: list[str] = []

    def open_network_pump(port: str, **options: object) -> None:
        opened.append(port)
        raise Disconnected(port, "no pump answers there")

    network = DriverDescriptor(name="net-pump", kind=DriverKind.PUMP, open=open_network_pump, default_baudrate=None)
    with pytest.raises(ConfigError, match="cannot open it for driver 'net-pump': no pump answers there"):
        check_driver(network, "http://192.0.2.1/api")
    assert opened == ["http://192.0.2.1/api"]
    with pytest.raises(ConfigError, match="pyserial opens no http:// URL"):
        check_driver("ne1000", "http://192.0.2.1/api")


def test_an_emulator_factory_that_fails_is_named_not_called_a_labloop_bug() -> None:
    """A plug-in's emulator factory with a bug: one line naming the emulator and its code (exit 2 from the
    CLI), where `drivers check` and `validate --dry-run` said "unexpected KeyError ... (a labloop bug)"."""
    def broken(context: EmulatorContext, **_options: object) -> Emulation:
        raise KeyError("holds")

    with pytest.raises(ConfigError, match=r"emulator 'ne1000': its factory \(.*broken\) failed: KeyError: 'holds' "
                                          r"\(a bug in the plug-in's emulator\)"):
        check_driver("ne1000", emulator=broken)


def test_an_option_hook_answering_neither_text_nor_none_is_said_as_the_hooks_fault():
    """A plug-in's ``option_problem`` returning False for "fine" refused a good option as ``options.gain: False``
    (a plug-in author's trial): the refusal says what the hook returned, and a reason or None is taken as before."""
    def answers(value):
        return DriverDescriptor(name="toy-pump", kind="pump", open=print, options=("gain",),
                                option_problem=lambda _name, _value: value)

    assert answers(False).option_refusal("gain", 3) == ("driver 'toy-pump' could not judge this option: its "
                                                        "option_problem returned False, neither a reason (text) nor "
                                                        "None")
    assert answers("").option_refusal("gain", 3).endswith("returned '', neither a reason (text) nor None")
    assert answers(None).option_refusal("gain", 3) is None
    assert answers("must be 1-10").option_refusal("gain", 30) == "must be 1-10"
