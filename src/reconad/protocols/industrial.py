"""The industrial protocol: one MVTec AD-style category (Magnetic-Tile, an MVTec AD class).

Per seed: fit on ``train/good`` minus a seeded held-out share of it (``val_fraction``); the
held-out normals alone set the image threshold and a pixel threshold (same target FPR);
score every test image; report image AUROC over all test images, image AUROC per defect
type (that type against all good test images), and pixel AUROC and AUPRO (FPR limit 0.3)
at each mask's own resolution: maps are resized bilinearly back to each image's original
size, since the images vary in size. Test labels and masks are read only by the metrics
(:mod:`reconad.evaluate`).

Images are resized to one square input side (rounded up to what the method needs). Train
images must agree in channels unless ``channels`` converts them (Magnetic-Tile: 1, gray);
test images are converted to the trained model's channel count. Defect images whose type
has no ``ground_truth`` folder are left out of the pixel metrics; an empty mask keeps its
image anomalous and adds only normal pixels.

One JSON per seed (``seed{s}.json``); the summary over seeds, its files and its table are in
:mod:`reconad.protocols.industrial_summary`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reconad.calibration import threshold_at_fpr
from reconad.data.folders import read_mvtec
from reconad.data.imageset import DataError, ImageSet
from reconad.data.protocol import holdout_split
from reconad.evaluate import _pct, evaluate
from reconad.inputs import round_up
from reconad.protocols import industrial_summary as summary_mod
from reconad.protocols.engine import Log, Protocol, RunSettings, Target, collect, fit_detector
from reconad.protocols.fingerprint import as_stored, settings_mismatch
from reconad.protocols.provenance import peak_rss_mb, reset_peak_rss
from reconad.score_choice import MIN_IMAGES, Choice

#: named industrial data sets: folder under the data root, and the channels they are read as
INDUSTRIAL_DATASETS: dict[str, dict[str, Any]] = {
    "magnetic-tile": {"channels": 1},
    "mvtec/screw": {"channels": 1},
    "mvtec/transistor": {"channels": 3},
}

#: the options a record's settings hold only when set (so earlier results keep their
#: settings), each a Detector option of the same name: its default and what it adds to the
#: default folder name
OPTIONAL = {
    "normalize": ("none", "+{}"),
    "image_score": ("native", "+score-{}"),
    "patch": (None, "+patch{}"),  # the network sees patch x patch tiles of the image
    "keep_aspect": (False, "+aspect"),  # letterboxed, not squashed
    "map_smoothing": (0.0, "+smooth-{}"),  # Gaussian width of the maps, or auto
    "augment": ("", "+{}"),  # hflip,vflip: +hflip+vflip
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


@dataclass(kw_only=True)
class IndustrialSettings(RunSettings):
    """The industrial protocol's options beside the shared ones.

    Attributes:
        size: the square input side (rounded up to what the method needs).
        channels: 1 or 3 converts every image (default: the named set's, else as read).
        target_fpr: the false-alarm rate the image and pixel thresholds aim at.
        normalize, image_score, patch, keep_aspect, map_smoothing, augment: the detector's
            options of the same names.
    """

    size: int = 128
    channels: int | None = None
    target_fpr: float = 0.05
    normalize: str = "none"
    image_score: str = "native"
    patch: int | None = None
    keep_aspect: bool = False
    map_smoothing: float | str = 0.0
    augment: str = ""


def collect_industrial(out_dir: str | Path) -> list[dict[str, Any]]:
    """Every finished seed record in ``out_dir``, by seed (other ``seed*.json`` files, such
    as an analysis script's output kept beside the runs, are not records and are left out)."""
    return collect(out_dir, Industrial.record_glob, Industrial.key_fields)


def _pixel_threshold(det, val: ImageSet, target_fpr: float) -> float | None:
    if not len(val) or not type(det.method_).produces_maps:
        return None
    vm = det.anomaly_maps(val, original_size=True)
    return threshold_at_fpr(np.concatenate([m.ravel() for m in vm]).astype(np.float64), target_fpr)


def _image_score_choice(det, val: ImageSet) -> Choice | None:
    """The image score a map method would use with ``image_score='auto'``: chosen on the
    held-out normals and synthetic defects (``reconad.score_choice``), never on the test
    set; None where there is no choice (no maps, a fused score, too few held-out images)."""
    if det.image_score == "auto" and det.image_score_auroc_:
        return Choice(det.image_score_, det.image_score_auroc_, det.image_score_strength_)
    if not type(det.method_).produces_maps or det.scoring_ is not None or len(val) < MIN_IMAGES:
        return None
    return det.image_score_choice(val)


def image_score_entries(det, res: dict[str, Any], choice: Choice) -> dict[str, Any]:
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


class Industrial(Protocol):
    """One category, one ``seed{N}.json`` per seed.

    Whatever ``image_score`` the detector uses, a map method's record also holds the score
    ``image_score='auto'`` would choose (``image_score_choice``) and its test AUROC
    (``auroc_chosen``): the leakage-free choice, reported beside the native score.
    """

    files = "summary.csv, summary.json, one JSON per seed"
    registry_dataset = False  # a named category or a folder
    record_glob, key_fields = "seed*.json", ("seed",)
    table = staticmethod(summary_mod.render_industrial_table)
    settings: IndustrialSettings

    def __init__(self, settings: IndustrialSettings) -> None:
        from reconad.methods import get_method

        s = settings
        self.category, self.path = resolve_category(s.dataset, s.root)
        cls = get_method(s.method)
        self.side = round_up(int(s.size), cls.size_multiple, cls.min_size)
        channels = s.channels
        if channels is None:
            channels = INDUSTRIAL_DATASETS.get(s.dataset, {}).get("channels")
        stored = {
            "dataset": self.category,
            "method": s.method,
            "preset": s.preset or next(iter(cls.presets)),
            "size": self.side,
            "channels": channels,
            "val_fraction": s.val_fraction,
            "target_fpr": s.target_fpr,
            "epochs_scale": s.epochs_scale,
            "hparams": dict(s.hparams or {}),
        }
        for key, (default, _) in OPTIONAL.items():
            if getattr(s, key) != default:
                stored[key] = getattr(s, key)
        self.stored = as_stored(stored)
        self.wanted = s.method_settings()
        super().__init__(settings)

    def default_out(self) -> Path:
        tags = [tag.format(self.stored[k]) for k, (_, tag) in OPTIONAL.items() if k in self.stored]
        folder = self.settings.folder_name() + "".join(tags).replace(",", "+")
        return Path("benchmarks/results") / self.category / folder

    def targets(self) -> list[Target]:
        return [Target((s,), f"seed{s}", s, f"seed {s}") for s in self.settings.seeds]

    def mismatch(self, record: dict[str, Any]) -> list[str]:
        # The protocol's own settings compare as stored; the method's hyper-parameters as
        # resolved (preset defaults included), as the one-class protocol does, so a changed
        # default is caught and an explicit --set equal to the default is not refused.
        stored = record.get("settings") or {}
        method_keys = ("preset", "hparams", "epochs_scale", "method")
        # keys only some runs have (normalize, image_score, patch) count when either has them
        keys = [*self.stored, *(k for k in stored if k not in self.stored)]
        bad = [k for k in keys if k not in method_keys and stored.get(k) != self.stored.get(k)]
        return bad + settings_mismatch(
            {**record, "epochs_scale": stored.get("epochs_scale")}, self.wanted
        )

    def load(self, log: Log) -> None:
        side, channels = (self.side, self.side), self.stored["channels"]
        self.train = read_mvtec(self.path, "train", size=side, channels=channels)
        self.test = read_mvtec(self.path, "test", size=side, channels=self.train.channels)

    def run_target(self, target: Target, record: dict[str, Any] | None, log: Log) -> dict:
        s = self.settings
        name = f"{self.category}/{s.method}"
        tiles = f" in {s.patch}x{s.patch} tiles" if s.patch else ""
        log(f"{name} {target.label}: training at {self.side}x{self.side}{tiles}")
        rec = self._run_seed(target)
        rec["category_path"] = str(self.path)
        log(f"{name} {target.label}: image {self.result_line(rec)}")
        return rec

    def _run_seed(self, target: Target) -> dict[str, Any]:
        s, st, seed = self.settings, self.stored, target.seed
        fit, val = holdout_split(self.train, st["val_fraction"], seed)
        per_seed_peak = reset_peak_rss()
        det = s.detector(
            seed,
            image_size=st["size"],
            target_fpr=st["target_fpr"],
            **{key: getattr(s, key) for key in OPTIONAL},  # the detector options of the same names
        )
        fitted = fit_detector(det, fit, val, self.model_dir(target), self.log_dir(target))
        pixel_threshold = _pixel_threshold(det, val, st["target_fpr"])
        choice = _image_score_choice(det, val)
        res = evaluate(det, self.test, pixel_threshold)
        del res["labels"]  # the records keep scores; labels are the test set's
        if choice is not None:
            res.update(image_score_entries(det, res, choice))
        if s.map_smoothing != 0:  # the width used, and (auto) each width's probe AUROC
            res["map_sigma"] = det.map_sigma_
            res["map_sigma_auroc"] = {f"{k:g}": v for k, v in det.map_sigma_auroc_.items()}
        rss = res.pop("peak_rss_mb_scoring")
        return {
            "dataset": st["dataset"],
            "method": s.method,
            "preset": st["preset"],  # resolved as the detector resolves it
            "seed": seed,
            **res,
            "n_train": len(fit),
            "n_val": len(val),
            **fitted,
            # fit + scoring (data already loaded); the pixel metrics' own peak is apart
            "peak_rss_mb": rss,
            "peak_rss_mb_with_metrics": round(peak_rss_mb(), 1),
            "peak_rss_scope": "this seed" if per_seed_peak else "process since start",
            "settings": st,
        }

    summarize = staticmethod(summary_mod.summarize_industrial)

    def write_summary(self, summary: dict[str, Any]) -> None:
        summary_mod.write_industrial_summary(summary, self.out)
