"""How long each method's preset trains on a folder of N images at a given size, projected
from a few timed optimiser steps of every stage.

A preset is sized in optimiser steps (reconad.training.plan_stage): the same steps whatever
the folder's size, but each step costs more on larger images. Presets chosen on 32 x 32
benchmarks can therefore take hours at an industrial working resolution. This prints, per
method and stage: the batch, the planned steps on N images, the measured seconds a step
(the real training loop, random images, one short epoch per stage, its first step
included), and the projected minutes; then the total per method.

    python benchmarks/training_time.py --size 128 --channels 1 --images 686
    python benchmarks/training_time.py --methods utad,rotnet_ae --size 64

Run it alone (two torch processes on 2 cores slow each other 4-5x). The projection leaves
out data loading from disk, validation and scoring.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from reconad.methods import get_method, list_methods
from reconad.training import TrainConfig, plan_stage, train

#: batches timed per stage (one epoch of this many batches; the first one is included)
TIMED_BATCHES = 4


def measure(method: str, preset: str | None, channels: int, size: int, n_images: int) -> list:
    """Rows (stage, batch, planned steps, s/step, projected minutes) for one method."""
    cls = get_method(method)
    cfg = cls.make_config(preset)
    torch.manual_seed(0)
    m = cls(cfg, channels, (size, size))
    stages = m.stages()
    if not stages:
        return []
    plans = [(s.name, plan_stage(s, n_images, 1.0, m.reference_train_size)) for s in stages]
    n = TIMED_BATCHES * max(p.batch_size for _, p in plans)
    images = np.random.default_rng(0).integers(0, 256, (n, channels, size, size), np.uint8)
    # one short epoch of each stage, in order (a later stage may need the earlier ones')
    res = train(m, images, TrainConfig(progress=False, epochs_scale=1e-9, step_floor=False))
    out = []
    for stage_name, plan in plans:
        hist = [h for h in res.history if h["stage"] == stage_name]
        per_step = sum(h["seconds"] for h in hist) / max(1, sum(h["steps"] for h in hist))
        out.append((stage_name, plan.batch_size, plan.steps, per_step, plan.steps * per_step / 60))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=None, help="comma-separated; default: every trained one")
    ap.add_argument("--preset", default="cpu", help="preset (a method without it: its first)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--images", type=int, default=686, help="training images (N)")
    args = ap.parse_args()
    names = args.methods.split(",") if args.methods else list_methods()
    t = Table(
        title=f"{args.channels}x{args.size}x{args.size}, {args.images} training images, "
        f"CPU, {torch.get_num_threads()} threads"
    )
    for col in ("method", "preset", "stage", "batch", "planned steps", "s / step", "minutes"):
        t.add_column(col, justify="right")
    for name in names:
        cls = get_method(name)
        preset = args.preset if args.preset in cls.presets else next(iter(cls.presets))
        rows = measure(name, preset, args.channels, args.size, args.images)
        if not rows:
            continue
        for stage, bs, steps, per_step, minutes in rows:
            t.add_row(
                name, preset, stage, str(bs), f"{steps:,}", f"{per_step:.2f}", f"{minutes:.0f}"
            )
        total = sum(r[4] for r in rows)
        t.add_row(
            name, preset, "all", "", f"{sum(r[2] for r in rows):,}", "", f"[b]{total:.0f}[/b]"
        )
        t.add_section()
    Console().print(t)


if __name__ == "__main__":
    main()
