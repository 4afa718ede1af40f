"""`reconad`: the command line, a thin layer over the Python API.

reconad demo                          offline demo on scikit-learn's digits
reconad list                          registered methods and their presets
reconad fit --data DIR --out runs/x   train on a folder of normal images
reconad test --model runs/x --data DIR    evaluate on an MVTec-style test tree
reconad predict --model runs/x IMG...     score, verdict and heat maps per image
reconad benchmark --dataset fmnist --method ae --classes 0-9
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Unsupervised image anomaly detection by reconstruction: train on normal images, "
    "score new images and every pixel of them by how badly the model rebuilds them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

MethodOpt = Annotated[str, typer.Option(help="Registered method name (see `reconad list`).")]
SeedOpt = Annotated[int, typer.Option(help="One seed for data order, init and erasers.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Method hyper-parameter KEY=VALUE (repeatable), e.g. epochs=10."),
]
ProgressOpt = Annotated[bool, typer.Option(help="Show progress bars.")]


def _parse_set(items: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise typer.BadParameter(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)


@app.command("list")
def list_cmd() -> None:
    """List the registered methods, their presets and where their design comes from."""
    from reconad.methods import get_method, list_methods

    t = Table(title="reconad methods")
    for col in ("name", "presets", "maps", "provenance", "summary"):
        t.add_column(col)
    for name in list_methods():
        cls = get_method(name)
        t.add_row(
            name,
            ", ".join(cls.presets),
            "yes" if cls.produces_maps else "no",
            cls.provenance,
            cls.summary,
        )
    console.print(t)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Run folder to write.")] = Path("reconad-demo"),
    method: MethodOpt = "ae",
    normal: Annotated[int, typer.Option(help="The digit that is normal.")] = 0,
    seed: SeedOpt = 0,
    epochs_scale: Annotated[float, typer.Option(help="Scale the epochs (quick look).")] = 1.0,
    progress: ProgressOpt = True,
) -> None:
    """Offline demo: train on one digit of scikit-learn's bundled digits, score the rest.

    Writes OUT/model, OUT/metrics.json, OUT/roc.png and OUT/grid.png (inputs,
    reconstructions and error maps of normal and anomalous test digits).
    """
    from reconad.demo import run_demo

    m = run_demo(out, method, normal, seed, epochs_scale, progress, log=console.print)
    console.print(
        f"[bold]AUROC {m['auroc']:.1f}%[/]  AP {m['ap']:.1f}%  "
        f"(at the calibrated threshold: TPR {m['test_tpr_at_threshold']:.0f}%, "
        f"FPR {m['test_fpr_at_threshold']:.0f}%)  fit {m['fit_seconds']:.0f} s"
    )
    console.print(f"wrote {out}/: model/, metrics.json, roc.png, grid.png")


@app.command()
def fit(
    data: Annotated[
        Path,
        typer.Option(
            help="Folder of normal images, or an MVTec-style category (its train/good is used)."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Model folder to write.")],
    method: MethodOpt = "ae",
    preset: Annotated[str | None, typer.Option(help="Method preset, e.g. cpu or paper.")] = None,
    image_size: Annotated[
        int | None, typer.Option(help="Model input side; needed when images differ in size.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Override the method's epochs.")] = None,
    seed: SeedOpt = 0,
    val_fraction: Annotated[float, typer.Option(help="Normals held out to calibrate.")] = 0.1,
    target_fpr: Annotated[
        float, typer.Option(help="False-positive rate on held-out normals that sets the threshold.")
    ] = 0.05,
    accelerator: Annotated[str, typer.Option(help="cpu, cuda, mps or auto.")] = "cpu",
    devices: Annotated[str, typer.Option(help="Number of devices/processes, or auto.")] = "1",
    strategy: Annotated[str, typer.Option(help="auto, ddp, ddp_spawn...")] = "auto",
    precision: Annotated[str, typer.Option(help="32-true, bf16-mixed, 16-mixed...")] = "32-true",
    resume: Annotated[bool, typer.Option(help="Resume from OUT's checkpoint if any.")] = True,
    set_: SetOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """Train a detector on normal images and save it (config.json + weights.safetensors).

    An interrupted run resumes from its last epoch when started again with the same OUT.
    """
    from reconad.data.imageset import DataError
    from reconad.detector import Detector

    hp = _parse_set(set_)
    if epochs is not None:
        hp["epochs"] = epochs
    ckpt = out.with_name(f".{out.name}.checkpoint")
    if not resume and ckpt.exists():
        shutil.rmtree(ckpt)
    det = Detector(
        method,
        preset=preset,
        image_size=image_size,
        seed=seed,
        val_fraction=val_fraction,
        target_fpr=target_fpr,
        accelerator=accelerator,
        devices=int(devices) if devices.isdigit() else devices,
        strategy=strategy,
        precision=precision,
        checkpoint_dir=ckpt,
        progress=progress,
        **hp,
    )
    try:
        det.fit(data)
    except (DataError, ValueError, KeyError) as e:
        _fail(str(e))
    if not det.is_main_:
        return
    det.save(out)
    shutil.rmtree(ckpt, ignore_errors=True)
    console.print(
        f"trained {method} on {det.n_train_} images in {det.fit_seconds_:.0f} s; threshold "
        f"{det.threshold_:.4g} ({100 * target_fpr:.0f}% FPR on {len(det.val_scores_)} "
        f"held-out normals); saved {out}"
    )


@app.command()
def test(
    model: Annotated[Path, typer.Option(help="Model folder written by `reconad fit`.")],
    data: Annotated[
        Path,
        typer.Option(help="MVTec-style category: test/<type>/*, ground_truth/<type>/*_mask.png."),
    ],
    out: Annotated[Path | None, typer.Option(help="Write metrics.json and roc.png here.")] = None,
) -> None:
    """Evaluate a model on an MVTec-style test tree: image AUROC, pixel AUROC, AUPRO."""
    from reconad.data.folders import read_mvtec
    from reconad.data.imageset import DataError
    from reconad.detector import resize_maps
    from reconad.metrics import MetricError, image_metrics, pixel_metrics

    det = _load(model)
    try:
        ts = read_mvtec(data, "test", size=tuple(det.input_shape_[1:]))
        labels = ts.is_anomalous.astype(int)
        ex = det.explain(ts, n=0)
        res: dict[str, Any] = {k: 100 * v for k, v in image_metrics(labels, ex["scores"]).items()}
        per_type = {}
        good = ts.class_names.index("good")
        for i, name in enumerate(ts.class_names):
            if i == good:
                continue
            sel = (ts.labels == i) | (ts.labels == good)
            per_type[name] = 100 * image_metrics(labels[sel], ex["scores"][sel])["auroc"]
        res["auroc_per_type"] = per_type
        has_masks = ts.masks is not None and any(m is not None for m in ts.masks)
        if ex["maps"] is not None and has_masks:
            maps = resize_maps(ex["maps"], ts.orig_sizes)
            masks = [
                np.zeros(s, bool) if m is None else m
                for m, s in zip(ts.masks, ts.orig_sizes, strict=True)
            ]
            res.update({k: 100 * v for k, v in pixel_metrics(masks, maps).items()})
    except (DataError, MetricError, ValueError) as e:
        _fail(str(e))
    t = Table(title=f"{det.method} on {data}")
    t.add_column("metric")
    t.add_column("%", justify="right")
    for k, v in res.items():
        if k != "auroc_per_type":
            t.add_row(k, f"{v:.2f}")
    for k, v in per_type.items():
        t.add_row(f"auroc[{k}]", f"{v:.2f}")
    console.print(t)
    if out:
        from reconad.report import save_roc
        from reconad.serialize import write_json

        write_json(out / "metrics.json", res)
        save_roc(labels, ex["scores"], out / "roc.png", f"{det.method} on {data.name}")


@app.command()
def predict(
    model: Annotated[Path, typer.Option(help="Model folder written by `reconad fit`.")],
    images: Annotated[list[Path], typer.Argument(help="Image files (or folders).")],
    threshold: Annotated[
        float | None, typer.Option(help="Override the calibrated threshold.")
    ] = None,
    heatmaps: Annotated[
        Path | None,
        typer.Option(
            help="Write a PNG per image here: the heat map and the method's intermediate images."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Score images: one line each with score, verdict (anomalous/normal) and file."""
    from reconad.data.imageset import DataError
    from reconad.inputs import to_imageset

    det = _load(model)
    files: list[Path] = []
    for p in images:
        files.extend(sorted(q for q in p.iterdir() if q.is_file()) if p.is_dir() else [p])
    try:
        ts = to_imageset([str(f) for f in files], size=tuple(det.input_shape_[1:]))
        ex = det.explain(ts, n=len(ts) if heatmaps else 0)
    except DataError as e:
        _fail(str(e))
    t = det.threshold_ if threshold is None else threshold
    for i, (f, s) in enumerate(zip(files, ex["scores"], strict=True)):
        verdict = "anomalous" if np.isfinite(t) and s > t else "normal"
        if not np.isfinite(t):
            verdict = "unknown (no threshold)"
        if as_json:
            print(json.dumps({"file": str(f), "score": float(s), "verdict": verdict}))
        else:
            typer.echo(f"{s:12.6g}  {verdict:9s}  {f}")
        if heatmaps:
            _write_heatmap(heatmaps, f, i, ex)


def _write_heatmap(folder: Path, f: Path, i: int, ex: dict[str, Any]) -> None:
    from reconad.data.folders import load_image
    from reconad.detector import resize_maps
    from reconad.report import save_extras_grid, save_heatmap

    folder.mkdir(parents=True, exist_ok=True)
    if ex["extras"]:
        save_extras_grid(
            {k: v[i : i + 1] for k, v in ex["extras"].items()},
            folder / f"{f.stem}_grid.png",
            scores=ex["scores"][i : i + 1],
            n=1,
        )
    if ex["maps"] is not None:
        amap = resize_maps(ex["maps"][i : i + 1], [ex["orig_sizes"][i]])[0]

        save_heatmap(
            load_image(f).astype(np.float32) / 255.0,
            amap,
            folder / f"{f.stem}_heatmap.png",
            f"score {ex['scores'][i]:.4g}",
        )


@app.command()
def benchmark(
    dataset: Annotated[str, typer.Option(help="mnist, fmnist, cifar10 or cifar100.")],
    method: MethodOpt = "ae",
    classes: Annotated[str, typer.Option(help="Normal classes, e.g. 0-9, 3, 1,4.")] = "all",
    seeds: Annotated[str, typer.Option(help="Seeds, e.g. 0 or 0-2.")] = "0",
    preset: Annotated[str | None, typer.Option(help="Method preset.")] = None,
    data_root: Annotated[
        Path | None, typer.Option(help="Data root (else $RECONAD_DATA, else ~/.cache/reconad).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Results folder (default benchmarks/results/DATASET/METHOD[-PRESET])."),
    ] = None,
    val_fraction: Annotated[float, typer.Option(help="Training normals held out.")] = 0.1,
    epochs_scale: Annotated[float, typer.Option(help="Scale the epochs (quick runs).")] = 1.0,
    set_: SetOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """One-class protocol: each class in turn is normal; AUROC per class, with the published
    numbers beside ours. Resumable: finished (class, seed) runs are skipped."""
    from reconad.benchmark import (
        collect_records,
        render_table,
        run_protocol,
        summarize,
        write_summary,
    )
    from reconad.data.datasets import DATASETS
    from reconad.data.imageset import DataError
    from reconad.data.protocol import parse_classes

    key = {"fashion-mnist": "fmnist"}.get(dataset, dataset)
    if key not in DATASETS:
        _fail(f"unknown dataset {dataset!r}; choose from {sorted(DATASETS)}")
    n_classes = len(DATASETS[key]["classes"])
    try:
        cls_list = parse_classes(classes, n_classes)
        seed_list = parse_classes(seeds, 10**6)
    except ValueError as e:
        _fail(str(e))
    name = method + (f"-{preset}" if preset else "")
    out = out or Path("benchmarks/results") / key / name
    try:
        records = run_protocol(
            key,
            method,
            cls_list,
            seed_list,
            out,
            root=data_root,
            preset=preset,
            val_fraction=val_fraction,
            epochs_scale=epochs_scale,
            progress=progress,
            hparams=_parse_set(set_),
            log=console.print,
        )
    except (DataError, ValueError, KeyError) as e:
        _fail(str(e))
    # Summarise every seed finished so far in this folder, not only the ones run now.
    summary = summarize(collect_records(out, cls_list) or records)
    write_summary(summary, out)
    console.print(render_table(summary))
    console.print(f"results in {out}/ (summary.csv, summary.json, one JSON per class and seed)")


def _load(model: Path):
    from reconad.detector import Detector

    try:
        return Detector.load(model)
    except (FileNotFoundError, ValueError, KeyError) as e:
        _fail(str(e))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
