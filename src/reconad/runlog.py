"""Run logs: each optimiser step's losses and learning rates, kept inside the model folder.

``reconad fit --logger csv`` (or ``Detector(logger="csv")``) records, for every optimiser
step, the loss of each optimiser group and each group's learning rate, through Lightning
Fabric's loggers, so the log travels with the model::

    MODEL/logs/metrics.csv          --logger csv: one row per step
    MODEL/logs/tensorboard/         --logger tensorboard: event files (`tensorboard --logdir`)

``--logger csv,tensorboard`` writes both; the HTML report draws its loss curves from the CSV
(:func:`read_run_log`), so a TensorBoard-only run has none there.

Series are named ``<stage>/loss/<group>`` and ``<stage>/lr/<group>`` (for ``ae``:
``train/loss/model`` and ``train/lr/model``; UTAD's expert stage: ``expert/loss/gen``,
``expert/loss/dis``, ...); a group is one optimiser. ``step`` is the optimiser step counted
from 0 over all stages, so the stages follow each other on one axis. Under DDP the losses
are those of rank 0's batches.

While training, the log is written beside the checkpoint (``CHECKPOINT/logs``) or in a
temporary folder, flushed every :data:`FLUSH_EVERY` steps and at each epoch's end, and
finalized when training ends or is interrupted; :meth:`reconad.Detector.save` copies it into
the model folder. A resumed run keeps the steps up to its checkpoint and continues the same
log (later steps, which the resumed run trains again, are dropped from the CSV and purged
from TensorBoard's view).
"""

from __future__ import annotations

import csv
import importlib.util
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: logger names accepted by ``--logger`` (comma-separated for several)
LOGGERS = ("csv", "tensorboard")
#: the log's folder inside a model folder (and inside a checkpoint folder while training)
LOG_DIR = "logs"
CSV_FILE = "metrics.csv"
TENSORBOARD_DIR = "tensorboard"
#: CSV rows are buffered and appended to the file every this many steps (and at epoch ends)
FLUSH_EVERY = 100
INSTALL_TENSORBOARD = 'pip install "reconad[tensorboard]"'
_RESUME_SUFFIX = ".resume"


def tensorboard_available() -> bool:
    """Whether Fabric's TensorBoardLogger can write (tensorboard or tensorboardX installed)."""
    return any(importlib.util.find_spec(m) is not None for m in ("tensorboard", "tensorboardX"))


def parse_loggers(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"csv,tensorboard"`` (or a sequence of names) -> validated names, each once.

    Checked before any training, so a typo or a missing TensorBoard costs nothing.

    Raises:
        ValueError: an unknown name.
        ImportError: ``tensorboard`` without the tensorboard package installed.
    """
    if not value:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(dict.fromkeys(s for s in (str(v).strip().lower() for v in items) if s))
    if names == ("none",):
        return ()
    bad = [n for n in names if n not in LOGGERS]
    if bad:
        raise ValueError(
            f"logger {', '.join(bad)!s}: choose csv, tensorboard, or both as csv,tensorboard"
        )
    if "tensorboard" in names and not tensorboard_available():
        raise ImportError(
            f"logger tensorboard needs the tensorboard package: {INSTALL_TENSORBOARD} "
            "(or log with csv)"
        )
    return names


def series_name(stage: str, kind: str, group: str) -> str:
    """The name of a logged series: ``<stage>/<kind>/<group>``, kind ``loss`` or ``lr``."""
    return f"{stage}/{kind}/{group}"


class RunLog:
    """Fabric's CSV and/or TensorBoard loggers on one folder, one call per optimiser step.

    Built on the main process only. ``start_step`` > 0 continues a resumed run: the CSV's
    rows before it are kept (re-written through the logger, which starts its file afresh),
    later ones dropped, and TensorBoard purges its events from that step on. ``start_step``
    0 starts a new log, removing an earlier one in the folder.
    """

    def __init__(
        self,
        folder: Path,
        names: Sequence[str],
        start_step: int = 0,
        flush_every: int = FLUSH_EVERY,
    ) -> None:
        from lightning_fabric.loggers import CSVLogger, TensorBoardLogger

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.step = int(start_step)
        self._logged = False  # TensorBoard's writer exists once a step was logged
        csv_path = self.folder / CSV_FILE
        resume = csv_path.with_name(CSV_FILE + _RESUME_SUFFIX)
        kept = _previous_rows(csv_path, self.step) if self.step > 0 else []
        if self.step == 0:  # a new run: an earlier log in this folder is not its own
            csv_path.unlink(missing_ok=True)
            resume.unlink(missing_ok=True)
            shutil.rmtree(self.folder / TENSORBOARD_DIR, ignore_errors=True)
        self.csv = None
        self.tensorboard = None
        self.loggers: list[Any] = []
        if "csv" in names:
            self.csv = CSVLogger(
                self.folder, name="", version="", flush_logs_every_n_steps=flush_every
            )
            with warnings.catch_warnings():  # "exists and is not empty": the log is ours
                warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
                self.csv.experiment  # noqa: B018  (created now, not mid-training)
            for step, row in kept:
                self.csv.experiment.log_metrics(row, step)
            self.csv.save()
            self.loggers.append(self.csv)
        resume.unlink(missing_ok=True)  # its rows are in metrics.csv again
        if "tensorboard" in names:
            self.tensorboard = TensorBoardLogger(
                self.folder,
                name=TENSORBOARD_DIR,
                version="",
                default_hp_metric=False,
                **({"purge_step": self.step} if self.step > 0 else {}),
            )
            self.loggers.append(self.tensorboard)

    def log(self, metrics: dict[str, float]) -> None:
        """Record one optimiser step's values and move on to the next step."""
        for logger in self.loggers:
            logger.log_metrics(metrics, step=self.step)
        self.step += 1
        self._logged = True

    def flush(self) -> None:
        """Write what is buffered (at each epoch's end, before its checkpoint)."""
        if self.csv is not None:
            self.csv.save()
        if self.tensorboard is not None and self._logged:
            self.tensorboard.experiment.flush()

    def finalize(self, status: str = "success") -> None:
        """Flush and close every logger (also after an error or an interruption)."""
        for logger in self.loggers:
            logger.finalize(status)


def _previous_rows(csv_path: Path, before: int) -> list[tuple[int, dict[str, float]]]:
    """The rows of an earlier log with ``step < before``, as (step, values). The file is
    first renamed to ``metrics.csv.resume``, so the rows survive until the new logger has
    written them again; a ``.resume`` already there (a resume cut short before it was
    done) is the whole earlier log and wins over a ``metrics.csv`` it left half written."""
    resume = csv_path.with_name(CSV_FILE + _RESUME_SUFFIX)
    if resume.exists():
        csv_path.unlink(missing_ok=True)
    elif csv_path.exists():
        csv_path.replace(resume)
    if not resume.exists():
        return []
    rows = []
    for step, values in _read_rows(resume):
        if step < before:
            rows.append((step, values))
    return rows


def _read_rows(path: Path):
    """(step, {name: value}) for every readable row of a log CSV (a row cut short by a kill
    or a cell that is not a number is skipped)."""
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                step = int(float(row.get("step") or "nan"))
            except (TypeError, ValueError):
                continue
            values = {}
            for k, v in row.items():
                if k in (None, "step") or v in (None, ""):
                    continue
                try:
                    values[k] = float(v)
                except (TypeError, ValueError):
                    continue
            yield step, values


def read_run_log(model_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """The loss and learning-rate curves of a model folder's CSV log, for plots.

    Args:
        model_dir: a model folder (its ``logs/metrics.csv`` is read) or a log folder that
            holds ``metrics.csv`` itself (``benchmark`` without ``--save-models`` writes
            ``OUT/logs/classC_seedS/``).

    Returns:
        None when there is no CSV log; else series name (``<stage>/loss/<group>``,
        ``<stage>/lr/<group>``) -> (steps, values): int64 steps, increasing, and float64
        values, one per step that logged the series. Series come in training order (by
        first step, then name).
    """
    model_dir = Path(model_dir)
    path = next(
        (p for p in (model_dir / LOG_DIR / CSV_FILE, model_dir / CSV_FILE) if p.is_file()), None
    )
    if path is None:
        return None
    series: dict[str, dict[int, float]] = {}
    for step, values in _read_rows(path):
        for k, v in values.items():
            series.setdefault(k, {})[step] = v  # a repeated step: the later row wins
    out = {}
    for name, points in series.items():
        steps = np.array(sorted(points), dtype=np.int64)
        out[name] = (steps, np.array([points[s] for s in steps.tolist()], dtype=np.float64))
    return dict(sorted(out.items(), key=lambda kv: (int(kv[1][0][0]), kv[0])))


def log_files(folder: Path) -> dict[str, bytes]:
    """Every file of a log folder, by path relative to it (what a model folder keeps)."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith(_RESUME_SUFFIX)
    }


def write_log_files(files: dict[str, bytes], folder: Path) -> None:
    """Write :func:`log_files`' result under ``folder``."""
    for rel, data in files.items():
        p = Path(folder) / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def is_log_dir(path: Path) -> bool:
    """A folder a run log was written to (the only kind :func:`save_log_files` replaces)."""
    path = Path(path)
    return (path / CSV_FILE).is_file() or (path / TENSORBOARD_DIR).is_dir()


def save_log_files(files: dict[str, bytes], folder: Path) -> Path | None:
    """Put a log at ``folder`` atomically, replacing an earlier log there; None if empty."""
    if not files:
        return None
    from reconad.serialize import atomic_dir

    atomic_dir(Path(folder), lambda tmp: write_log_files(files, tmp), is_log_dir, "run log")
    return Path(folder)


__all__ = [
    "CSV_FILE",
    "FLUSH_EVERY",
    "LOGGERS",
    "LOG_DIR",
    "RunLog",
    "log_files",
    "parse_loggers",
    "read_run_log",
    "save_log_files",
    "tensorboard_available",
]
