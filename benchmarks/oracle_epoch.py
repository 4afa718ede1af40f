"""How much does picking the epoch on the test split inflate ARNet's AUROC? ("oracle epoch")

Published ARNet numbers were likely obtained by scoring the test split after every epoch and
keeping the best (METHODS.md, section 1). This script trains exactly as the benchmark does
(same split, seed and schedule), scores the test split after each epoch and prints, per
epoch, the test AUROC with and without per-rotation normalisation (each rotation's error
divided by its mean on the held-out training normals). The leakage-free figure is the last
epoch's; the best epoch's figure is labelled "oracle" because it reads test labels.

    python benchmarks/oracle_epoch.py --dataset cifar10 --classes 1,3 --seed 0

One JSON file per (dataset, class, seed) under benchmarks/results/oracle/, skipped when it
exists, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from reconad.cli.common import parse_set
from reconad.data.datasets import load_dataset
from reconad.data.protocol import one_class_split, parse_classes
from reconad.inputs import resize_uint8, round_up
from reconad.methods import get_method
from reconad.metrics import image_auroc
from reconad.serialize import write_json
from reconad.training import TrainConfig, train


def rotation_errors(method, images: np.ndarray, batch: int = 500) -> np.ndarray:
    """Mean L1 restoration error per rotation and image, ``(R, N)``."""
    out = []
    method.eval()
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(images[i : i + batch]).float() / 255.0
            maps, _, _ = method._errors(x)
            out.append(maps.flatten(2).mean(2).numpy())
    return np.concatenate(out, axis=1)


def run(dataset, c, seed, preset, hparams, root, out_dir: Path) -> dict:
    path = out_dir / f"{dataset}_arnet-{preset}_class{c}_seed{seed}.json"
    if path.exists():
        return json.loads(path.read_text())
    train_set = load_dataset(dataset, "train", root=root)
    test_set = load_dataset(dataset, "test", root=root)
    split = one_class_split(train_set, test_set, c, val_fraction=0.1, seed=seed)
    cls = get_method("arnet")
    config = cls.make_config(preset, **hparams)
    side = round_up(max(split.train.size), cls.size_multiple, cls.min_size)
    size = (side, side)
    torch.manual_seed(seed)  # as Detector.fit: the seed fixes the initial weights
    method = cls(config, split.train.channels, size)
    images = resize_uint8(split.train.images, size)
    val = resize_uint8(split.val.images, size)
    test = resize_uint8(split.test.images, size)
    labels = split.test_anomalous.astype(int)
    epochs = []

    def on_epoch_end(stage: str, epoch: int) -> None:
        t0 = time.perf_counter()
        e_test, e_val = rotation_errors(method, test), rotation_errors(method, val)
        scale = e_val.mean(1, keepdims=True)
        rec = {
            "epoch": epoch,
            "auroc": 100 * image_auroc(labels, e_test.mean(0)),
            "auroc_rot_normalised": 100 * image_auroc(labels, (e_test / scale).mean(0)),
            "auroc_per_rotation": [100 * image_auroc(labels, e) for e in e_test],
            "val_error": float(e_val.mean()),
            "score_seconds": round(time.perf_counter() - t0, 1),
        }
        epochs.append(rec)
        print(json.dumps({"class": c, **rec}), flush=True)

    res = train(method, images, TrainConfig(seed=seed, progress=False), on_epoch_end)
    best = max(epochs, key=lambda r: r["auroc"])
    best_norm = max(epochs, key=lambda r: r["auroc_rot_normalised"])
    summary = {
        "dataset": dataset,
        "class": c,
        "seed": seed,
        "preset": config.preset,
        "hparams": hparams,
        "last_epoch_auroc": epochs[-1]["auroc"],
        "oracle_epoch_auroc": best["auroc"],
        "oracle_epoch": best["epoch"],
        "oracle_epoch_rot_normalised_auroc": best_norm["auroc_rot_normalised"],
        "oracle_epoch_rot_normalised": best_norm["epoch"],
        "train_seconds": round(res.seconds, 1),
        "epochs": epochs,
    }
    write_json(path, summary)
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--classes", default="0")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--set", dest="set_", action="append")
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--out", default="benchmarks/results/oracle")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    hp = parse_set(args.set_)
    print(f"{'class':>5} {'last':>6} {'oracle':>6} {'epoch':>5} {'oracle+norm':>11}")
    for c in parse_classes(args.classes, 100):
        s = run(args.dataset, c, args.seed, args.preset, hp, args.data_root, out)
        print(
            f"{c:>5} {s['last_epoch_auroc']:6.1f} {s['oracle_epoch_auroc']:6.1f} "
            f"{s['oracle_epoch']:>5} {s['oracle_epoch_rot_normalised_auroc']:11.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
