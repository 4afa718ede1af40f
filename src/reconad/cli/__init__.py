"""`reconad`: the command line, a thin layer over the Python API.

reconad demo                          offline demo on scikit-learn's digits
reconad list                          registered methods and their presets
reconad fit --data DIR --out runs/x   train on a folder of normal images
reconad test --model runs/x --data DIR    evaluate on an MVTec-style test tree
reconad predict --model runs/x IMG...     score, verdict and heat maps per image
reconad benchmark one-class --dataset fmnist --method ae --classes 0-9
reconad export --model runs/x --out x.onnx      one ONNX graph with reconad's numbers
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table
from rich.text import Text

from reconad.cli import benchmark as _benchmark  # noqa: F401  (registers `reconad benchmark`)
from reconad.cli.common import (
    AugmentOpt,
    DifficultyModeOpt,
    DifficultyOpt,
    KeepAspectOpt,
    LoggerOpt,
    MapSmoothingOpt,
    MethodOpt,
    NormalizeOpt,
    PatchOpt,
    ProgressOpt,
    SetOpt,
    _check_logger,
    _check_report,
    _fail,
    _fail_on,
    _log,
    _model_config,
    _scoring,
    _training_curves,
    app,
    console,
    err,
    parse_set,
)

SeedOpt = Annotated[int, typer.Option(help="One seed for data order, init and erasers.")]

ScoreOpt = Annotated[
    str,
    typer.Option(
        help="native (the method's own score) or multiview (pixel MSE, 1 - SSIM and feature "
        "dissimilarity of the reconstruction, each standardised on held-out normals, summed)."
    ),
]

ImageScoreOpt = Annotated[
    str,
    typer.Option(
        help="Map methods: how an image's score is read from its map. native (the method's "
        "own), map_max (maximum of the mean-filtered map), map_topk (mean of the top 1% "
        "pixels), or auto: the one that best tells held-out normals from the same images "
        "with synthetic defects (no test image is read)."
    ),
]

ReportOpt = Annotated[
    Path | None,
    typer.Option(
        help="Write one self-contained HTML page here: model card, metrics beside published "
        "numbers, ROC/PR curves, score histogram, per-type table, a gallery of detections, "
        "missed defects and false alarms, and training curves."
    ),
]


@contextlib.contextmanager
def _locked(out: Path):
    """Hold ``.OUT.lock`` beside the model folder for a block, or refuse: two fits writing
    one folder would both print "saved" and the last writer would win. An flock: the OS
    releases it when the process ends, also on kill -9, so no stale lock is left.

    The (empty) lock file is removed at the end while still held. A fit that opened it just
    before finds, once it holds the lock, that the path no longer names the file it locked,
    and starts over on a fresh one, so two fits never hold locks on different files."""
    import fcntl

    if os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0":
        yield  # a DDP worker Fabric started from this command: the launching process holds it
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.with_name(f".{out.name}.lock")
    for _ in range(5):
        lock = open(path, "a")  # closed below, after the block
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            _fail(f"another reconad fit is writing {out} (it holds {path}); wait for it")
        try:
            same = os.stat(path).st_ino == os.fstat(lock.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        lock.close()  # the holder removed it as we opened it: lock the new one
    else:
        _fail(f"could not take the lock {path}: it keeps being replaced")
    try:
        yield
    finally:
        try:
            if os.fstat(lock.fileno()).st_size == 0:  # ours: reconad writes nothing in it
                path.unlink(missing_ok=True)
        finally:
            lock.close()


def _check_out(out: Path, data: Path) -> Path:
    """The model folder to write, resolved, or one clear error before any training.

    Refuses an ``out`` that is ``data`` itself or inside it (saving would replace or mix
    with the training images), and an existing ``out`` that is not a reconad model folder
    (saving replaces the folder, so its contents would be lost).
    """
    from reconad.detector import is_model_dir
    from reconad.serialize import OutputRefused, check_replaceable

    out_r, data_r = out.expanduser().resolve(), data.expanduser().resolve()
    if out_r == data_r or data_r in out_r.parents:
        _fail(
            f"--out {out} is the --data folder or inside it; the model would replace or mix "
            "with the training images. Choose an --out outside the data folder."
        )
    with _fail_on(OutputRefused):
        check_replaceable(out_r, is_model_dir, "reconad model")
    return out_r


def _check_run_options(
    accelerator: str, devices: str, val_fraction: float, target_fpr: float, epochs: int | None
) -> int | str:
    """Refuse bad run options before any data is read; returns ``devices`` as Fabric takes it."""
    if not (devices.isdigit() and int(devices) >= 1) and devices != "auto":
        _fail(f"--devices {devices!r}: give a number of devices (1, 2, ...) or auto")
    if accelerator in ("cuda", "gpu"):
        import torch

        if not torch.cuda.is_available():
            _fail(f"--accelerator {accelerator}: this torch build sees no CUDA GPU; use cpu")
    if not 0.0 <= val_fraction < 1.0:
        _fail(f"--val-fraction {val_fraction}: must be in [0, 1) (0 leaves no threshold)")
    if not 0.0 < target_fpr < 1.0:
        _fail(f"--target-fpr {target_fpr}: must be in (0, 1)")
    if epochs is not None and epochs < 1:
        _fail(f"--epochs {epochs}: must be at least 1")
    return int(devices) if devices.isdigit() else devices


def _load(model: Path):
    from reconad.detector import Detector

    with _fail_on(FileNotFoundError, ValueError, KeyError):
        return Detector.load(model)


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

    m = run_demo(out, method, normal, seed, epochs_scale, progress, log=_log)
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
    score: ScoreOpt = "native",
    difficulty: DifficultyOpt = "none",
    difficulty_mode: DifficultyModeOpt = "divide",
    set_: SetOpt = None,
    normalize: NormalizeOpt = "none",
    image_score: ImageScoreOpt = "auto",
    patch: PatchOpt = None,
    keep_aspect: KeepAspectOpt = False,
    map_smoothing: MapSmoothingOpt = "0",
    augment: AugmentOpt = "",
    logger: LoggerOpt = "",
    progress: ProgressOpt = True,
) -> None:
    """Train a detector on normal images and save it (config.json + weights.safetensors).

    An interrupted run resumes from its last epoch when started again with the same OUT
    (and continues its --logger log). --logger csv records every optimiser step's losses
    and learning rates in OUT/logs/metrics.csv, beside the model.
    """
    from reconad.data.imageset import DataError
    from reconad.detector import Detector
    from reconad.training import TrainingError

    _scoring(method, score, difficulty, difficulty_mode)  # refused before any training
    n_devices = _check_run_options(accelerator, devices, val_fraction, target_fpr, epochs)
    loggers = _check_logger(logger)
    out = _check_out(out, data)
    hp = parse_set(set_)
    if epochs is not None:
        hp["epochs"] = epochs
    with _locked(out):
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
            devices=n_devices,
            strategy=strategy,
            precision=precision,
            checkpoint_dir=ckpt,
            progress=progress,
            hparams=hp,
            normalize=normalize,
            image_score=image_score,
            patch=patch,
            keep_aspect=keep_aspect,
            map_smoothing=map_smoothing,
            augment=augment,
            logger=loggers,
            score_views=score,
            difficulty=difficulty,
            difficulty_mode=difficulty_mode,
        )
        try:
            det.fit(data)
        except TrainingError as e:  # a NaN loss: nothing worth resuming from
            shutil.rmtree(ckpt, ignore_errors=True)
            _fail(str(e))
        except (DataError, ValueError, KeyError) as e:
            _fail(str(e))
        if not det.is_main_:
            return
        det.save(out)
        shutil.rmtree(ckpt, ignore_errors=True)
        if det.provenance_ != "paper":
            console.print(f"{method}: {det.provenance_}")
        console.print(
            f"trained {method} on {det.n_train_} images in {det.fit_seconds_:.0f} s; threshold "
            f"{det.threshold_:.4g} ({100 * target_fpr:.0f}% FPR on {len(det.val_scores_)} "
            f"held-out normals); saved {out}"
        )
        if det.run_log_:
            console.print(f"run log ({', '.join(loggers)}): {out / 'logs'}", markup=False)
        if det.image_score_auroc_:
            told = ", ".join(f"{k} {100 * v:.1f}" for k, v in det.image_score_auroc_.items())
            console.print(
                f"image score: {det.image_score_} (AUROC, held-out normals vs the same with "
                f"synthetic defects at strength {det.image_score_strength_:g}: {told})"
            )


@app.command()
def test(
    model: Annotated[Path, typer.Option(help="Model folder written by `reconad fit`.")],
    data: Annotated[
        Path,
        typer.Option(help="MVTec-style category: test/<type>/*, ground_truth/<type>/*_mask.png."),
    ],
    out: Annotated[Path | None, typer.Option(help="Write metrics.json and roc.png here.")] = None,
    report: ReportOpt = None,
) -> None:
    """Evaluate a model on an MVTec-style test tree: image AUROC, pixel AUROC, AUPRO.

    Pixel metrics are computed at each mask's own resolution (maps resized back to each
    image's size); the image AUROC of each defect type is that type against the good images.
    """
    from reconad.data.folders import read_mvtec
    from reconad.data.imageset import DataError
    from reconad.evaluate import evaluate
    from reconad.metrics import MetricError

    _check_report(report)
    det = _load(model)
    with _fail_on(DataError, MetricError, ValueError):
        ts = read_mvtec(data, "test", size=det.read_size_)
        res = evaluate(det, ts)
    t = Table(title=f"{det.method} on {data}")
    t.add_column("metric")
    t.add_column("%", justify="right")
    for k in ("auroc", "ap", "f1_max_oracle", "tpr_at_5fpr", "pixel_auroc", "aupro"):
        if res[k] is not None:
            t.add_row(k, f"{res[k]:.2f}")
    for k, v in res["auroc_per_type"].items():
        t.add_row(Text(f"auroc[{k}]"), f"{v:.2f}")  # Text: "[blowhole]" is not rich markup
    console.print(t)
    if res.get("pixel_note"):
        console.print(f"no pixel metrics: {res['pixel_note']}")
    if out:
        from reconad.report import save_roc
        from reconad.serialize import write_json

        write_json(out / "metrics.json", res)
        title = f"{det.method} on {data.name}"
        save_roc(np.asarray(res["labels"]), np.asarray(res["scores"]), out / "roc.png", title)
    if report:
        from reconad.reference import industrial_key
        from reconad.report.html import write_test_report

        cfg = _model_config(model, det)
        curves, note = _training_curves(model, cfg)
        key = industrial_key(data.name, str(data.resolve()))
        write_test_report(report, det, ts, res, cfg, str(data), key, curves, note)
        console.print(f"wrote {report}")


#: images decoded, scored and printed at a time by ``predict`` (memory flat in the count)
PREDICT_CHUNK = 64


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
    alpha: Annotated[
        float | None,
        typer.Option(
            help="Flag images whose conformal p-value is at most ALPHA instead of using the "
            "threshold: on good parts like the held-out ones, at most ALPHA of them are "
            "flagged (a finite-sample guarantee)."
        ),
    ] = None,
    fdr: Annotated[
        float | None,
        typer.Option(
            help="Batch inspection: flag by Benjamini-Hochberg on the p-values of all the "
            "given images, so that the expected share of good parts among the flagged ones "
            "is at most FDR."
        ),
    ] = None,
    csv_out: Annotated[
        Path | None,
        typer.Option("--csv", help="Also write path, score, p_value, verdict to this CSV."),
    ] = None,
) -> None:
    """Score images: one line each with score, conformal p-value, verdict and file.

    The p-value is the share (with one added) of the held-out normal images, kept with the
    model, that scored at least as high. By default the verdict uses the calibrated
    threshold; --alpha or --fdr decide by p-values instead.
    """
    from reconad.conformal import benjamini_hochberg
    from reconad.data.folders import image_files
    from reconad.data.imageset import DataError

    det = _load(model)
    decide = _check_decision(det, threshold, alpha, fdr, csv_out)
    files: list[Path] = []
    with _fail_on(DataError):
        for p in images:  # a folder is read by fit's rule: image files only, no hidden ones
            files.extend(image_files(p) if p.is_dir() else [p])
    stems = _heatmap_stems(files) if heatmaps else []
    flags, passes = None, _chunks(det, files, heatmaps is not None)
    if fdr is not None:  # BH needs every p-value first: one scoring pass without maps
        first = list(_chunks(det, files))  # scores only: small
        all_p = _p_or_none(det, np.concatenate([ex["scores"] for _, ex in first]))
        flags = benjamini_hochberg(all_p, fdr)
        if heatmaps is None:
            passes = first  # nothing more to draw: the lines come from the scores in hand
    rows = []
    for lo, ex in passes:
        chunk = files[lo : lo + PREDICT_CHUNK]
        p_chunk = _p_or_none(det, ex["scores"])
        for i, (f, s) in enumerate(zip(chunk, ex["scores"], strict=True)):
            p = None if p_chunk is None else float(p_chunk[i])
            verdict = decide(s, p) if flags is None else _word(bool(flags[lo + i]))
            if as_json:
                print(
                    json.dumps(
                        {"file": str(f), "score": float(s), "p_value": p, "verdict": verdict}
                    )
                )
            else:
                name = str(f).replace("\n", "\\n").replace("\r", "\\r")  # one line each
                shown = "-" if p is None else f"{p:.4g}"
                typer.echo(f"{s:12.6g}  {shown:>8s}  {verdict:9s}  {name}")
            if csv_out is not None:
                rows.append((str(f), float(s), p, verdict))
            if heatmaps:
                _write_heatmap(heatmaps, f, i, ex, stems[lo + i])
        sys.stdout.flush()
    if csv_out is not None:
        _write_csv(csv_out, rows)


def _chunks(det, files: list[Path], maps: bool = False):
    """``(start, explain output)`` for consecutive chunks of files: memory flat in len(files)."""
    from reconad.data.imageset import DataError
    from reconad.inputs import to_imageset

    for lo in range(0, len(files), PREDICT_CHUNK):
        chunk = files[lo : lo + PREDICT_CHUNK]
        with _fail_on(DataError):
            ts = to_imageset([str(f) for f in chunk], size=det.read_size_)
            yield lo, det.explain(ts, n=len(ts) if maps else 0, maps=maps)


def _p_or_none(det, scores: np.ndarray) -> np.ndarray | None:
    return det.p_values_of(scores) if len(det.val_scores_) else None


def _word(flag: bool) -> str:
    return "anomalous" if flag else "normal"


def _check_decision(det, threshold, alpha, fdr, csv_out):
    """The verdict rule ``(score, p) -> word`` from the options, or one clear error."""
    if sum(v is not None for v in (threshold, alpha, fdr)) > 1:
        _fail("choose one of --threshold, --alpha and --fdr")
    for name, v in (("--alpha", alpha), ("--fdr", fdr)):
        if v is not None and not 0 < v < 1:
            _fail(f"{name} {v}: must lie in (0, 1)")
        if v is not None and not len(det.val_scores_):
            _fail(
                f"{name} needs the held-out normal scores, which this model does not keep "
                "(fitted with --val-fraction 0, or by a reconad before 2026-12-07): fit again"
            )
    exists = csv_out is not None and (csv_out.exists() or csv_out.is_symlink())
    if exists and (csv_out.is_symlink() or not csv_out.is_file() or not _is_our_csv(csv_out)):
        # a CSV this command wrote before may be replaced; anything else is the user's
        _fail(
            f"--csv {csv_out} exists and is not a CSV reconad predict wrote; refusing to "
            "replace it (choose another path)"
        )
    if alpha is not None:
        return lambda s, p: _word(p <= alpha)
    t = det.threshold_ if threshold is None else threshold
    if not np.isfinite(t):
        return lambda s, p: "unknown (no threshold)"
    return lambda s, p: _word(s > t)


CSV_HEADER = "path,score,p_value,verdict"


def _is_our_csv(path: Path) -> bool:
    try:
        with open(path) as f:
            return f.readline().strip() == CSV_HEADER
    except (OSError, UnicodeDecodeError):
        return False


def _write_csv(path: Path, rows: list[tuple]) -> None:
    import csv

    from reconad.serialize import atomic_write

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            f.write(CSV_HEADER + "\n")
            w = csv.writer(f)
            for name, s, p, verdict in rows:
                w.writerow([name, repr(s), "" if p is None else repr(p), verdict])

    atomic_write(path, write)


def _heatmap_stems(files: list[Path]) -> list[str]:
    """A file name for each input's heat maps, unique among them: the stem, or the path
    relative to the inputs' common folder (``test/good/000.png`` -> ``test_good_000``)
    where two inputs share a stem."""
    counts: dict[str, int] = {}
    for f in files:
        counts[f.stem] = counts.get(f.stem, 0) + 1
    if all(c == 1 for c in counts.values()):
        return [f.stem for f in files]
    common = Path(os.path.commonpath([str(f.resolve().parent) for f in files]))
    return [
        f.stem
        if counts[f.stem] == 1
        else "_".join(f.resolve().with_suffix("").relative_to(common).parts)
        for f in files
    ]


def _write_heatmap(
    folder: Path, f: Path, i: int, ex: dict[str, Any], stem: str | None = None
) -> None:
    from reconad.data.folders import load_image
    from reconad.detector import resize_maps
    from reconad.report import save_extras_grid, save_heatmap

    folder.mkdir(parents=True, exist_ok=True)
    stem = stem or f.stem
    if ex["extras"]:
        save_extras_grid(
            {k: v[i : i + 1] for k, v in ex["extras"].items()},
            folder / f"{stem}_grid.png",
            scores=ex["scores"][i : i + 1],
            n=1,
            overlay=None if ex["maps"] is None else ex["maps"][i : i + 1],
        )
    if ex["maps"] is not None:
        amap = resize_maps(ex["maps"][i : i + 1], [ex["orig_sizes"][i]])[0]

        save_heatmap(
            load_image(f).astype(np.float32) / 255.0,
            amap,
            folder / f"{stem}_heatmap.png",
            f"score {ex['scores'][i]:.4g}",
        )


EXPORT_FORMATS = ("onnx",)


@app.command("export")
def export_cmd(
    model: Annotated[Path, typer.Option(help="Model folder written by `reconad fit`.")],
    out: Annotated[
        Path,
        typer.Option(
            help="The .onnx file to write; its .json (same name) is written beside it. Only "
            "files an earlier export wrote are replaced."
        ),
    ],
    fmt: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
) -> None:
    """Export a fitted model as one ONNX graph that gives reconad's own numbers.

    The graph takes uint8 images (N, C, H, W) at the model's input size (0-255, RGB for
    colour; resize first) and returns `score` (N,) and, for map methods, `map` (N, H, W):
    intensity normalisation, the division by 255, the method's score and every post-hoc
    step (multi-view, difficulty, standardisation, the chosen image score) are inside it.
    OUT.json records the input convention, the threshold, the held-out normal scores for
    conformal p-values, the method, its provenance and the parity check. Every export is
    checked: onnxruntime and reconad score the same images and must agree to 1e-4 (or to a
    few times reconad's own float32 batch noise, where that is larger). What cannot be
    exported (a --patch model, --difficulty bpp) is refused with the reason. Needs
    onnx and onnxruntime: pip install "reconad\\[export]".
    """
    from reconad.export import ExportError, check_outputs, export_onnx, require_onnx
    from reconad.serialize import OutputRefused

    if fmt not in EXPORT_FORMATS:
        _fail(f"--format {fmt!r}: unknown export format; choose from {list(EXPORT_FORMATS)}")
    with _fail_on(ImportError, ValueError):  # ValueError: a bad --out, or one not ours
        require_onnx()
        check_outputs(out)
    det = _load(model)
    with _fail_on(ExportError, OutputRefused):
        info = export_onnx(det, out)
    c, h, w = det.input_shape_
    worst = max(r["max_abs_diff"] for k, r in info["parity"].items() if k != "images")
    typer.echo(
        f"wrote {out} and {out.with_suffix('.json')}: {det.method}, input uint8 "
        f"(N, {c}, {h}, {w}), outputs {', '.join(info['outputs'])}; largest difference "
        f"from reconad on {info['parity']['images']} check images {worst:.3g}"
    )


def main() -> None:
    """Console-script entry point: an unexpected exception is one line (exit 1) unless
    ``--debug`` or RECONAD_DEBUG=1 asks for the traceback. ``--debug`` is the root
    command's option; written after the command (``reconad fit --debug ...``) it is moved in
    front, so it works anywhere, and before typer parses anything, so a failure while
    parsing is covered too."""
    rest = [a for a in sys.argv[1:] if a != "--debug"]
    debug = len(rest) < len(sys.argv) - 1 or os.environ.get("RECONAD_DEBUG") == "1"
    if len(rest) < len(sys.argv) - 1:
        sys.argv[1:] = ["--debug", *rest]
    try:
        app()
    except Exception as e:  # a bug, not bad input (bad input exits 2 with its own line)
        if debug:
            raise
        err.print(
            "[bold red]internal error:[/]",
            Text(f"{type(e).__name__}: {e} (rerun with --debug for the traceback)"),
            soft_wrap=True,
        )
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
