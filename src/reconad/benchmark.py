"""Protocol runs over classes and seeds, resumable, with published numbers beside ours.

One result file per (class, seed) is written when that run finishes and skipped when it is
already there, so a long protocol (10 classes x 3 seeds) can be stopped and continued. The
summary prints, per class, our mean (and standard deviation over seeds), the published
number where one exists and the difference, and writes ``summary.csv`` / ``summary.json``.
"""

from __future__ import annotations

import csv
import json
import resource
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from reconad.data.protocol import one_class_split
from reconad.detector import Detector, versions
from reconad.metrics import image_metrics
from reconad.reference import published_auroc, published_source
from reconad.scoring import parse_variant, variant_name
from reconad.serialize import write_json


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def git_commit() -> str | None:
    """The current git commit of the working directory, if any."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def hardware(accelerator: str = "cpu") -> str:
    """The machine a run used, in words, for the result record (e.g. "cuda: NVIDIA H200")."""
    import os

    import torch

    if accelerator in ("cuda", "gpu", "auto") and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    model = ""
    try:  # the host's CPU model: timings from different hosts differ by up to 2x here
        with open("/proc/cpuinfo") as f:
            names = (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
            model = next(names, "")
    except OSError:
        pass
    where = f"{model}, " if model else ""
    return f"cpu: {where}{os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def class_name(names: list[str] | None, c: int) -> str:
    """The name of class ``c``, or its number when the data set names none."""
    return names[c] if names and 0 <= c < len(names) else str(c)


NATIVE_SCORING = {"score": "native", "difficulty": "none", "difficulty_mode": "divide"}


def resolved_settings(
    method: str,
    preset: str | None = None,
    hparams: dict[str, Any] | None = None,
    epochs_scale: float = 1.0,
    scoring: dict[str, str] | None = None,
) -> dict[str, Any]:
    """What a run's records say about how it was trained and scored, resolved before any
    training (the preset's name and every hyper-parameter, as JSON stores them), so that a
    resumed run can refuse a folder whose finished runs used other settings."""
    import dataclasses

    from reconad.methods import get_method

    cls = get_method(method)
    name = preset or next(iter(cls.presets))
    hp = dataclasses.asdict(cls.make_config(name, **(hparams or {})))
    sc = {**NATIVE_SCORING, **(scoring or {})}
    out = {"method": method, "preset": name, "hparams": hp, "epochs_scale": epochs_scale}
    out["scoring"] = {k: sc[k] for k in ("score", "difficulty", "difficulty_mode")}
    return json.loads(json.dumps(out))  # as stored: tuples become lists


def settings_mismatch(record: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """The keys of ``wanted`` (see :func:`resolved_settings`) on which a record differs;
    hyper-parameters are compared one by one and named ``hparams.NAME``. The record's values
    are compared as JSON stores them, so a live config's tuples equal a file's lists."""
    bad = []
    for k, v in wanted.items():
        got = json.loads(json.dumps(record.get(k)))
        if k == "epochs_scale" and got is None:
            got = 1.0
        if k == "scoring":  # records made before scoring options existed were native
            got = {kk: {**NATIVE_SCORING, **(got or {})}[kk] for kk in v}
        if k == "hparams" and isinstance(got, dict):
            bad += [f"hparams.{n}" for n in sorted(set(v) | set(got)) if v.get(n) != got.get(n)]
        elif got != v:
            bad.append(k)
    return bad


def _variant_key(tag: str) -> str:
    """The key an ``--also-score`` variant's AUROC has in a record's ``components``."""
    return variant_name(*parse_variant(tag)) or "+native"


def run_one_class(
    dataset: str,
    train,
    test,
    normal: int,
    method: str,
    seed: int,
    preset: str | None = None,
    val_fraction: float = 0.1,
    epochs_scale: float = 1.0,
    progress: bool = True,
    hparams: dict[str, Any] | None = None,
    scoring: dict[str, str] | None = None,
    accelerator: str = "cpu",
    also_score: list[str] | tuple[str, ...] = (),
    save_to: str | Path | None = None,
    logger: str | tuple[str, ...] | None = None,
    log_to: str | Path | None = None,
) -> dict[str, Any]:
    """Fit on one normal class, score the whole test split, return the result record.

    ``scoring`` holds the Detector's ``score_views`` (under the key ``score``, as the records
    keep it), ``difficulty`` and ``difficulty_mode``;
    ``accelerator`` (cpu, cuda, auto) is where training and scoring run; ``also_score``
    names further scoring variants (e.g. ``multiview+entropy-subtract``, see
    :func:`reconad.scoring.parse_variant`) fitted on the same held-out normals and reported
    as components named ``+VARIANT``, from the same trained network. ``save_to``: a folder
    to keep the fitted detector in (loadable with ``Detector.load``), for later analyses
    without retraining. ``logger`` (csv, tensorboard) logs the fit's steps (see
    :mod:`reconad.runlog`): into ``save_to/logs``, else into ``log_to``.
    """
    split = one_class_split(train, test, normal, val_fraction=val_fraction, seed=seed)
    sc = {**NATIVE_SCORING, **(scoring or {})}  # records keep the key "score"
    det = Detector(
        method,
        preset=preset,
        seed=seed,
        progress=progress,
        epochs_scale=epochs_scale,
        val_fraction=val_fraction,
        accelerator=accelerator,
        hparams=hparams,
        logger=logger,
        score_views=sc["score"],
        difficulty=sc["difficulty"],
        difficulty_mode=sc["difficulty_mode"],
    )
    t0 = time.perf_counter()
    det.fit(split.train, validation=split.val)
    t_fit = time.perf_counter() - t0
    if save_to is not None:
        det.save(save_to)  # the run log, if any, goes with it
    elif log_to is not None:
        det.save_run_log(log_to)
    t0 = time.perf_counter()
    scored = det.explain(split.test, n=0, maps=False)  # scores and components, one pass
    scores = scored["scores"]
    t_score = time.perf_counter() - t0
    labels = split.test_anomalous.astype(int)
    m = image_metrics(labels, scores)
    pred = scores > det.threshold_
    cfg = det.to_config()
    # AUROC of each alternative score the method offers (e.g. DDR-ID's latent and image)
    components = {
        k: 100 * image_metrics(labels, v)["auroc"] for k, v in scored["components"].items()
    }
    for tag in also_score:
        v = det.score_variant(split.test, split.val, *parse_variant(tag))
        components[_variant_key(tag)] = 100 * image_metrics(labels, v)["auroc"]
    return {
        "dataset": dataset,
        "method": method,
        "preset": cfg["preset"],
        "class": normal,
        "class_name": class_name(train.class_names, normal),
        "seed": seed,
        "auroc": 100 * m["auroc"],
        "ap": 100 * m["ap"],
        "f1_max_oracle": 100 * m["f1_max"],
        "tpr_at_5fpr": 100 * m["tpr_at_5fpr"],
        **({"components": components} if components else {}),
        # The leakage-free operating point: threshold from held-out training normals.
        "calibrated": {
            "threshold": det.threshold_,
            "test_fpr": 100 * float(pred[labels == 0].mean()),
            "test_tpr": 100 * float(pred[labels == 1].mean()),
        },
        "n_train": len(split.train),
        "n_val": len(split.val),
        "n_test": len(split.test),
        "fit_seconds": round(t_fit, 2),
        "steps": getattr(det, "steps_", None),
        "images_seen": getattr(det, "images_seen_", None),
        "stage_seconds": {k: round(v, 1) for k, v in det.stage_seconds_.items()},
        "score_seconds": round(t_score, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "hparams": cfg["hparams"],
        "scoring": cfg["scoring"],
        "input": cfg["input"],
        "epochs_scale": epochs_scale,
        "hardware": hardware(accelerator),
        "channels_last": bool(det.method_.channels_last),  # training layout (same maths)
        "versions": versions(),
        "git_commit": git_commit(),
    }


def run_protocol(
    dataset: str,
    method: str,
    classes: list[int],
    seeds: list[int],
    out_dir: Path,
    root: str | Path | None = None,
    preset: str | None = None,
    val_fraction: float = 0.1,
    epochs_scale: float = 1.0,
    progress: bool = True,
    hparams: dict[str, Any] | None = None,
    scoring: dict[str, str] | None = None,
    log=print,
    accelerator: str = "cpu",
    also_score: list[str] | tuple[str, ...] = (),
    save_models: str | Path | None = None,
    logger: str | tuple[str, ...] | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) the one-class protocol; returns every (class, seed) record.

    ``save_models``: a folder to keep each fitted detector in, as ``class{C}_seed{S}/``.
    ``logger``: log each fit's steps (csv, tensorboard) into its saved model's ``logs/``,
    or, without ``save_models``, into ``out_dir/logs/class{C}_seed{S}/``. Logging changes
    no result, so it is not a setting a resumed folder must match.

    Raises:
        ValueError: ``out_dir`` holds runs made with other settings (preset,
            hyper-parameters, ``epochs_scale`` or scoring): the summary would mix them.
    """
    from reconad.data.datasets import load_dataset

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = resolved_settings(method, preset, hparams, epochs_scale, scoring)
    done = {(r["class"], r["seed"]): r for r in collect_records(out_dir)}
    for rec in done.values():
        bad = settings_mismatch(rec, wanted)
        if bad:
            raise ValueError(
                f"{out_dir} holds class {rec.get('class')} seed {rec.get('seed')} run with other "
                f"settings ({', '.join(bad)} differ): choose another --out, or the same settings"
            )
    # A finished run that lacks a requested --also-score variant is run again (the same
    # settings, so the new record only adds the variant), not skipped without it.
    tags = {_variant_key(t) for t in also_score}
    for key, rec in list(done.items()):
        missing = tags - set(rec.get("components", {}))
        if missing and key[0] in classes and key[1] in seeds:
            log(
                f"[{dataset}/{method}] class {key[0]}, seed {key[1]}: its record lacks "
                f"{', '.join(sorted(missing))}: running it again"
            )
            del done[key]
    todo = [(c, s) for s in seeds for c in classes if (c, s) not in done]
    train = test = None
    if todo:
        train = load_dataset(dataset, "train", root=root)
        test = load_dataset(dataset, "test", root=root)
    records = []
    for seed in seeds:
        for c in classes:
            path = _result_path(out_dir, c, seed)
            if (c, seed) in done:  # read once above, with the settings check
                records.append(done[(c, seed)])
                continue
            log(f"[{dataset}/{method}] class {c}, seed {seed}: training")
            rec = run_one_class(
                dataset,
                train,
                test,
                c,
                method,
                seed,
                preset=preset,
                val_fraction=val_fraction,
                epochs_scale=epochs_scale,
                progress=progress,
                hparams=hparams,
                scoring=scoring,
                accelerator=accelerator,
                also_score=also_score,
                save_to=Path(save_models) / path.stem if save_models else None,
                logger=logger,
                log_to=out_dir / "logs" / path.stem if logger and not save_models else None,
            )
            write_json(path, rec)
            log(
                f"[{dataset}/{method}] class {c}, seed {seed}: AUROC {rec['auroc']:.2f} "
                f"(fit {rec['fit_seconds']:.0f} s, score {rec['score_seconds']:.1f} s)"
            )
            records.append(rec)
    return records


def _published_mean(ref: dict[str, float], classes: list[int]) -> float | None:
    """The published mean over the classes we ran: the paper's own mean when we ran every
    class it lists, else the mean of its per-class numbers for our classes (a mean over
    all ten classes beside ours over two would mislead)."""
    per_class = {k: v for k, v in ref.items() if k != "mean"}
    if not per_class or set(per_class) <= {str(c) for c in classes}:
        return ref.get("mean")
    if all(str(c) in per_class for c in classes):
        return float(np.mean([per_class[str(c)] for c in classes]))
    return None


def _result_path(out_dir: Path, c: int, seed: int) -> Path:
    return out_dir / f"class{c}_seed{seed}.json"


def collect_records(out_dir: Path, classes: list[int] | None = None) -> list[dict[str, Any]]:
    """Every finished (class, seed) record in ``out_dir``, e.g. to summarise all seeds run
    so far, whichever invocation ran them."""
    records = [json.loads(p.read_text()) for p in sorted(Path(out_dir).glob("class*_seed*.json"))]
    if classes is not None:
        records = [r for r in records if r["class"] in classes]
    return sorted(records, key=lambda r: (r["seed"], r["class"]))


def summarize(
    records: list[dict[str, Any]],
    reference_method: str | None = None,
    references: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """Per-class mean/std over seeds, with published numbers and differences.

    ``references`` names further methods whose published numbers are shown beside ours
    (e.g. Deep SVDD's and ARNet's beside DDR-ID); the AUROC of each score component a
    method offers (``components`` in the records) is averaged like the main one.
    """
    if not records:
        return {"rows": [], "mean": None}
    dataset, method = records[0]["dataset"], records[0]["method"]
    ref = published_auroc(reference_method or method, dataset)
    others = {m: published_auroc(m, dataset) for m in references}
    rows = []
    for c in sorted({r["class"] for r in records}):
        rs = [r for r in records if r["class"] == c]
        aurocs = np.array([r["auroc"] for r in rs])
        pub = ref.get(str(c))
        rows.append(
            {
                "class": c,
                "class_name": rs[0].get("class_name", str(c)),
                "auroc": float(aurocs.mean()),
                "auroc_std": float(aurocs.std()) if len(aurocs) > 1 else 0.0,
                "seeds": sorted(r["seed"] for r in rs),
                "published": pub,
                "diff": None if pub is None else float(aurocs.mean() - pub),
                "components": _mean_components(rs),
                "references": {m: o.get(str(c)) for m, o in others.items()},
                "fit_seconds": float(np.mean([r["fit_seconds"] for r in rs])),
                "score_seconds": float(np.mean([r["score_seconds"] for r in rs])),
                "peak_rss_mb": float(max(r["peak_rss_mb"] for r in rs)),
            }
        )
    per_seed_means = [
        np.mean([r["auroc"] for r in records if r["seed"] == s])
        for s in sorted({r["seed"] for r in records})
    ]
    mean = float(np.mean([row["auroc"] for row in rows]))
    pub_mean = _published_mean(ref, [row["class"] for row in rows])
    return {
        "dataset": dataset,
        "method": method,
        "preset": records[0].get("preset"),
        "scoring": _scoring_tag(records[0]),
        "rows": rows,
        "mean": mean,
        "mean_std_over_seeds": float(np.std(per_seed_means)) if len(per_seed_means) > 1 else 0.0,
        "published_mean": pub_mean,
        "diff_mean": None if pub_mean is None else mean - pub_mean,
        "component_means": {
            k: float(np.mean([row["components"][k] for row in rows]))
            for k in rows[0]["components"]
            if all(k in row["components"] for row in rows)
        },
        "reference_means": {
            m: _published_mean(o, [row["class"] for row in rows]) for m, o in others.items()
        },
        "published_source": published_source(reference_method or method, dataset),
        "total_fit_seconds": float(sum(r["fit_seconds"] for r in records)),
        "total_score_seconds": float(sum(r["score_seconds"] for r in records)),
        "peak_rss_mb": float(max(r["peak_rss_mb"] for r in records)),
        "n_runs": len(records),
        "versions": records[-1].get("versions"),
        "git_commit": records[-1].get("git_commit"),
    }


def _scoring_tag(record: dict[str, Any]) -> str:
    """``+multiview+entropy`` etc. for a record's scoring options ("" when native)."""
    from reconad.scoring import variant_name

    sc = record.get("scoring") or {}
    return variant_name(
        sc.get("score", "native"), sc.get("difficulty", "none"), sc.get("difficulty_mode", "divide")
    )


def _mean_components(records: list[dict[str, Any]]) -> dict[str, float]:
    names = sorted({k for r in records for k in r.get("components", {})})
    return {
        k: float(np.mean([r["components"][k] for r in records if k in r.get("components", {})]))
        for k in names
    }


def _extra_columns(summary: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Component names and reference methods present in a summary (older ones lack them)."""
    rows = summary["rows"]
    comps = sorted({k for row in rows for k in row.get("components", {})})
    return comps, list(summary.get("reference_means", {}))


def write_summary(summary: dict[str, Any], out_dir: Path) -> None:
    """Write ``summary.json`` and ``summary.csv`` beside the per-run files."""
    out_dir = Path(out_dir)
    write_json(out_dir / "summary.json", summary)
    fields = [
        "class",
        "class_name",
        "auroc",
        "auroc_std",
        "published",
        "diff",
        "fit_seconds",
        "score_seconds",
        "peak_rss_mb",
    ]
    comps, refs = _extra_columns(summary)
    fields[4:4] = [f"auroc_{k}" for k in comps] + [f"published_{m}" for m in refs]
    tmp = out_dir / ".summary.csv.tmp"
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for row in summary["rows"]:
            extra = {f"auroc_{k}": v for k, v in row.get("components", {}).items()}
            extra.update({f"published_{m}": v for m, v in row.get("references", {}).items()})
            w.writerow({**row, **extra})
        w.writerow(
            {
                "class": "mean",
                "auroc": summary["mean"],
                "auroc_std": summary["mean_std_over_seeds"],
                "published": summary["published_mean"],
                "diff": summary["diff_mean"],
                "fit_seconds": summary["total_fit_seconds"],
                "score_seconds": summary["total_score_seconds"],
                "peak_rss_mb": summary["peak_rss_mb"],
                **{f"auroc_{k}": v for k, v in summary.get("component_means", {}).items()},
                **{f"published_{m}": v for m, v in summary.get("reference_means", {}).items()},
            }
        )
    tmp.replace(out_dir / "summary.csv")


def render_table(summary: dict[str, Any]):
    """A rich Table of the summary: class, ours (+- std), published, difference, time."""
    from rich.table import Table

    name = summary["method"] + summary.get("scoring", "")
    title = f"{name} on {summary['dataset']} (preset {summary['preset']})"
    t = Table(title=title)
    comps, refs = _extra_columns(summary)
    # without published numbers of the method itself, its published/diff columns are left out
    own = summary["published_mean"] is not None or any(
        r["published"] is not None for r in summary["rows"]
    )
    cols = ["class", "AUROC %", *(f"{k} %" for k in comps), *(["published", "diff"] * own)]
    cols += [f"{m} (pub.)" for m in refs] + ["fit s", "score s"]
    for col in cols:
        t.add_column(col, justify="right" if col != "class" else "left")

    def fmt(v, signed=False):
        return "-" if v is None else (f"{v:+.1f}" if signed else f"{v:.1f}")

    for r in summary["rows"]:
        ours = f"{r['auroc']:.1f}" + (f" ± {r['auroc_std']:.1f}" if len(r["seeds"]) > 1 else "")
        t.add_row(
            f"{r['class']} {r['class_name']}",
            ours,
            *(fmt(r.get("components", {}).get(k)) for k in comps),
            *([fmt(r["published"]), fmt(r["diff"], True)] * own),
            *(fmt(r.get("references", {}).get(m)) for m in refs),
            f"{r['fit_seconds']:.0f}",
            f"{r['score_seconds']:.1f}",
        )
    t.add_row(
        "mean",
        f"{summary['mean']:.1f}",
        *(fmt(summary.get("component_means", {}).get(k)) for k in comps),
        *([fmt(summary["published_mean"]), fmt(summary["diff_mean"], True)] * own),
        *(fmt(summary["reference_means"].get(m)) for m in refs),
        f"{summary['total_fit_seconds']:.0f}",
        f"{summary['total_score_seconds']:.1f}",
        style="bold",
    )
    return t
