"""`labloop drivers ...` and `labloop sim ...`: the driver registry and the emulators, from the shell.

``drivers list`` shows every driver registered under the ``labloop.drivers`` entry-point group (built-in
and plug-ins alike); ``drivers check`` runs the conformance kit against a driver's emulator or a port;
``sim serve`` keeps one emulator on a pty for any serial client, printing the port on the first line of
stdout so that scripts can read it.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import threading
from dataclasses import replace
from typing import Any

import click
import yaml
from rich.table import Table

from labloop.core.errors import ConfigError, InputError, InvalidParameter, said
from labloop.core.text import printable
from labloop.instruments.registry import driver_names, load_driver, registered_by
from labloop.instruments.transport import link_option_problem
from labloop.orchestrator import console
from labloop.sim.conformance import check_driver, check_line
from labloop.sim.emulators import emulator_names, load_emulator, option_names, start_emulator
from labloop.sim.faults import FaultKind, FaultPlan

log = logging.getLogger(__name__)

EXIT_CHECK_FAILED = 1


@click.group(help="Instrument drivers registered under the `labloop.drivers` entry-point group.")
def drivers() -> None:
    pass


@drivers.command("list", help="List every registered driver (built-in and plug-ins).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per driver, for scripts.")
def list_drivers(as_json: bool) -> None:
    """An emulator is loaded to be listed as one: a registered one that cannot be loaded was "yes" until a dry run
    failed on it (a plug-in author's trial); it is "broken", and the JSON row says why (``emulator_problem``)."""
    rows = []
    emulators = set(emulator_names())
    for name in driver_names():
        try:
            registered = load_driver(name)
        except ConfigError as exc:  # a broken plug-in is listed as broken, not fatal to the listing
            rows.append({"name": name, "kind": "?", "baudrate": None, "package": registered_by(name), "emulator": False,
                         "summary": exc.what})  # "driver 'x' (module:attr) cannot be loaded: ..."
            continue
        d = registered.descriptor
        row = {"name": d.name, "kind": str(d.kind), "baudrate": d.default_baudrate,
               "package": registered.distribution, "emulator": d.name in emulators, "summary": d.summary}
        if row["emulator"]:
            try:
                load_emulator(d.name)
            except ConfigError as exc:
                row.update(emulator=False, emulator_problem=exc.what)
        rows.append(row)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    table = Table("driver", "kind", "baud", "package", "emulator", "summary", title="labloop drivers")
    for row in rows:
        table.add_row(row["name"], row["kind"], str(row["baudrate"] or "-"), row["package"],
                      "broken" if "emulator_problem" in row else "yes" if row["emulator"] else "no", row["summary"])
    console.out.print(table)
    for row in rows:
        if "emulator_problem" in row:
            console.out.print(printable(row["emulator_problem"]), markup=False, highlight=False, soft_wrap=True)


def _options(_ctx: click.Context, param: click.Parameter, given: tuple[str, ...]) -> dict[str, Any]:
    """``--option KEY=VALUE``, repeatable, as a mapping; each VALUE read as YAML, as a campaign file's ``options:``
    reads it (``3`` a number, ``true`` a boolean, ``Ag/Ag+`` text, ``{argon: 0, nitrogen: 1}`` a mapping: a
    relay-valve's ``channels``, which could not be given before), and judged by the driver as the campaign's are. A
    malformed one is a usage error naming it (one line, exit 2)."""
    options: dict[str, Any] = {}
    for item in given:
        key, equals, text = item.partition("=")
        key = key.strip()
        if not (equals and key):
            raise click.BadParameter(f"{item!r}: write KEY=VALUE, e.g. --option address=1", param=param)
        if key in options:
            raise click.BadParameter(f"{key}: given twice", param=param)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise click.BadParameter(f"{key}: {text!r} is not a YAML value ({exc.problem})", param=param) from None
        options[key] = value
    return options


@drivers.command("check", help="Run the conformance kit on DRIVER, against its emulator or --port. With --port it "
                                "moves real things, in real time: a pump dispenses and withdraws 0.01 mL (its "
                                "syringe set to the diameter --option gives, e.g. diameter_mm=4.61 for an ne1000; "
                                "without one, to 14.57 mm, and the output ends saying so), a potentiostat scans "
                                "-0.2..0.3 V on the connected cell, a valve opens and closes, a sample changer loads a "
                                "sample (docs/hardware.md).")
@click.argument("driver")
@click.option("--port", default=None, help="Serial port (or pyserial URL) of a real device; default: the emulator.")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", callback=_options,
              help="An option for the driver's open(), as a campaign's instruments.NAME.options gives it (repeat "
                   "for more); VALUE is read as YAML (1 a number, Ag/Ag+ text). The emulator is offered it too.")
def check(driver: str, port: str | None, options: dict[str, Any]) -> int:
    def say(line: str) -> None:
        console.out.print(line, markup=False, highlight=False, soft_wrap=True)

    descriptor = load_driver(driver).descriptor
    for key, value in options.items():  # judged as validate judges a campaign's, before anything opens
        problem = link_option_problem(key, value) or descriptor.option_refusal(key, value)  # as a campaign's
        if problem is not None:
            raise ConfigError(f"--option {key}", problem)
    # the emulator is offered the options as a dry run offers it the campaign's (an address, a syringe's size)
    report = check_driver(descriptor, port, options=options, emulator_options=options,
                          on_check=lambda result: say(check_line(result)))  # each check as it ends
    say(report.verdict())
    for note in report.notes:  # what the kit left changed on the device (a pump's syringe diameter), last
        say(note)
    return 0 if report.passed else EXIT_CHECK_FAILED


def _fault_plan(text: str, seed: int) -> FaultPlan | None:
    """``--faults``'s ``KIND=RATE,...`` (``all`` for every kind, a later pair overriding it) as a plan, None for
    none; ValueError naming what is wrong."""
    rates: dict[str, float] = {}
    for pair in filter(None, (part.strip() for part in text.split(","))):
        kind, sep, value = pair.partition("=")
        kind = kind.strip().lower()
        if not sep or kind not in {*FaultKind, "all"}:
            raise ValueError(f"--faults: {pair!r} is not KIND=RATE with KIND one of {', '.join(FaultKind)}, all")
        try:
            rate = float(value)
        except ValueError:
            rate = math.nan
        if not 0 <= rate <= 1:  # NaN too
            raise ValueError(f"--faults: {pair!r}: the rate must be a number from 0 to 1")
        rates.update(dict.fromkeys(FaultKind, rate) if kind == "all" else {kind: rate})
    if not any(rates.values()):
        return None
    return FaultPlan(**rates, seed=seed)


@click.group(help="The simulated world: serve an emulator on a pseudo-terminal.")
def sim() -> None:
    pass


@sim.command("serve", help="Serve DRIVER's emulator on a pty: prints the port (first line), runs until Ctrl-C.")
@click.argument("driver")
@click.option("--e0", type=float, default=0.0, show_default=True, help="Formal potential of the couple (V).")
@click.option("--k0", type=float, default=1.0, show_default=True, help="Standard rate constant (cm/s).")
@click.option("--alpha", type=float, default=0.5, show_default=True, help="Transfer coefficient.")
@click.option("--conc-mm", type=float, default=1.0, show_default=True, help="Analyte concentration (mM).")
@click.option("--diffusion", type=float, default=1e-5, show_default=True, help="Diffusion coefficient (cm^2/s).")
@click.option("--area-cm2", type=float, default=0.0707, show_default=True, help="Electrode area (cm^2).")
@click.option("--noise", type=float, default=0.002, show_default=True, help="Noise, fraction of the current.")
@click.option("--ru-ohm", type=float, default=0.0, show_default=True, help="Uncompensated resistance (ohm).")
@click.option("--cdl-uf", type=float, default=20.0, show_default=True,
              help="Double-layer capacitance (uF/cm^2).")
@click.option("--fc-mm", type=float, default=0.0, show_default=True,
              help="Ferrocene standard in the cell (mM), E0 0.35 V on this reference.")
@click.option("--oxygen-mm", type=float, default=0.0, show_default=True,
              help="Dissolved O2 (mM), reduced near -0.4 V on this reference.")
@click.option("--time-scale", type=float, default=1.0, show_default=True,
              help="Device seconds per wall second: 1 real time, >1 accelerated, inf zero latency.")
@click.option("--faults", "faults_text", default="", metavar="KIND=RATE,...",
              help=f"Faults to inject, each KIND's chance at each decision (a reply; a pump's run): "
                   f"{', '.join(FaultKind)}, or all; e.g. garble=0.05,no_reply=0.02. Default: none.")
@click.option("--fault-seed", type=click.IntRange(0), default=0, show_default=True,
              help="Seed of the faults: the same seed and commands meet the same faults.")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", callback=_options,
              help="An option for the emulator, as a dry run offers it the campaign's instruments.NAME.options "
                   "(repeat for more; VALUE read as YAML): an address, a syringe's diameter.")
def serve(driver: str, e0: float, k0: float, alpha: float, conc_mm: float, diffusion: float, area_cm2: float,
          noise: float, ru_ohm: float, cdl_uf: float, fc_mm: float, oxygen_mm: float, time_scale: float,
          faults_text: str, fault_seed: int, options: dict[str, Any]) -> None:
    """Why faults here: a plug-in driver's retries and a rig's stops were rehearsed on ``sim serve`` ptys, where
    only a dry run's ``world.fault_rate`` could make a device misbehave (a hardware trial). Why ``--option``: a
    plug-in emulator that needs one (a pump's address) could not be served as a campaign configures it (a plug-in
    author's trial); one the emulator does not take is refused, not dropped."""
    from labloop.sim.emulation import DEFAULT_COUPLE, EmulatorContext
    from labloop.sim.pty_device import TimeScale

    descriptor = load_driver(driver).descriptor  # an unknown driver is named as such, not as "no emulator"
    values = {"e0_v": e0, "k0_cm_s": k0, "alpha": alpha, "conc_mm": conc_mm, "diffusion_cm2_s": diffusion,
              "area_cm2": area_cm2, "noise_fraction": noise, "ru_ohm": ru_ohm, "cdl_f_cm2": cdl_uf * 1e-6}
    try:
        couple = replace(DEFAULT_COUPLE, **values)
        scale = TimeScale(time_scale)
        for name, value in (("--fc-mm", fc_mm), ("--oxygen-mm", oxygen_mm)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}: must be >= 0 mM, got {value!r}")
        faults = _fault_plan(faults_text, fault_seed)
        context = EmulatorContext.standalone(couple, time_scale=scale, faults=faults, fc_mm=fc_mm,
                                             oxygen_mm=oxygen_mm)
    except (InvalidParameter, ValueError) as exc:
        raise click.BadParameter(str(exc)) from None
    factory = load_emulator(driver)
    takes = option_names(factory)
    if takes is not None and (unknown := sorted(set(options) - set(takes))):
        raise ConfigError(f"--option {unknown[0]}", f"the emulator of driver {driver!r} takes no such option (its "
                                                    f"options: {', '.join(takes) or 'none'})")
    for key, value in options.items():  # the driver's own options judged as a campaign's are (address=abc)
        if key in (descriptor.option_names() or ()) and (problem := descriptor.option_refusal(key, value)) is not None:
            raise ConfigError(f"--option {key}", problem)
    try:
        emulation = start_emulator(driver, context, options, factory=factory)
    except (TypeError, ValueError) as exc:  # a value it cannot take, or its bug: said as the dry run says it
        if isinstance(exc, InputError):
            raise
        raise ConfigError("--option", f"the emulator of driver {driver!r} raised {said(exc)}: its options, or a bug "
                                      "in the emulator") from None
    if emulation.device is None:
        emulation.stop()
        raise ConfigError(f"driver {driver!r}", "has no serial line to serve")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        click.echo(emulation.port)
        sys.stdout.flush()
        speed = "zero latency" if math.isinf(time_scale) else f"time x{time_scale:g}"
        rates = "" if faults is None else "; faults " + ", ".join(
            f"{kind} {faults.rate(kind):g}" for kind in FaultKind if faults.rate(kind) > 0) + f" (seed {fault_seed})"
        console.err.print(f"serving {driver} on {emulation.port} ({speed}{rates}); Ctrl-C to stop", markup=False)
        while not stop.wait(0.5):
            pass
    finally:
        injector = emulation.device.faults
        emulation.stop()
        if injector is not None:  # which faults the client met, to read beside its log
            counts = injector.counts
            console.err.print("faults injected: " + ", ".join(f"{kind} {counts[kind]}" for kind in FaultKind
                                                              if injector.plan.rate(kind) > 0), markup=False)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
