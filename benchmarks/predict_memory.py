"""Peak memory and wall time of `reconad predict` against the number of images (issue 20).

`predict` used to decode every image and keep every anomaly map before printing anything;
it now scores in chunks and prints each verdict as it comes. This script writes N random
gray PNGs at the model's size, fits a small ae once, and runs `reconad predict` on the
folder in a fresh process for each N, reading that process's peak RSS.

    python benchmarks/predict_memory.py --counts 2500,20000
    # the code of another checkout (e.g. before a change), same model and images:
    python benchmarks/predict_memory.py --counts 2500,20000 --src ../old/src

Prints one row per N: images, peak RSS (MB), wall seconds, lines printed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def _write_images(folder: Path, n: int, side: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    have = len(list(folder.glob("*.png")))
    for i in range(have, n):
        Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8)).save(
            folder / f"{i:06d}.png", compress_level=1
        )


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(peak RSS MB, wall s, stdout lines) of one child process."""
    wrapper = (
        "import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], "
        "stdout=subprocess.PIPE, stderr=subprocess.DEVNULL); "
        "print(p.returncode, p.stdout.count(b'\\n'), "
        "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", wrapper, *cmd], env=env, capture_output=True, text=True, check=True
    )
    rc, lines, kb = (int(v) for v in out.stdout.split())
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {rc}")
    return kb / 1024, time.perf_counter() - t0, lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="2500,20000")
    ap.add_argument("--side", type=int, default=128)
    ap.add_argument("--src", default=None, help="src/ folder of the reconad to measure")
    ap.add_argument("--work", default=None, help="folder for images and model (kept)")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="reconad-predict-mem-"))
    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = str(Path(args.src).resolve())
    reconad = [sys.executable, "-m", "reconad.cli"]
    model = work / "model"
    if not (model / "config.json").exists():
        _write_images(work / "train", 64, args.side)
        subprocess.run(
            [*reconad, "fit", "--data", str(work / "train"), "--out", str(model),
             "--method", "ae", "--epochs", "1", "--no-progress"],  # fmt: skip
            env=env, check=True, capture_output=True,
        )  # fmt: skip
    print(f"{'images':>8} {'peak RSS MB':>12} {'wall s':>8} {'lines':>7}")
    for n in (int(c) for c in args.counts.split(",")):
        folder = work / f"n{n}"
        _write_images(folder, n, args.side)
        rss, wall, lines = _run([*reconad, "predict", "--model", str(model), str(folder)], env)
        print(f"{n:8d} {rss:12.0f} {wall:8.1f} {lines:7d}", flush=True)
    print(f"(host: {os.cpu_count()} cores; code: {args.src or 'installed reconad'}; {work})")


if __name__ == "__main__":
    main()
