"""The industrial protocol: one MVTec AD-style category (Magnetic-Tile, an MVTec AD class).

Per seed: fit on ``train/good`` minus a seeded held-out share of it (``val_fraction``); the
held-out normals alone set the image threshold and a pixel threshold (same target FPR);
score every test image; report image AUROC over all test images, image AUROC per defect
type (that type against all good test images), and pixel AUROC and AUPRO (FPR limit 0.3)
at each mask's own resolution: maps are resized bilinearly back to each image's original
size, since the images vary in size. Test labels and masks are read only by the metrics.

Images are resized to one square input side (rounded up to what the method needs). Train
images must agree in channels unless ``channels`` converts them (Magnetic-Tile: 1, gray);
test images are converted to the trained model's channel count. Defect images whose type
has no ``ground_truth`` folder are left out of the pixel metrics; an empty mask keeps its
image anomalous and adds only normal pixels.

One JSON per seed (``seed{s}.json``) is written atomically when the seed finishes and
skipped when present; a folder holding runs made with other settings is refused. The
summary over seeds, its files and its table are in :mod:`reconad.industrial_summary`.
"""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from reconad.benchmark import (
    git_commit,
    hardware,
    peak_rss_mb,
    resolved_settings,
    settings_mismatch,
)
from reconad.calibration import threshold_at_fpr
from reconad.data.folders import read_mvtec
from reconad.data.imageset import DataError, ImageSet
from reconad.data.protocol import holdout_split
from reconad.detector import Detector, resize_maps, versions
from reconad.inputs import round_up
from reconad.metrics import image_metrics, pixel_metrics
from reconad.score_choice import MIN_IMAGES, Choice
from reconad.serialize import write_json

#: named industrial data sets: folder under the data root, and the channels they are read as
INDUSTRIAL_DATASETS: dict[str, dict[str, Any]] = {
    "magnetic-tile": {"channels": 1},
    "mvtec/screw": {"channels": 1},
    "mvtec/transistor": {"channels": 3},
}


def is_industrial(dataset: str) -> bool:
    """Whether ``dataset`` names an industrial set or is an MVTec-style category folder."""
    return dataset in INDUSTRIAL_DATASETS or (Path(dataset) / "train" / "good").is_dir()


def resolve_category(dataset: str, root: str | Path | None = None) -> tuple[str, Path]:
    """``(name, folder)`` of an industrial data set name (under the data root) or a path.

    Raises:
        DataError: naming the folder looked at when it is missing.
    """
    from reconad.data.datasets import resolve_data_root

    if dataset in INDUSTRIAL_DATASETS:
        path = resolve_data_root(root) / dataset
        if not (path / "train" / "good").is_dir():
            raise DataError(
                f"{dataset}: no MVTec-style category at {path} (expected train/good, test/, "
                "ground_truth/); it is not downloadable: put it there or pass --data-root"
            )
        return dataset, path
    path = Path(dataset)
    if not (path / "train" / "good").is_dir():
        raise DataError(f"{path}: not an MVTec-style category folder (no train/good)")
    return path.resolve().name, path


def _pct(v: float | None) -> float | None:
    return None if v is None else 100.0 * float(v)


def industrial_metrics(
    test: ImageSet,
    scores: np.ndarray,
    maps: list[np.ndarray] | None,
    threshold: float = float("nan"),
    pixel_threshold: float | None = None,
) -> dict[str, Any]:
    """Image and pixel metrics (in %) of scores and original-size maps on an MVTec-style set.

    Args:
        test: the labelled test set (``class_names`` with ``"good"``, masks at original size).
        scores: ``(N,)`` image scores, higher = more anomalous.
        maps: per image a map at its original size, or None (method without maps).
        threshold: the image threshold from held-out normals (NaN: no calibrated rates).
        pixel_threshold: the pixel threshold from held-out normals, if any.
    """
    labels = test.is_anomalous.astype(int)
    good = test.class_names.index("good")
    res: dict[str, Any] = {}
    m = image_metrics(labels, scores)
    res.update(auroc=_pct(m["auroc"]), ap=_pct(m["ap"]), f1_max_oracle=_pct(m["f1_max"]))
    res["tpr_at_5fpr"] = _pct(m["tpr_at_5fpr"])
    per_type, counts = {}, {}
    for i, name in enumerate(test.class_names):
        counts[name] = int((test.labels == i).sum())
        if i != good and counts[name]:
            sel = (test.labels == i) | (test.labels == good)
            per_type[name] = _pct(image_metrics(labels[sel], scores[sel])["auroc"])
    res.update(auroc_per_type=per_type, n_per_type=counts)
    res.update(n_test=len(test), n_anomalous=int(labels.sum()))
    if np.isfinite(threshold):
        pred = scores > threshold
        res["calibrated"] = {
            "threshold": float(threshold),
            "test_fpr": _pct(pred[labels == 0].mean()),
            "test_tpr": _pct(pred[labels == 1].mean()),
        }
    res.update(pixel_auroc=None, aupro=None)
    masks = test.masks or [None] * len(test)
    known = [i for i in range(len(test)) if test.labels[i] == good or masks[i] is not None]
    if maps is None:
        res["pixel_note"] = "the method produces no maps"
    elif not any(m is not None for m in masks):
        res["pixel_note"] = "the test set has no ground-truth masks"
    else:
        gts = [np.zeros(test.orig_sizes[i], bool) if masks[i] is None else masks[i] for i in known]
        sub = [maps[i] for i in known]
        res.update({k: _pct(v) for k, v in pixel_metrics(gts, sub).items()})
        n_pos = int(sum(g.sum() for g in gts))
        res.update(
            n_pixel_images=len(known),
            n_empty_masks=sum(1 for i in known if labels[i] and not masks[i].any()),
            n_pixels=int(sum(g.size for g in gts)),
            n_positive_pixels=n_pos,
        )
        if pixel_threshold is not None:
            flag = np.concatenate([(a > pixel_threshold).ravel() for a in sub])
            truth = np.concatenate([g.ravel() for g in gts])
            res["calibrated_pixel"] = {
                "threshold": float(pixel_threshold),
                "test_fpr": _pct(flag[~truth].mean()),
                "test_tpr": _pct(flag[truth].mean()),
            }
    res["scores"] = [float(s) for s in scores]
    return res


def evaluate_industrial(
    detector: Detector, test: ImageSet, pixel_threshold: float | None = None
) -> dict[str, Any]:
    """Score an MVTec-style test set with a fitted detector; the industrial metrics in %.

    What ``reconad test`` and ``reconad benchmark`` on an industrial set both call. Adds
    ``score_seconds`` (scoring, and resizing maps back to each image's size),
    ``metric_seconds``, and ``peak_rss_mb_scoring``: the peak RSS once scoring is done,
    before the full-resolution pixel metrics (which can take gigabytes) run.
    """
    t0 = time.perf_counter()
    ex = detector.explain(test, n=0, map_scores=True)  # also map_max / map_topk AUROCs
    maps = None if ex["maps"] is None else resize_maps(ex["maps"], test.orig_sizes)
    t_score = time.perf_counter() - t0
    rss = peak_rss_mb()
    t0 = time.perf_counter()
    res = industrial_metrics(test, ex["scores"], maps, detector.threshold_, pixel_threshold)
    labels = test.is_anomalous.astype(int)
    comps = ex.get("components") or {}  # AUROC of each alternative image score, if any
    if comps:
        res["components"] = {k: _pct(image_metrics(labels, v)["auroc"]) for k, v in comps.items()}
    res.update(score_seconds=round(t_score, 2), metric_seconds=round(time.perf_counter() - t0, 2))
    res["peak_rss_mb_scoring"] = round(rss, 1)
    return res


def reset_peak_rss() -> bool:
    """Reset this process's peak-RSS mark to its current RSS (Linux), so that each seed's
    peak is its own; False where the system does not allow it (the peak then counts from
    the start of the process)."""
    gc.collect()  # the previous seed's model and maps go first
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _pixel_threshold(det: Detector, val: ImageSet, target_fpr: float) -> float | None:
    if not len(val) or not type(det.method_).produces_maps:
        return None
    vm = det.anomaly_maps(val, original_size=True)
    return threshold_at_fpr(np.concatenate([m.ravel() for m in vm]).astype(np.float64), target_fpr)


def _image_score_choice(det: Detector, val: ImageSet) -> Choice | None:
    """The image score a map method would use with ``image_score='auto'``: chosen on the
    held-out normals and synthetic defects (``reconad.score_choice``), never on the test
    set; None where there is no choice (no maps, a fused score, too few held-out images)."""
    if det.image_score == "auto" and det.image_score_auroc_:
        return Choice(det.image_score_, det.image_score_auroc_, det.image_score_strength_)
    if not type(det.method_).produces_maps or det.scoring_ is not None or len(val) < MIN_IMAGES:
        return None
    return det.image_score_choice(val)


def image_score_entries(det: Detector, res: dict[str, Any], choice: Choice) -> dict[str, Any]:
    """The record's entries for the leakage-free image-score choice: what was chosen, each
    candidate's AUROC on held-out normals vs synthetic defects, and the chosen score's
    test AUROC (``auroc_chosen``), read off the scores already computed."""
    chosen, aurocs, strength = choice
    if chosen == det.image_score_:
        test_auroc = res["auroc"]
    else:
        test_auroc = (res.get("components") or {}).get(chosen)
    return {
        "image_score_choice": {
            "chosen": chosen,
            "synthetic_auroc": {k: _pct(v) for k, v in aurocs.items()},
            "defect_strength": strength,
        },
        "auroc_chosen": test_auroc,
    }


def run_industrial(
    dataset: str,
    method: str,
    seeds: list[int],
    out_dir: str | Path,
    root: str | Path | None = None,
    size: int = 128,
    channels: int | None = None,
    preset: str | None = None,
    val_fraction: float = 0.1,
    target_fpr: float = 0.05,
    epochs_scale: float = 1.0,
    progress: bool = True,
    hparams: dict[str, Any] | None = None,
    log=print,
    save_models: str | Path | None = None,
    accelerator: str = "cpu",
    normalize: str = "none",
    image_score: str = "native",
    patch: int | None = None,
    augment: str = "",
    logger: str | tuple[str, ...] | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) the industrial protocol for one method; returns each seed's record.

    Whatever ``image_score`` the detector uses, a map method's record also holds the score
    ``image_score='auto'`` would choose (``image_score_choice``) and its test AUROC
    (``auroc_chosen``): the leakage-free choice, reported beside the native score.

    ``save_models``: a folder to keep each seed's fitted detector in (``seed{N}/``, loadable
    with ``Detector.load`` / ``reconad predict --model``), e.g. to draw heat-map grids later.
    ``logger``: log each fit's steps (csv, tensorboard) into its saved model's ``logs/``, or,
    without ``save_models``, into ``out_dir/logs/seed{N}/`` (not a setting: it changes no
    result).

    Raises:
        DataError: the category is missing or unusable.
        ValueError: ``out_dir`` holds runs made with other settings.
    """
    from reconad.methods import get_method

    name, path = resolve_category(dataset, root)
    cls = get_method(method)
    side = round_up(int(size), cls.size_multiple, cls.min_size)
    if channels is None:
        channels = INDUSTRIAL_DATASETS.get(dataset, {}).get("channels")
    settings = {
        "dataset": name,
        "method": method,
        "preset": preset or next(iter(cls.presets)),
        "size": side,
        "channels": channels,
        "val_fraction": val_fraction,
        "target_fpr": target_fpr,
        "epochs_scale": epochs_scale,
        "hparams": dict(hparams or {}),
    }
    if normalize != "none":  # only then a key, so earlier results keep their settings
        settings["normalize"] = normalize
    if image_score != "native":
        settings["image_score"] = image_score
    if patch is not None:  # the network sees patch x patch tiles of the size x size image
        settings["patch"] = patch
    if augment:
        settings["augment"] = augment
    settings = json.loads(json.dumps(settings))  # as stored: tuples become lists
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = collect_industrial(out_dir)
    # The protocol's own settings compare as stored; the method's hyper-parameters as
    # resolved (preset defaults included), as the one-class protocol does, so a changed
    # default is caught and an explicit --set equal to the default is not refused.
    wanted = resolved_settings(method, settings["preset"], hparams, epochs_scale)
    method_keys = ("preset", "hparams", "epochs_scale", "method")  # compared as resolved
    for rec in records:
        stored = rec.get("settings") or {}
        # keys only some runs have (normalize, image_score, patch) count when either has them
        keys = [*settings, *(k for k in stored if k not in settings)]
        bad = [k for k in keys if k not in method_keys and stored.get(k) != settings.get(k)]
        bad += settings_mismatch({**rec, "epochs_scale": stored.get("epochs_scale")}, wanted)
        if bad:
            raise ValueError(
                f"{out_dir} holds seed {rec.get('seed')} run with other settings "
                f"({', '.join(bad)} differ): choose another --out, or the same settings"
            )
    done = {r["seed"] for r in records}
    train = test = None
    for seed in (s for s in seeds if s not in done):
        if train is None:
            train = read_mvtec(path, "train", size=(side, side), channels=channels)
            test = read_mvtec(path, "test", size=(side, side), channels=train.channels)
        tiles = f" in {patch}x{patch} tiles" if patch else ""
        log(f"{name}/{method} seed {seed}: training at {side}x{side}{tiles}")
        save_to = Path(save_models) / f"seed{seed}" if save_models else None
        log_to = out_dir / "logs" / f"seed{seed}" if logger and not save_models else None
        rec = _run_seed(train, test, settings, seed, progress, save_to, accelerator, logger, log_to)
        rec["category_path"] = str(path)
        write_json(out_dir / f"seed{seed}.json", rec)
        log(
            f"{name}/{method} seed {seed}: image AUROC {rec['auroc']:.2f} "
            f"(fit {rec['fit_seconds']:.0f} s, score {rec['score_seconds']:.1f} s)"
        )
        records.append(rec)
    return sorted((r for r in records if r["seed"] in seeds), key=lambda r: r["seed"])


def _run_seed(
    train: ImageSet,
    test: ImageSet,
    settings: dict[str, Any],
    seed: int,
    progress: bool,
    save_to: Path | None = None,
    accelerator: str = "cpu",
    logger: str | tuple[str, ...] | None = None,
    log_to: Path | None = None,
) -> dict[str, Any]:
    fit, val = holdout_split(train, settings["val_fraction"], seed)
    per_seed_peak = reset_peak_rss()
    det = Detector(
        settings["method"],
        preset=settings["preset"],
        image_size=settings["size"],
        val_fraction=settings["val_fraction"],
        target_fpr=settings["target_fpr"],
        seed=seed,
        progress=progress,
        epochs_scale=settings["epochs_scale"],
        normalize=settings.get("normalize", "none"),
        image_score=settings.get("image_score", "native"),
        patch=settings.get("patch"),
        augment=settings.get("augment", ""),
        accelerator=accelerator,
        hparams=settings["hparams"],
        logger=logger,
    )
    t0 = time.perf_counter()
    det.fit(fit, validation=val)
    t_fit = time.perf_counter() - t0
    if save_to is not None:
        det.save(save_to)  # the run log, if any, goes with it
    elif log_to is not None:
        det.save_run_log(log_to)
    pixel_threshold = _pixel_threshold(det, val, settings["target_fpr"])
    choice = _image_score_choice(det, val)
    res = evaluate_industrial(det, test, pixel_threshold)
    if choice is not None:
        res.update(image_score_entries(det, res, choice))
    rss = res.pop("peak_rss_mb_scoring")
    cfg = det.to_config()
    return {
        "dataset": settings["dataset"],
        "method": settings["method"],
        "preset": cfg["preset"],
        "seed": seed,
        **res,
        "n_train": len(fit),
        "n_val": len(val),
        "fit_seconds": round(t_fit, 2),
        "steps": getattr(det, "steps_", None),
        "images_seen": getattr(det, "images_seen_", None),
        "stage_seconds": {k: round(v, 1) for k, v in det.stage_seconds_.items()},
        # fit + scoring (data already loaded); the pixel metrics' own peak is reported apart
        "peak_rss_mb": rss,
        "peak_rss_mb_with_metrics": round(peak_rss_mb(), 1),
        "peak_rss_scope": "this seed" if per_seed_peak else "process since start",
        "settings": settings,
        "hparams": cfg["hparams"],
        "input": cfg["input"],
        "hardware": hardware(accelerator),
        "channels_last": bool(det.method_.channels_last),  # training layout (same maths)
        "versions": versions(),
        "git_commit": git_commit(),
    }


def collect_industrial(out_dir: str | Path) -> list[dict[str, Any]]:
    """Every finished seed record in ``out_dir``, by seed (other ``seed*.json`` files, such
    as an analysis script's output kept beside the runs, are not records and are left out)."""
    recs = [json.loads(p.read_text()) for p in Path(out_dir).glob("seed*.json")]
    return sorted((r for r in recs if "seed" in r and "method" in r), key=lambda r: r["seed"])


__all__ = [
    "INDUSTRIAL_DATASETS",
    "collect_industrial",
    "evaluate_industrial",
    "image_score_entries",
    "industrial_metrics",
    "is_industrial",
    "resolve_category",
    "run_industrial",
]
