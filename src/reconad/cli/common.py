"""What every `reconad` command shares: the app, its consoles, option types, one-line
errors, and the checks that run before any data is read."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

app = typer.Typer(
    help="Unsupervised image anomaly detection by reconstruction: train on normal images, "
    "score new images and every pixel of them by how badly the model rebuilds them. "
    "Bad input gets one line and exit code 2; an internal error gets one line and exit code "
    "1, and `reconad --debug COMMAND ...` shows its Python traceback.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)


@app.callback()
def _root(
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            help="Show the Python traceback of an internal error (also RECONAD_DEBUG=1); "
            "accepted anywhere on the command line.",
        ),
    ] = False,
) -> None:
    if debug:
        os.environ["RECONAD_DEBUG"] = "1"


MethodOpt = Annotated[
    str,
    typer.Option(
        help="Registered method name (see `reconad list` for each one's provenance: ddrid is "
        "reconstructed from the published abstract, rotnet_ae from a thesis abstract)."
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Method hyper-parameter KEY=VALUE (repeatable), e.g. epochs=10."),
]
ProgressOpt = Annotated[bool, typer.Option(help="Show progress bars.")]
DifficultyOpt = Annotated[
    str,
    typer.Option(
        help="Normalise the score by image difficulty: none, entropy (gray histogram), bpp "
        "(PNG bits per pixel) or gradient (mean Sobel magnitude)."
    ),
]
DifficultyModeOpt = Annotated[
    str, typer.Option(help="divide, or subtract (slope fitted on held-out normals).")
]


NormalizeOpt = Annotated[
    str,
    typer.Option(
        help="Per-image intensity normalisation: none, or image (each image's mean and "
        "standard deviation set to 128 and 48; for parts photographed under varying light)."
    ),
]


def _map_smoothing_value(text: str) -> float | str:
    """``--map-smoothing``: ``auto`` or a width in pixels (a number >= 0)."""
    if text == "auto":
        return text
    try:
        sigma = float(text)
    except ValueError:
        sigma = -1.0
    if not sigma >= 0 or sigma == float("inf"):
        raise typer.BadParameter(f"{text!r}: a Gaussian width in pixels (>= 0) or auto")
    return sigma


MapSmoothingOpt = Annotated[
    str,
    typer.Option(
        callback=_map_smoothing_value,
        help="Smooth every anomaly map with a Gaussian of this standard deviation, in pixels "
        "at the image size (0: none), or auto: the width among 0, 1, 2, 4, 8 whose maps "
        "best find synthetic defects pasted into the held-out normal images (their pixel "
        "AUROC; no test image is used). Image scores are unchanged.",
    ),
]


KeepAspectOpt = Annotated[
    bool,
    typer.Option(
        "--keep-aspect",
        help="Keep each image's aspect ratio: shrink it into the image size and fill the "
        "rest by mirroring its own pixels, instead of squashing it to a square (for sets "
        "whose images differ in shape, such as Magnetic-Tile). Maps come back at each "
        "image's own size either way.",
    ),
]


PatchOpt = Annotated[
    int | None,
    typer.Option(
        help="Tile side P (pixels) smaller than the image size: the network trains on P x P "
        "tiles covering each image and scores whole images by overlapping tiles, for small "
        "defects in large images (e.g. --image-size 256 --patch 128)."
    ),
]


AugmentOpt = Annotated[
    str,
    typer.Option(
        help="Training transforms drawn per image: any of hflip,vflip,rot90 (rot90: square "
        "inputs). Only for parts whose normal images may appear flipped or turned (textures "
        "such as Magnetic-Tile; not a transistor)."
    ),
]


LoggerOpt = Annotated[
    str,
    typer.Option(
        help="Log every optimiser step's losses and learning rates (per stage and optimiser) "
        "into the model folder's logs/: csv (logs/metrics.csv, drawn by the report), "
        'tensorboard (logs/tensorboard/; needs pip install "reconad\\[tensorboard]") or '
        "csv,tensorboard. A resumed run continues its log. Default: no log."
    ),
]


def _check_logger(logger: str) -> tuple[str, ...]:
    """The ``--logger`` names, or one clear line (before any data is read)."""
    from reconad.runlog import parse_loggers

    try:
        return parse_loggers(logger)
    except (ValueError, ImportError) as e:
        _fail(f"--{e}")


def _scoring(method: str, score: str, difficulty: str, mode: str) -> dict[str, str]:
    """Validated scoring options (fails before any training is spent)."""
    from reconad.methods import get_method
    from reconad.scoring import ScoringSpec

    spec = ScoringSpec(score, difficulty, mode)
    try:
        spec.check(get_method(method))
    except (KeyError, ValueError) as e:
        _fail(str(e).strip('"'))
    return spec.as_record()


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """`--set KEY=VALUE` items as a dict; each value read as JSON where it parses, else kept
    as a string (`--set epochs=10` gives 10, `--set image_error=network` a string)."""
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


def _log(message: str) -> None:
    """Print a progress line as plain text (a "[mnist/ae]" prefix is not rich markup)."""
    console.print(message, markup=False, highlight=False)


def _fail(message: str) -> None:
    err.print("[bold red]error:[/]", Text(message), soft_wrap=True)  # one line, no markup
    raise typer.Exit(2)


@contextlib.contextmanager
def _fail_on(*errors: type[Exception]):
    """Bad input that raises one of ``errors`` in the block: its message, one line, exit 2."""
    try:
        yield
    except errors as e:
        _fail(str(e))


def _check_report(report: Path | None) -> None:
    """Refuse, before any work, a --report path holding a file reconad did not write."""
    from reconad.report.html import check_report_path
    from reconad.serialize import OutputRefused

    if report is not None:
        with _fail_on(OutputRefused):
            check_report_path(report)


def _model_config(model: Path, det) -> dict[str, Any]:
    """The model folder's config.json as saved (training versions included), else the
    loaded detector's."""
    try:
        return json.loads((model / "config.json").read_text())
    except (OSError, ValueError):
        return det.to_config()


def _training_curves(model: Path, cfg: dict[str, Any]):
    """``(curves, where from)``: the run log when the model folder has one, else the
    per-epoch losses every model keeps in its config.json."""
    from reconad.report.html import history_curves
    from reconad.runlog import read_run_log

    curves = read_run_log(model)
    if curves:
        return curves, f"Per optimiser step, from the run log in {model}."
    return history_curves(cfg), "Mean loss per epoch, from the training history in config.json."
