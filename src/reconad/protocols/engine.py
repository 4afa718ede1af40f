"""The one engine every benchmark protocol runs on: resume, settings check, provenance,
seeds and the summary files.

A protocol (one-class, industrial, adversarial) supplies only its targets (what one result
file covers: a class and seed, a seed, a target and seed), how to run one target, and its
summary and table. The engine does the rest, the same way for all three:

1. read every finished record in the results folder and refuse the folder when one of them
   was made with other settings (the summary would mix them);
2. run each target whose record is missing (or, for a protocol that grows its records,
   unfinished), loading the data once, before the first target that runs;
3. close each new record with its provenance (hardware, versions, git commit) and write it
   atomically, so that a stopped run continues where it stopped;
4. summarise the folder's records and write the summary files.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from reconad.protocols.fingerprint import resolved_settings
from reconad.protocols.provenance import git_commit, provenance
from reconad.serialize import write_json

Log = Callable[[str], Any]


@dataclass(kw_only=True)
class RunSettings:
    """What every protocol run needs: the data, the method and its training, the seeds.

    Attributes:
        dataset: a data set name, or for the industrial protocol a category folder.
        method: a registered method name.
        seeds: each seed is one run per target (its split, initial weights and order).
        out: the results folder (default: ``benchmarks/results/...`` by protocol).
        root: the data root (else ``$RECONAD_DATA``, else ``~/.cache/reconad``).
        preset, hparams, epochs_scale: the method's configuration.
        val_fraction: share of the training normals held out (threshold, calibration).
        accelerator: cpu, cuda or auto.
        progress: progress bars during training.
        save_models: a folder to keep each fitted detector in (one sub-folder a target).
        logger: step loggers (csv, tensorboard); logging changes no result.
    """

    dataset: str
    method: str = "ae"
    seeds: tuple[int, ...] = (0,)
    out: Path | None = None
    root: Path | None = None
    preset: str | None = None
    hparams: dict[str, Any] = field(default_factory=dict)
    epochs_scale: float = 1.0
    val_fraction: float = 0.1
    accelerator: str = "cpu"
    progress: bool = True
    save_models: Path | None = None
    logger: tuple[str, ...] = ()

    def method_settings(self, scoring: dict[str, str] | None = None) -> dict[str, Any]:
        """The method's settings as records store them (see ``resolved_settings``)."""
        return resolved_settings(self.method, self.preset, self.hparams, self.epochs_scale, scoring)

    def folder_name(self) -> str:
        """``METHOD[-PRESET]``, the start of every protocol's default folder name."""
        return self.method + (f"-{self.preset}" if self.preset else "")

    def detector(self, seed: int, **options: Any):
        """An unfitted Detector with the method and training settings every protocol shares;
        ``options`` are the protocol's own Detector options (scoring, input size...)."""
        from reconad.detector import Detector

        return Detector(
            self.method,
            preset=self.preset,
            seed=seed,
            progress=self.progress,
            epochs_scale=self.epochs_scale,
            val_fraction=self.val_fraction,
            accelerator=self.accelerator,
            hparams=self.hparams,
            logger=self.logger,
            **options,
        )


@dataclass(frozen=True)
class Target:
    """What one result file covers. ``key`` matches :meth:`Protocol.key` of its record."""

    key: tuple
    stem: str  # the result file's name without .json
    seed: int
    label: str  # for log lines, e.g. "class 3, seed 0"
    item: Any = None  # the protocol's own handle (a class index, a target name)


class Protocol:
    """A benchmark protocol: its targets, one target's run, its summary and table."""

    files: ClassVar[str]  # how the results folder is laid out, for the closing line
    record_glob: ClassVar[str]  # the result files, e.g. "class*_seed*.json"
    key_fields: ClassVar[tuple[str, ...]]  # what one result file covers, e.g. (class, seed)
    #: whether ``dataset`` names a data set of the registry (its alias resolved here);
    #: False where it may be a folder (the industrial protocol)
    registry_dataset: ClassVar[bool] = True

    def __init__(self, settings: RunSettings) -> None:
        if self.registry_dataset:  # a copy: the caller's settings stay as given
            from reconad.data.datasets import canonical_name

            settings = replace(settings, dataset=canonical_name(settings.dataset))
        self.settings = settings
        self.out = Path(settings.out) if settings.out is not None else self.default_out()
        self.train = self.test = None  # the data, read by load

    # ---- what a protocol supplies ---------------------------------------------------------
    def default_out(self) -> Path:
        raise NotImplementedError

    def targets(self) -> list[Target]:
        raise NotImplementedError

    def mismatch(self, record: dict[str, Any]) -> list[str]:
        """The settings on which ``record`` differs from this run's."""
        raise NotImplementedError

    def load(self, log: Log) -> None:
        """Read the data, once, before the first target that runs: by default the train and
        test splits of the data set."""
        from reconad.data.datasets import load_dataset

        s = self.settings
        self.train = load_dataset(s.dataset, "train", root=s.root)
        self.test = load_dataset(s.dataset, "test", root=s.root)

    def needs_run(self, target: Target, record: dict[str, Any], log: Log) -> bool:
        """Whether a target whose record exists runs again (it lacks something asked for)."""
        return False

    def run_target(self, target: Target, record: dict[str, Any] | None, log: Log) -> dict:
        raise NotImplementedError

    def summarize(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        raise NotImplementedError

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Write the summary files: by default ``summary.json``."""
        write_json(self.out / "summary.json", summary)

    def table(self, summary: dict[str, Any]):
        """A rich Table of the summary."""
        raise NotImplementedError

    # ---- shared -----------------------------------------------------------------------
    def collect(self) -> list[dict[str, Any]]:
        """Every finished record in the results folder, whichever run wrote it."""
        return collect(self.out, self.record_glob, self.key_fields)

    def key(self, record: dict[str, Any]) -> tuple:
        return tuple(record[f] for f in self.key_fields)

    def describe(self, record: dict[str, Any]) -> str:
        """The record in words, for the refusal (e.g. "class 3 seed 0")."""
        return " ".join(f"{f} {record.get(f)}" for f in self.key_fields)

    def result_line(self, record: dict[str, Any]) -> str:
        """A scored target's AUROC and times, for the log line that closes its run."""
        fit, score = record["fit_seconds"], record["score_seconds"]
        return f"AUROC {record['auroc']:.2f} (fit {fit:.0f} s, score {score:.1f} s)"

    def save(self, target: Target, record: dict[str, Any]) -> None:
        """Write a target's record atomically (also mid-run, for protocols that grow it)."""
        write_json(self.out / f"{target.stem}.json", record)

    def summary_records(self, ran: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records the summary covers: by default every one in the folder."""
        return self.collect() or ran

    def model_dir(self, target: Target) -> Path | None:
        """Where ``--save-models`` keeps a target's detector (``DIR/<stem>``)."""
        s = self.settings
        return Path(s.save_models) / target.stem if s.save_models else None

    def log_dir(self, target: Target) -> Path | None:
        """Where a target's step log goes without ``--save-models``: ``OUT/logs/<stem>``."""
        s = self.settings
        return self.out / "logs" / target.stem if s.logger and not s.save_models else None


def collect(out: Path, glob: str, key_fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """The records in ``out`` whose files match ``glob``, by seed then key. A file without
    the key fields or a method (an analysis script's output kept beside the runs) is none."""
    recs = [json.loads(p.read_text()) for p in sorted(Path(out).glob(glob))]
    recs = [r for r in recs if all(f in r for f in (*key_fields, "seed", "method"))]
    return sorted(recs, key=lambda r: (r["seed"], *(r[f] for f in key_fields)))


def fit_detector(det, images, val, save_to: Path | None, log_to: Path | None) -> dict[str, Any]:
    """Fit ``det`` on ``images`` (``val``: its held-out normals), then keep the detector in
    ``save_to``, else its run log (if any) in ``log_to``. Returns what every record says
    about the fit: its time, optimiser steps, images seen, time per stage, hyper-parameters
    as resolved, input, and training layout."""
    t0 = time.perf_counter()
    det.fit(images, validation=val)
    fit_seconds = time.perf_counter() - t0
    if save_to is not None:
        det.save(save_to)  # the run log, if any, goes with it
    elif log_to is not None:
        det.save_run_log(log_to)
    cfg = det.to_config()
    return {
        "fit_seconds": round(fit_seconds, 2),
        "steps": getattr(det, "steps_", None),
        "images_seen": getattr(det, "images_seen_", None),
        "stage_seconds": {k: round(v, 1) for k, v in det.stage_seconds_.items()},
        "hparams": cfg["hparams"],
        "input": cfg["input"],
        "channels_last": bool(det.method_.channels_last),  # training layout (same maths)
    }


def other_settings(what: str, bad: list[str]) -> ValueError:
    """The refusal of ``what`` (e.g. "OUT holds class 3 seed 0 run") made with settings
    that differ from this run's (``bad`` names them)."""
    return ValueError(
        f"{what} with other settings ({', '.join(bad)} differ): choose another --out, or the "
        "same settings"
    )


def fmt(value: Any, signed: bool = False) -> str:
    """A table cell: a number to one decimal (signed where ``signed``), "-" for none, a
    word as it is."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def mean_cell(mean: float | None, std: float | None, n_seeds: int) -> str:
    """``mean ± std`` over seeds in a table (the mean alone from one seed)."""
    return fmt(mean) + (f" ± {std:.1f}" if mean is not None and n_seeds > 1 else "")


@dataclass
class Outcome:
    """A protocol run's records (the targets asked for), its summary and its folder."""

    records: list[dict[str, Any]]
    summary: dict[str, Any]
    out: Path
    protocol: Protocol

    def table(self):
        return self.protocol.table(self.summary)


def run(protocol: Protocol, log: Log = print) -> Outcome:
    """Run (or resume) a protocol; returns its records, summary and folder.

    Raises:
        ValueError: the results folder holds a record made with other settings.
        DataError: the data set is missing or unusable.
    """
    out = protocol.out
    out.mkdir(parents=True, exist_ok=True)
    commit = git_commit()  # the code this run started with, not the HEAD when it ends
    have: dict[tuple, dict[str, Any]] = {}
    for rec in protocol.collect():
        bad = protocol.mismatch(rec)
        if bad:
            raise other_settings(f"{out} holds {protocol.describe(rec)} run", bad)
        have[protocol.key(rec)] = rec
    records, loaded = [], False
    for target in protocol.targets():
        rec = have.get(target.key)
        if rec is not None and not protocol.needs_run(target, rec, log):
            records.append(rec)
            continue
        if not loaded:
            protocol.load(log)
            loaded = True
        rec = protocol.run_target(target, rec, log)
        rec.update(provenance(protocol.settings.accelerator, commit))
        protocol.save(target, rec)
        records.append(rec)
    summary = protocol.summarize(protocol.summary_records(records))
    protocol.write_summary(summary)
    return Outcome(records, summary, out, protocol)
