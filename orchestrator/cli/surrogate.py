"""`labloop surrogate ...`: train, evaluate, predict, sweep and screen with the IE/EA surrogate.

Outputs are written to a temporary file and renamed into place, so an interrupted command never leaves
a half-written CSV or model under the requested name.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np
import pandas as pd
from rich.table import Table
from rich.text import Text

from labloop.core.errors import ClusterLostError, InvalidInput
from labloop.core.files import atomic_write, cannot_create_in, nearest_existing, remove_orphans, scratch_prefix
from labloop.core.text import plural, spreadsheet_safe
from labloop.orchestrator import console
from labloop.orchestrator.cli import options
from labloop.orchestrator.loop.interrupts import EXIT_INTERRUPTED
from labloop.surrogate.dataset import MoleculeTable, csv_lines, named_target, read_table, seeded_rows, unit_of
from labloop.surrogate.featurize import InvalidSmiles, beyond_prior
from labloop.surrogate.fingerprint_cache import FingerprintCache, default_cache_dir
from labloop.surrogate.metrics import Z95, regression_metrics
from labloop.surrogate.presets import PRESETS, get_preset
from labloop.surrogate.screening import (
    ROLE_TARGET,
    SOLVENT_WINDOWS,
    gas_phase_note,
    potential_vs_reference,
    reference_note,
    screen,
    usable_window,
)

if TYPE_CHECKING:
    from labloop.surrogate.ensemble import Ensemble
    from labloop.surrogate.library_pipeline import ShardSet
    from labloop.surrogate.repeats import Repeats

log = logging.getLogger(__name__)



@click.group(help="Train, evaluate and use the IE/EA surrogate model.")
def app() -> None:
    pass


FILE = click.Path(path_type=Path, dir_okay=False)
DIR = click.Path(path_type=Path, file_okay=False)
no_cache_option = click.option("--no-cache", is_flag=True, help="Do not read or write the fingerprint cache.")
#: predict's and screen's: what they cache is the library's prediction shards (a Dask trial read the fingerprint
#: cache's help there, where none is written)
no_shards_option = click.option("--no-cache", is_flag=True,
                                help="Keep no prediction shards: predict into a temporary folder removed at the end, "
                                     "where a re-run would reuse those in the cache folder.")
smiles_option = click.option("--smiles-column", default="smiles", show_default=True, help="SMILES column.")
scheduler_option = options.scheduler_option(default="auto", what="the library is featurised and predicted")
rows_option = click.option("--rows", type=click.IntRange(min=1),
                           help="Train on a seeded random slice of this many rows (by --seed: a campaign's prior.rows "
                                "slice of that seed); default: the whole table.")
chunk_option = click.option("--chunk-size", type=click.IntRange(min=1), default=None,
                            help="Molecules per task (default 5000); peak memory grows with it, not with the library.")


def _cache(disabled: bool) -> FingerprintCache | None:
    return None if disabled else FingerprintCache(default_cache_dir() / "fingerprints")


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_write(path) as tmp, open(tmp, "w", newline="") as fh:
        _safe_text(df).to_csv(fh, index=False, float_format="%.6g")


def _safe_text(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its text columns (SMILES, names: a library's) as a spreadsheet shows them as text
    (:func:`labloop.core.text.spreadsheet_safe`); numbers as they are."""
    text = [column for column in df.columns
            if pd.api.types.is_object_dtype(df[column]) or pd.api.types.is_string_dtype(df[column])]
    return df.assign(**{column: df[column].map(spreadsheet_safe) for column in text}) if text else df


def _metrics_table(title: str, metrics: dict[str, dict[str, float]]) -> Table:
    table = Table(title=title)
    for col in ("target", "n", "MAE", "R^2", "error std", "95% coverage"):
        table.add_column(col, justify="right" if col != "target" else "left")
    for target, m in metrics.items():
        cov = f"{m['coverage95']:.3f}" if "coverage95" in m else "-"
        table.add_row(target, str(m["n"]), f"{m['mae']:.4f}", f"{m['r2']:.4f}", f"{m['error_std']:.4f}", cov)
    return table


def _load_model(model_dir: Path):
    from labloop.surrogate.persistence import load_ensemble  # h5py and the forward pass: only where a model is read

    return load_ensemble(model_dir)


def _predict_table(model_dir: Path, data: Path, smiles_column: str, targets: list[str], no_cache: bool):
    """Load the model, read the table, featurise + predict with a progress bar."""
    ens = _load_model(model_dir)
    table = read_table(data, targets or [], smiles_column)
    with console.progress() as bar:
        task = bar.add_task("featurise + predict", total=len(table.smiles))
        pred = ens.predict(table.smiles, cache=_cache(no_cache), progress=lambda k: bar.advance(task, k))
    console.report_invalid(pred.invalid, data, line_of=csv_lines(data))
    return ens, table, pred


def interrupted_after(output: Path, rows: int) -> str:
    """What a Ctrl-C after ``output`` was written in full says, instead of main's ``aborted``."""
    return f"interrupted after {output} was written ({rows} {plural(rows, 'row')}): the output is complete"


@contextmanager
def _output_survives_ctrl_c(output: Path) -> Iterator[Callable[[int], None]]:
    """Yield ``written(rows)``, for the command to call once ``output`` is in place, whole. A Ctrl-C after
    that (a LocalCluster takes seconds to close once the work is done) says the output is complete
    (:func:`interrupted_after`) rather than ``aborted``, which sent users to predict a library again that they
    already had; it still exits 130, so a script or a shell loop around the command stops as asked. A Ctrl-C
    before it is main's ``aborted`` (the output is not written: :func:`labloop.core.files.atomic_write`). A ``kill``
    (SIGTERM, what a batch system sends) or a closed terminal stops it as a Ctrl-C does
    (orchestrator/loop/interrupts.py): it ended the process at once, leaving the cluster's semaphores and a
    ``--no-cache`` run's temporary shards behind (a Dask trial)."""
    from labloop.orchestrator.loop.interrupts import Interrupts

    rows: list[int] = []
    try:
        with Interrupts():
            yield rows.append
    except KeyboardInterrupt:
        if not rows:
            raise
        console.err.print(interrupted_after(output, rows[-1]), markup=False, highlight=False, soft_wrap=True)
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None


#: the temporary folder of a ``--no-cache`` run's shards, named ``labloop-predictions-<pid>-<random>``
NO_CACHE_PREFIX = "labloop-predictions-"


def _cache_writable(root: Path) -> bool:
    """Whether the prediction cache ``root`` can be made and written, tried where it is or would be made; when not, said
    once with what to do. Why: an unwritable HOME (or ``LABLOOP_CACHE_DIR``) ended predict and screen with "Permission
    denied (/nonexistent)", which named no cache, where the fingerprint cache costs only its speed-up there (a
    packaging trial)."""
    # in the folder, or where it would be made: nothing is made yet (a scheduler refused writes nothing)
    if (why := cannot_create_in(nearest_existing(root))) is not None:
        console.err.print(console.printable(f"warning: the prediction cache {root} cannot be written ({why}): "
                                            "predicting without it, as --no-cache does (LABLOOP_CACHE_DIR names "
                                            "another folder)"), markup=False, highlight=False, soft_wrap=True)
        return False
    return True


@contextmanager
def _library_predictions(model_dir: Path, library: Path, smiles_column: str, no_cache: bool,
                         scheduler: str, chunk_size: int | None, output: Path) -> Iterator[ShardSet]:
    """Predict ``library`` with the chunked pipeline (:mod:`labloop.surrogate.library_pipeline`) into shards
    in the cache folder (a temporary one with ``--no-cache``), on the cluster ``--scheduler`` names.

    Everything the user typed is checked before a cluster starts (an ``output`` that is the library itself is
    refused: the CSV keeps only the SMILES, so the library's other columns would be lost); a cluster lost
    mid-run exits 1 with one line (finished shards are kept, so running the command again continues)."""
    from labloop.surrogate.compute import dask_client, placement
    from labloop.surrogate.library_pipeline import (
        CHUNKS_KEPT,
        DEFAULT_CHUNK_SIZE,
        count_rows,
        predict_library,
        row_lines,
    )
    from labloop.surrogate.persistence import read_manifest

    if output.resolve() == library.resolve():
        raise InvalidInput(f"--output {output} is the library being read: give another file (writing it would "
                           "replace the library)")
    read_manifest(model_dir)
    rows = count_rows(library, smiles_column)
    if rows == 0:  # "wrote 0 predictions", exit 0, where a campaign's library refuses it (a trial)
        raise InvalidInput(f"{library}: no molecule under its header: nothing to predict, nothing written")
    use_cluster, address = placement(scheduler, rows)
    no_cache = no_cache or not _cache_writable(default_cache_dir() / "predictions")
    with ExitStack() as stack:
        if no_cache:  # a killed run's (SIGKILL) temporary shards are removed by the next: named with its pid
            remove_orphans(Path(tempfile.gettempdir()), NO_CACHE_PREFIX)
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=scratch_prefix(NO_CACHE_PREFIX)))) \
            if no_cache else default_cache_dir() / "predictions"
        client = None
        if use_cluster:
            client = stack.enter_context(dask_client(address, announce=lambda text: console.err.print(
                text, markup=False, highlight=False, soft_wrap=True)))
        try:
            with console.progress() as bar:
                task = bar.add_task("featurise + predict", total=rows)
                shards = predict_library(library, model_dir, root, client=client, smiles_column=smiles_column,
                                         chunk_size=chunk_size or DEFAULT_CHUNK_SIZE,
                                         progress=lambda k: bar.advance(task, k))
        except ClusterLostError as exc:  # --no-cache kept nothing, whatever the pipeline's folder held (a trial)
            # what is kept said once: "finished chunks are kept; ... continues from the chunks finished" (a Dask trial)
            kept = ("nothing predicted is kept (--no-cache): the same command again predicts every chunk" if no_cache
                    else f"{CHUNKS_KEPT}, and the same command again continues from them")
            said = f"{str(exc).replace(f'; {CHUNKS_KEPT}', '')}; {kept}"
            console.err.print(f"error: {said}", markup=False, highlight=False, soft_wrap=True)
            raise click.exceptions.Exit(1) from None
        except KeyboardInterrupt:  # main's "aborted" did not say what was kept (a trial)
            kept = ("nothing predicted is kept (--no-cache)" if no_cache else
                    "the chunks predicted so far are kept in labloop's prediction cache, and the same command again "
                    "continues from them")
            console.err.print(f"interrupted: {output} not written; {kept}", markup=False, highlight=False,
                              soft_wrap=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        console.report_invalid([InvalidSmiles(row, smiles) for row, smiles in shards.invalid()], library,
                               line_of=row_lines(library, smiles_column))
        odd = [InvalidSmiles(row, smiles, why) for row, smiles in shards.valid_smiles()
               if (why := beyond_prior(smiles)) is not None]
        console.report_invalid(odd, library, console.beyond_prior_said(len(odd)),
                               line_of=row_lines(library, smiles_column))
        if next(shards.valid_smiles(), None) is None:
            raise InvalidInput(f"{library}: none of its {rows} {plural(rows, 'row')} holds a valid SMILES in column "
                               f"{smiles_column!r}: nothing to predict, nothing written")
        yield shards


@app.command()
@click.argument("data", type=FILE)
@click.option("--target", "-t", "targets", multiple=True, required=True, callback=lambda _c, _p, v: _named(v),
              help="Target column; repeat for multi-task.")
@click.option("--output", "-o", type=DIR, required=True, help="Model directory to write.")
@click.option("--folds", "-k", type=click.IntRange(2, 20), default=5, show_default=True, help="Ensemble members.")
@click.option("--preset", default="fast", show_default=True, help=f"Recipe: {', '.join(PRESETS)}.")
@click.option("--epochs", type=click.IntRange(min=1), help="Override the preset's epochs.")
@click.option("--holdout", type=click.FloatRange(0.0, 0.9), default=0.0, show_default=True,
              help="Share of rows kept aside and scored after training.")
@click.option("--seed", type=int, default=0, show_default=True)
@rows_option
@click.option("--replace", is_flag=True, help="Overwrite the model already in --output (and everything else there).")
@smiles_option
@no_cache_option
def train(data: Path, targets: tuple[str, ...], output: Path, folds: int, preset: str, epochs: int | None,
          holdout: float, seed: int, rows: int | None, replace: bool, smiles_column: str, no_cache: bool) -> None:
    """Train a calibrated k-fold ECFP -> FCNN ensemble and save it to a model directory."""
    chosen = get_preset(preset, epochs=epochs)
    table, line_of, sliced = _training_table(data, targets, smiles_column, rows, seed)
    if output.exists() and not output.is_dir():
        raise InvalidInput(f"--output {output} exists and is not a directory")
    from labloop.surrogate.persistence import MANIFEST, save_ensemble
    # refused before the training (minutes to hours), not after it: a folder with files is someone's
    if output.is_dir() and any(output.iterdir()):
        if not (output / MANIFEST).is_file():
            raise InvalidInput(f"--output {output} holds files and no labloop model: give an empty or new folder")
        if not replace:
            raise InvalidInput(f"--output {output} already holds a model: give another folder, or --replace to "
                               "overwrite it (and every other file in it)")
    if sliced:  # once the output is known good: a refused --output read as a training begun (a newcomer's trial)
        console.err.print(f"training on {_slice_said(len(table.smiles), sliced, data, seed)}", markup=False,
                          highlight=False, soft_wrap=True)
    from labloop.surrogate.ensemble import MIN_CALIBRATION_ROWS
    from labloop.surrogate.training import train_from_table  # TensorFlow loads once the input is known good
    with console.progress() as bar:
        feat_task = bar.add_task("featurise", total=len(table.smiles))
        fit_task = bar.add_task("train", total=folds * chosen.model.epochs)
        done = dict.fromkeys(range(folds), 0)

        def on_epoch(member: int, epoch: int, loss: float, val: float) -> None:
            done[member] = epoch + 1
            bar.update(fit_task, completed=sum(done.values()),
                       description=f"train member {member + 1}/{folds} (val loss {val:.4f})")

        run = train_from_table(table, chosen, folds=folds, seed=seed, holdout=holdout, cache=_cache(no_cache),
                               on_featurized=lambda k: bar.advance(feat_task, k), on_epoch=on_epoch,
                               merge_repeats=True)
    console.report_invalid(run.invalid, data, line_of=line_of)
    _say_repeats(run.repeats, data, targets, line_of)
    if sliced:
        run.ensemble.info["training_data"]["slice"] = {"rows": len(table.smiles), "of": sliced, "seed": seed}
    save_ensemble(run.ensemble, output)
    metrics = run.ensemble.info["metrics"]
    console.out.print(_metrics_table("out-of-fold (single members)", metrics["out_of_fold"]))
    if run.holdout_metrics:
        console.out.print(_metrics_table(f"held-out {holdout:.0%} (ensemble)", run.holdout_metrics))
    console.out.print(f"saved {folds}-member '{chosen.name}' ensemble to {output} "
                      f"({_calibration_said(run.ensemble)})", markup=False, highlight=False, soft_wrap=True)
    if (rows := run.ensemble.info["n_calibration"]) < MIN_CALIBRATION_ROWS:
        console.err.print(f"warning: the sigma calibration rests on {rows} held-out {plural(rows, 'row')}, fewer than "
                          f"{MIN_CALIBRATION_ROWS}: too few to trust its factor and floor (train on "
                          f"{5 * MIN_CALIBRATION_ROWS} molecules or more for a {MIN_CALIBRATION_ROWS}-row slice)",
                          markup=False, highlight=False, soft_wrap=True)


def _training_table(data: Path, targets: Sequence[str], smiles_column: str, rows: int | None,
                    seed: int) -> tuple[MoleculeTable, Callable[[int], int], int]:
    """The table ``train`` or ``sweep`` trains on: ``data``'s, or its seeded slice of ``rows`` rows
    (:func:`labloop.surrogate.dataset.seeded_rows`, a campaign's ``prior.rows`` rule); the line in ``data`` of each of
    its rows, for the warnings of invalid SMILES and repeats; and the rows of ``data`` it is a slice of (0: the
    whole table). Why: a quick model on a large table took a CSV sliced by hand, with other line numbers than the
    file the user gave."""
    table = read_table(data, list(targets), smiles_column)
    line_of = csv_lines(data)
    total = len(table.smiles)
    if rows is not None and rows >= total:  # trained on the whole table without a word (a newcomer's trial)
        console.err.print(f"warning: --rows {rows}: {data} has {total} {plural(total, 'row')}, all of them trained on",
                          markup=False, highlight=False, soft_wrap=True)
    if rows is None or rows >= total:
        return table, line_of, 0
    kept = seeded_rows(total, rows, seed)
    taken = table.taken(kept)
    empty = [t for j, t in enumerate(taken.targets) if np.isnan(taken.Y[:, j]).all()]
    if empty:
        raise InvalidInput(f"--rows {rows}: {_slice_said(rows, total, data, seed)} has no value in column "
                           f"{empty[0]!r}: give more rows, or no --rows for the whole table")
    return taken, lambda row: line_of(int(kept[row])), total


def _slice_said(rows: int, total: int, data: Path, seed: int) -> str:
    """``the seeded slice of 2000 of the 21411 rows of DATA (--seed 0)``."""
    return f"the seeded slice of {rows} of the {total} rows of {data} (--seed {seed})"


def _named(targets: tuple[str, ...]) -> tuple[str, ...]:
    """``--target IE_eV`` as ``ie_ev`` (:func:`labloop.surrogate.dataset.named_target`)."""
    return tuple(named_target(target) for target in targets)


def _say_repeats(repeats: Repeats, data: Path, targets: Sequence[str], line_of: Callable[[int], int]) -> None:
    """The warnings of a table's repeated molecules, merged before training (``train`` and ``sweep``):
    :func:`labloop.orchestrator.console.repeats_said`; ``line_of``: :func:`_training_table`'s."""
    for said in console.repeats_said(repeats, data, targets, line_of=line_of):
        console.err.print(f"warning: {said}", markup=False, highlight=False, soft_wrap=True)


def _calibration_said(ensemble: Ensemble) -> str:
    """``sigma calibration on 60 held-out rows: ie_ev: sigma = 0.11 x sqrt(spread^2 + 4.328^2) eV, at least 0.476
    eV``: the formula itself, since "x0.68 floor 0.673 eV, sigma >= 0.458 eV" read as a floor above the smallest
    sigma (a newcomer's trial). Why the smallest sigma (factor x floor): on a slice whose errors the members' spread
    does not rank, the floor runs to the top of its grid and only that product means anything
    (:func:`labloop.surrogate.ensemble.fit_calibration`); a floor of 4 eV alone reads as an absurd uncertainty."""
    floors = ensemble.calibration_floor
    each = "; ".join(f"{t}: sigma = {f:.2f} x sqrt(spread^2 + {floors.get(t, 0.0):.3f}^2) {unit_of(t)}, at "
                     f"least {f * floors.get(t, 0.0):.3f} {unit_of(t)}" for t, f in ensemble.calibration.items())
    rows = ensemble.info["n_calibration"]
    return f"sigma calibration on {rows} held-out {plural(rows, 'row')}: {each}"


@app.command()
@click.argument("model_dir", type=DIR)
@click.argument("data", type=FILE)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@smiles_option
@no_cache_option
def evaluate(model_dir: Path, data: Path, as_json: bool, smiles_column: str, no_cache: bool) -> None:
    """MAE, R^2, error std and 95% interval coverage of a model on labelled data."""
    from labloop.surrogate.persistence import read_manifest

    targets = list(read_manifest(model_dir)["targets"])
    ens, table, pred = _predict_table(model_dir, data, smiles_column, targets, no_cache)
    Y = table.Y[pred.rows]
    metrics = {t: regression_metrics(Y[:, j], pred.mean[:, j], pred.std[:, j]) for j, t in enumerate(ens.targets)}
    if as_json:
        click.echo(json.dumps({"model": str(model_dir), "data": str(data), "invalid_smiles": len(pred.invalid),
                               "metrics": metrics}, indent=2))
    else:
        console.out.print(_metrics_table(f"{model_dir} on {data}", metrics))


@app.command()
@click.argument("model_dir", type=DIR)
@click.argument("library", type=FILE)
@click.option("--output", "-o", type=FILE, required=True, help="CSV to write.")
@smiles_option
@no_shards_option
@scheduler_option
@chunk_option
def predict(model_dir: Path, library: Path, output: Path, smiles_column: str, no_cache: bool, scheduler: str,
            chunk_size: int | None) -> None:
    """Predict mean and calibrated std of every target: columns smiles, <target>_mean, <target>_std (and name,
    after smiles, when a .smi library names its molecules).

    LIBRARY may be CSV, CSV.gz, Parquet or .smi; it is read and predicted a chunk at a time."""
    with _output_survives_ctrl_c(output) as complete, \
            _library_predictions(model_dir, library, smiles_column, no_cache, scheduler, chunk_size, output) as shards:
        columns = ["smiles", *_name(shards), *(f"{t}_{kind}" for t in shards.targets for kind in ("mean", "std"))]
        written = 0
        with atomic_write(output) as tmp, open(tmp, "w", newline="") as fh:
            for number, frame in enumerate(shards.frames([*columns, "valid"])):
                valid = frame[frame["valid"]][columns]
                _safe_text(valid).to_csv(fh, index=False, header=number == 0, float_format="%.6g")
                written += len(valid)
        complete(written)
        console.out.print(f"wrote {written} {plural(written, 'prediction')} to {output}",  # before the cluster closes
                          markup=False, highlight=False, soft_wrap=True)


def _name(shards: ShardSet) -> list[str]:
    """``["name"]`` when the library names its molecules (a .smi file's names), else nothing: the column
    ``predict`` and ``screen`` write after ``smiles``, so a molecule is found by the name the user gave it."""
    return ["name"] if shards.named else []


def _int_list(text: str, name: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InvalidInput(f"{name} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise InvalidInput(f"{name} is empty")
    return values


#: folds of every cell of `surrogate sweep` (the thesis's 2-fold cross-validation)
SWEEP_FOLDS = 2
#: the epochs of a quick look at the grid (the hint the sweep gives when it was asked for more)
QUICK_EPOCHS = 20


@app.command()
@click.argument("data", type=FILE)
@click.option("--target", "-t", "targets", multiple=True, required=True, callback=lambda _c, _p, v: _named(v),
              help="Target column; repeatable.")
@click.option("--preset", default="thesis", show_default=True, help="Network and recipe for every cell.")
@click.option("--epochs", type=click.IntRange(min=1), help="Override the preset's epochs.")
@click.option("--radii", default="1,2,3,4,5", show_default=True, help="Comma-separated fingerprint radii.")
@click.option("--bits", default="256,512,1024,2048,4096", show_default=True, help="Comma-separated lengths.")
@click.option("--seed", type=int, default=0, show_default=True)
@rows_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@smiles_option
def sweep(data: Path, targets: tuple[str, ...], preset: str, epochs: int | None, radii: str, bits: str, seed: int,
          rows: int | None, as_json: bool, smiles_column: str) -> None:
    """The thesis's 25-architecture table (radius x bits), 2-fold CV, ranked by validation MAE."""
    from labloop.surrogate.repeats import molecules_once
    from labloop.surrogate.sweep import run_sweep

    chosen = get_preset(preset, epochs=epochs)
    r_list, b_list = _int_list(radii, "--radii"), _int_list(bits, "--bits")
    for r in r_list:  # validate the whole grid before hours of training
        for b in b_list:
            replace(chosen.fingerprint, radius=r, n_bits=b)
    read, line_of, sliced = _training_table(data, targets, smiles_column, rows, seed)
    table, invalid, repeats = molecules_once(read, np.arange(len(read.smiles)))
    console.report_invalid(invalid, data, line_of=line_of)
    _say_repeats(repeats, data, targets, line_of)
    cells, epochs_per_cell = len(r_list) * len(b_list), SWEEP_FOLDS * chosen.model.epochs
    quick = chosen.name == "fast" and chosen.model.epochs <= QUICK_EPOCHS
    console.err.print(f"sweep: {cells} cells x {SWEEP_FOLDS} folds x {chosen.model.epochs} epochs ({chosen.name} "
                      f"recipe) on {len(table.smiles)} molecules"
                      + (f" from {_slice_said(len(read.smiles), sliced, data, seed)}" if sliced else "")
                      + ("" if quick else f"; --preset fast --epochs {QUICK_EPOCHS} for a quick look"),
                      markup=False, highlight=False, soft_wrap=True)
    with console.progress() as bar:
        task = bar.add_task("sweep (epochs)", total=cells * epochs_per_cell)
        done_cells = [0]

        def on_done(_row: dict) -> None:
            done_cells[0] += 1
            bar.update(task, completed=done_cells[0] * epochs_per_cell)

        result = run_sweep(table, chosen, radii=r_list, bits=b_list, seed=seed, folds=SWEEP_FOLDS, on_done=on_done,
                           on_epoch=lambda member, epoch, *_: bar.update(
                               task, completed=done_cells[0] * epochs_per_cell + member * chosen.model.epochs
                               + epoch + 1))
    if as_json:
        click.echo(result.to_json(orient="records", indent=2))
        return
    out = Table(title=f"radius x bits sweep, 2-fold CV ({chosen.name} network), ranked by validation MAE")
    for col in result.columns:
        out.add_column(col, justify="right")
    for row in result.itertuples(index=False):  # each column's own type: radius and bits stay whole numbers
        out.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row])
    console.out.print(out)


@app.command("screen")
@click.argument("model_dir", type=DIR)
@click.argument("library", type=FILE)
@click.option("--solvent", default="acn", show_default=True, help=f"One of: {', '.join(SOLVENT_WINDOWS)}.")
@click.option("--collector", default="al", show_default=True, help="Current collector: al, cu or none.")
@click.option("--role", type=click.Choice(sorted(ROLE_TARGET)), default="cathode", show_default=True,
              help="cathode: oxidation potential from IE; anode: reduction potential from EA.")
@click.option("--output", "-o", type=FILE, required=True, help="CSV of the screened molecules.")
@click.option("--z", type=click.FloatRange(min=0.0), default=Z95, show_default="1.96, 95%",
              help="Interval half-width in sigmas (1.96 = 95%).")
@click.option("--global-sigma", is_flag=True, help="One sigma for all (the model's error std), as the thesis did.")
@click.option("--window", type=(float, float), default=None, help="Own window LOW HIGH in V vs Li/Li+.")
@click.option("--reference", default="li", show_default=True, help="Also report potentials vs li, she or fc.")
@click.option("--all", "include_all", is_flag=True, help="Write failing molecules too (after the hits).")
@smiles_option
@no_shards_option
@scheduler_option
@chunk_option
def screen_cmd(model_dir: Path, library: Path, solvent: str, collector: str, role: str, output: Path, z: float,
               global_sigma: bool, window: tuple[float, float] | None, reference: str, include_all: bool,
               smiles_column: str, no_cache: bool, scheduler: str, chunk_size: int | None) -> None:
    """Screen a library for potentials inside the solvent/collector window (thesis rule: cathode IE - 1.40,
    anode EA - 1.40, of the gas-phase prior: without solvation, anodes read low and cathodes high).

    LIBRARY may be CSV, CSV.gz, Parquet or .smi; it is read, predicted and screened a chunk at a time."""
    from labloop.surrogate.persistence import read_manifest

    win = usable_window(solvent, collector, window)
    potential_vs_reference([0.0], reference)  # an unknown --reference fails before the model loads
    manifest = read_manifest(model_dir)
    quantity = ROLE_TARGET[role]
    if quantity not in manifest["targets"]:
        raise InvalidInput(f"--role {role} needs a model predicting {quantity!r}; {model_dir} predicts "
                           f"{', '.join(manifest['targets'])} (train one with -t {quantity}: the "
                           f"{quantity[:2].upper()} column in eV, by that name, whatever its case)")
    sigma = None
    if global_sigma:
        sigma = manifest.get("metrics", {}).get("calibration_slice", {}).get(quantity, {}).get("error_std")
        if sigma is None:
            raise InvalidInput(f"{model_dir} records no error std for {quantity}; retrain it")
    parts, total = [], 0
    # written and said before the cluster closes (seconds), with a Ctrl-C there told that the file is complete
    with _output_survives_ctrl_c(output) as complete, \
            _library_predictions(model_dir, library, smiles_column, no_cache, scheduler, chunk_size, output) as shards:
        named = _name(shards)
        for frame in shards.frames(["smiles", *named, "valid", f"{quantity}_mean", f"{quantity}_std"]):
            frame = frame[frame["valid"]]
            part = screen(frame["smiles"].tolist(), frame[f"{quantity}_mean"].to_numpy(),
                          frame[f"{quantity}_std"].to_numpy(), win, role=role, z=z, global_sigma=sigma,
                          reference=reference, names=frame["name"].tolist() if named else None)
            total += len(part)
            parts.append(part if include_all else part[part["passes"]])
        # the same order as one screen() of the whole library: a stable sort of chunks kept in library order
        result = pd.concat(parts, ignore_index=True) if parts else screen([], np.zeros(0), np.zeros(0), win,
                                                                          names=[] if named else None)
        result = result.sort_values(["passes", "potential_v"], ascending=[False, role == "anode"], kind="stable")
        hits = result[result["passes"]]
        _write_csv(result if include_all else hits, output)
        complete(len(result) if include_all else len(hits))
        # one line however long (the window's source alone is ~150 characters), piped or not, and a path's
        # brackets are no markup: rich folded it at the console's width and took `runs[old]/` for a style
        console.out.print(f"{len(hits)} of {total} molecules pass: {role} ({gas_phase_note(role)}), window "
                          f"{win.low_v:.2f}-"
                          f"{win.high_v:.2f} V vs Li/Li+ ({win.source}); wrote {output}"
                          + reference_note(reference), markup=False, highlight=False, soft_wrap=True)
        if len(hits):
            top = Table(title="best hits")
            texts = ["smiles", *named]  # brackets are SMILES (or a name's), not markup; a name's ESC is shown
            for col in (*texts, "potential_v", "sigma_v", "margin_v"):
                top.add_column(col, justify="left" if col in texts else "right")
            for _, row in hits.head(10).iterrows():
                top.add_row(*(Text(console.printable(row[col])) for col in texts), f"{row['potential_v']:.3f}",
                            f"{row['sigma_v']:.3f}", f"{row['margin_v']:.3f}")
            console.out.print(top)
