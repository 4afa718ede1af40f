"""Training and inference throughput of a method's presets, and the FLOP/s they reach.

Prints, per preset: training images/s (forward + backward + Adam step on random batches),
inference images/s (the method's full ``score``, e.g. ARNet's four rotations), the FLOPs per
image counted by torch's FlopCounterMode, and the FLOP/s achieved as a share of a large
float32 matrix product timed in the same run (the machine's practical peak).

    python benchmarks/throughput.py --method arnet --size 32 --channels 1
    python benchmarks/throughput.py --method arnet --size 32 --channels 3 --device cuda

On a GPU the peak is a float32 product with TF32 allowed (what cuDNN convolutions use by
default) and every timing waits for the device to finish.
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table
from torch.utils.flop_counter import FlopCounterMode

from reconad.methods import get_method

DEVICE = torch.device("cpu")


def matmul_flops(n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of an n x n float32 matrix product (2 n^3 FLOPs), best of ``repeats``."""
    a, b = torch.randn(n, n, device=DEVICE), torch.randn(n, n, device=DEVICE)
    a @ b  # warm-up
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(fn) -> float:
    _sync()
    t0 = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - t0


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def measure(
    method: str, preset: str, channels: int, size: int, batches: int, channels_last: bool = False
) -> dict:
    cls = get_method(method)
    cfg = cls.make_config(preset)
    torch.manual_seed(0)
    m = cls(cfg, channels, (size, size)).to(DEVICE)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    m.to(memory_format=fmt)
    stage = m.stages()[0]
    bs = stage.batch_size
    x = torch.rand(bs, channels, size, size, device=DEVICE).to(memory_format=fmt)
    opt = torch.optim.Adam(m.parameters(), lr=1e-4)

    def step():
        opt.zero_grad()
        loss = m.training_step(x, stage.name)
        loss.backward()
        opt.step()

    m.train()
    with FlopCounterMode(display=False) as fc:
        step()
    train_flops = fc.get_total_flops() / bs
    t_train = min(_timed(step) for _ in range(batches))

    m.eval()
    xs = torch.rand(256, channels, size, size, device=DEVICE).to(memory_format=fmt)
    with torch.no_grad():
        with FlopCounterMode(display=False) as fc:
            m.score(xs[:bs])
        score_flops = fc.get_total_flops() / bs
        m.score(xs)
        t_score = min(_timed(lambda: m.score(xs)) for _ in range(max(2, batches // 3)))
    return {
        "preset": preset,
        "params": sum(p.numel() for p in m.parameters()),
        "train_ips": bs / t_train,
        "score_ips": len(xs) / t_score,
        "train_gflop_per_img": train_flops / 1e9,
        "score_gflop_per_img": score_flops / 1e9,
        "train_flops": train_flops * bs / t_train,
        "score_flops": score_flops * len(xs) / t_score,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="arnet")
    ap.add_argument("--presets", default=None, help="comma-separated; default: all")
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batches", type=int, default=6, help="timed repeats (best is kept)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument(
        "--channels-last",
        action="store_true",
        help="time with channels-last weights and inputs (the training loop's layout for "
        "methods that set it, e.g. utad)",
    )
    ap.add_argument("--matmul-size", type=int, default=None, help="default 2048 CPU, 8192 GPU")
    args = ap.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    if DEVICE.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    cls = get_method(args.method)
    presets = args.presets.split(",") if args.presets else list(cls.presets)
    peak = matmul_flops(args.matmul_size or (8192 if DEVICE.type == "cuda" else 2048))
    where = (
        torch.cuda.get_device_name(DEVICE)
        if DEVICE.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    rows = [
        measure(args.method, p, args.channels, args.size, args.batches, args.channels_last)
        for p in presets
    ]
    layout = "channels-last" if args.channels_last else "channels-first"
    t = Table(
        title=f"{args.method}, {args.channels}x{args.size}x{args.size}, {layout}, {where}; "
        f"matmul peak {peak / 1e9:.1f} GFLOP/s"
    )
    for col in (
        "preset",
        "params",
        "train img/s",
        "score img/s",
        "train GFLOP/s (%peak)",
        "score GFLOP/s (%peak)",
    ):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(
            r["preset"],
            f"{r['params'] / 1e6:.2f} M",
            f"{r['train_ips']:.0f}",
            f"{r['score_ips']:.0f}",
            f"{r['train_flops'] / 1e9:.1f} ({100 * r['train_flops'] / peak:.0f}%)",
            f"{r['score_flops'] / 1e9:.1f} ({100 * r['score_flops'] / peak:.0f}%)",
        )
    Console().print(t)


if __name__ == "__main__":
    main()
