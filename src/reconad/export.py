"""ONNX export of a fitted :class:`~reconad.detector.Detector`, checked for parity.

The graph takes the raw image batch as the detector reads it, uint8 ``(N, C, H, W)`` at the
model's input size (0-255; RGB channel order for colour), and returns the image ``score``
``(N,)`` (float64) and, for map methods, the anomaly ``map`` ``(N, H, W)`` (float32). Every
step of the detector's score is inside: per-image intensity normalisation, ``/ 255``, the
method's score, then the post-hoc steps (multi-view views, difficulty, standardisation and
fusion, or an image score read off the map). So a deployment runs one file with onnxruntime
and gets the numbers ``Detector.score_samples`` and ``Detector.anomaly_maps`` give; the
``.json`` beside it holds what turns a score into a decision (threshold, and the held-out
normal scores that conformal p-values are computed against).

Parity is checked on every export: the graph and the detector score the same images, and
each output must agree to :data:`TOLERANCE`, or, where the detector's own float32 result
moves by more than that when nothing but the batch changes (images scored one at a time
instead of together; SSIM maps of a barely trained network, maps divided by a tiny spread),
to :data:`NOISE_FACTOR` times that movement. What cannot be put in a graph is refused with
one line saying why (:class:`ExportError`): scoring by overlapping tiles (``patch``), the
``bpp`` difficulty (PNG compression), a method that declares itself not exportable
(``Method.export_refusal``), or a graph that fails the check.

A method that scores a large batch in chunks (DRAEM, UTAD) is traced on a small batch, so
the graph scores a whole batch at once: feed it batches of a size that fits in memory.

onnx and onnxruntime are an optional extra: ``pip install "reconad[export]"``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from reconad.inputs import INTENSITY_MEAN, INTENSITY_STD
from reconad.scoring import ScoreFusion, compute_views, frozen_network, map_image_scores
from reconad.serialize import OutputRefused, atomic_write

if TYPE_CHECKING:
    from reconad.detector import Detector

FORMAT = "reconad-onnx/1"
OPSET = 17
#: largest absolute difference from the detector an export may show ...
TOLERANCE = 1e-4
#: ... unless the detector's own result moves more with the batch: then this many times that
NOISE_FACTOR = 4.0
INSTALL_HINT = 'ONNX export needs onnx and onnxruntime: pip install "reconad[export]"'

__all__ = [
    "FORMAT",
    "NOISE_FACTOR",
    "TOLERANCE",
    "ExportError",
    "ExportedModel",
    "check_outputs",
    "export_onnx",
    "is_our_onnx",
    "is_our_sidecar",
    "parity",
    "refusal",
    "require_onnx",
    "sidecar_path",
]


class ExportError(ValueError):
    """The model cannot be exported with the detector's numbers; the message says why."""


def require_onnx() -> None:
    """Import onnx and onnxruntime, or raise an ImportError whose one line says how to
    install them (an optional extra: fitting and scoring do not need them)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ImportError(INSTALL_HINT) from None


def sidecar_path(onnx_path: str | Path) -> Path:
    """The ``.json`` beside an ``.onnx`` file (``model.onnx`` -> ``model.json``)."""
    return Path(onnx_path).with_suffix(".json")


def refusal(det: Detector) -> str | None:
    """Why this fitted detector cannot be exported faithfully, or None when it can."""
    cls = type(det.method_)
    if cls.export_refusal:
        return f"method {det.method!r} cannot be exported to ONNX: {cls.export_refusal}"
    if getattr(det, "patch_", None):
        return (
            f"the model scores by overlapping {det.patch_}x{det.patch_} tiles (--patch), "
            "which the ONNX export does not cover; export a model fitted without --patch"
        )
    if getattr(det, "map_sigma_", 0.0):
        return (
            f"the model smooths its maps (a Gaussian of sigma {det.map_sigma_:g} px, "
            "--map-smoothing), which the ONNX export does not cover; export a model fitted "
            "with --map-smoothing 0"
        )
    if getattr(det, "keep_aspect", False):
        return (
            "the model letterboxes each image to keep its aspect ratio (--keep-aspect), "
            "which the ONNX export does not cover; export a model fitted without it"
        )
    fusion = getattr(det, "scoring_", None)
    if fusion is not None and fusion.difficulty == "bpp":
        return (
            "the 'bpp' difficulty compresses each image as PNG (Pillow), which an ONNX graph "
            "cannot do; fit with --difficulty entropy or gradient to export"
        )
    return None


class _Scorer(nn.Module):
    """uint8 images -> (score, map), by the detector's own scoring code (``Detector._run``)."""

    def __init__(self, det: Detector) -> None:
        super().__init__()
        self.method = det.method_
        self.normalize = det.normalize
        self.fusion: ScoreFusion | None = getattr(det, "scoring_", None)
        self.image_score = getattr(det, "image_score_", "native")
        self.maps = type(det.method_).produces_maps
        # the fallback feature network, built now: built while tracing, its random
        # initialisation would enter the graph
        views = self.fusion.views if self.fusion is not None else ()
        self.frozen = frozen_network(det.input_shape_[0]) if "feature" in views else None

    def forward(self, images: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        x = images.float()
        if self.normalize == "image":
            x = normalize_intensity(x)
        x = x / 255.0
        out = self.method.score(x)
        if self.fusion is not None:
            f = self.fusion
            views = compute_views(
                self.method, x, f.views, f.difficulty, frozen=self.frozen, native=out.image_score
            )
            score = fuse(f, views)
        elif self.image_score != "native":
            score = map_image_scores(out.anomaly_map)[self.image_score].float().double()
        else:  # the detector hands back float32 scores
            score = out.image_score.float().double()
        if not self.maps:
            return score
        return score, out.anomaly_map[:, 0].float()


def normalize_intensity(x: Tensor) -> Tensor:
    """:func:`reconad.inputs.normalize_intensity` (``image``) of float ``(N, C, H, W)``
    values 0-255, in torch: mean and spread in float64 rounded to float32 (numpy's float32
    statistics), then numpy's float32 arithmetic, rounding half to even, clipping."""
    mean = x.double().mean((1, 2, 3), keepdim=True).float()
    std = (x - mean).double().pow(2).mean((1, 2, 3), keepdim=True).sqrt().float()
    out = (x - mean) / std.clamp_min(1.0) * INTENSITY_STD + INTENSITY_MEAN
    return out.round().clamp(0.0, 255.0)


def fuse(fusion: ScoreFusion, values: dict[str, Tensor]) -> Tensor:
    """:meth:`ScoreFusion.transform` in torch (float64): each view difficulty-normalised,
    standardised with the held-out normals' statistics, and summed."""
    d = values["difficulty"].double() if fusion.difficulty != "none" else None
    total = torch.zeros_like(values[fusion.views[0]], dtype=torch.float64)
    for name in fusion.views:
        v = values[name].double()
        if d is not None and fusion.mode == "divide":
            v = v / d.clamp_min(fusion.floor_)
        elif d is not None:
            v = v - fusion.beta_[name] * d
        stats = fusion.stats_[name]
        total = total + (v - stats.mean_) / stats.std_
    return total


def _rot90(g: Any, x: Any, k: Any, dims: Any) -> Any:
    """ONNX for ``torch.rot90`` (ARNet's and RotNet's rotations), which the exporter lacks:
    flips (Slice, step -1) and a Transpose, as torch itself computes it."""
    from torch.onnx import symbolic_helper as sh

    k = sh._get_const(k, "i", "k") % 4
    rank = x.type().dim()
    d0, d1 = (int(d) % rank for d in sh._get_const(dims, "is", "dims"))

    def const(v: int) -> Any:
        return g.op("Constant", value_t=torch.tensor([v], dtype=torch.int64))

    def flip(t: Any, d: int) -> Any:
        return g.op("Slice", t, const(-1), const(-(2**63)), const(d), const(-1))

    perm = list(range(rank))
    perm[d0], perm[d1] = d1, d0
    if k == 0:
        return g.op("Identity", x)
    if k == 2:
        return flip(flip(x, d0), d1)
    return g.op("Transpose", flip(x, d1 if k == 1 else d0), perm_i=perm)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter: its tracer warnings (about constants the parity check then
    verifies) and the whole graph it prints on a failure (the error keeps one line)."""
    saved = []
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            for fd, stream in ((1, sys.stdout), (2, sys.stderr)):
                with contextlib.suppress(AttributeError, OSError, ValueError):
                    stream.flush()
                saved.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
            yield
        finally:
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)


def _trace(scorer: nn.Module, example: Tensor, outputs: list[str]) -> bytes:
    """The scorer as ONNX bytes (the TorchScript exporter; the batch axis dynamic)."""
    torch.onnx.register_custom_op_symbolic("aten::rot90", _rot90, OPSET)
    buf = io.BytesIO()
    axes = {name: {0: "batch"} for name in ["images", *outputs]}
    try:
        with torch.no_grad(), _quiet():
            torch.onnx.export(
                scorer,
                (example,),
                buf,
                input_names=["images"],
                output_names=outputs,
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
    except Exception as e:  # the exporter raises many types for an op it cannot convert
        raise ExportError(f"the scoring graph cannot be traced to ONNX: {_first_line(e)}") from None
    return buf.getvalue()


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def _session(model: bytes | str) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors reach the caller as exceptions, not log lines
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def run_onnx(session: Any, images: np.ndarray) -> dict[str, np.ndarray]:
    """Run an exported model's onnxruntime session on uint8 ``(N, C, H, W)`` images:
    ``{"score": (N,), "map": (N, H, W)}`` ("map" only for map methods)."""
    names = [o.name for o in session.get_outputs()]
    outs = session.run(names, {"images": np.ascontiguousarray(images, dtype=np.uint8)})
    return dict(zip(names, outs, strict=True))


class ExportedModel:
    """An exported model run by onnxruntime, with its ``.json`` (``info``).

    Args:
        path: the ``.onnx`` file written by :func:`export_onnx`.
    """

    def __init__(self, path: str | Path) -> None:
        require_onnx()
        self.path = Path(path)
        self.info = json.loads(sidecar_path(self.path).read_text())
        self.session = _session(str(self.path))

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """``{"score", "map"}`` of uint8 ``(N, C, H, W)`` images at the model's input size."""
        return run_onnx(self.session, images)


def parity(
    det: Detector, got: dict[str, np.ndarray], images: np.ndarray
) -> dict[str, dict[str, float]]:
    """How closely the graph's outputs ``got`` match the detector's on the same uint8
    model-size images (``Detector.explain``: the scores and maps ``score_samples`` and
    ``anomaly_maps`` return), per output: the largest absolute difference, the detector's
    own batch noise (the largest change when each image is scored alone) and the tolerance
    that follows from both."""
    ref = det.explain(images, n=0)
    alone = [det.explain(images[i : i + 1], n=0) for i in range(len(images))]
    out = {}
    for name, key in (("score", "scores"), ("map", "maps")):
        if ref[key] is None:
            continue
        noise = np.max(np.abs(np.concatenate([a[key] for a in alone]) - ref[key]))
        out[name] = {
            "max_abs_diff": float(np.max(np.abs(got[name] - ref[key]))),
            "native_batch_noise": float(noise),
            "tolerance": max(TOLERANCE, NOISE_FACTOR * float(noise)),
        }
    return out


def _check_images(det: Detector, n: int, seed: int) -> np.ndarray:
    """Smoothed random uint8 images at the model's input size (no data is needed)."""
    c, h, w = det.input_shape_
    x = torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))
    x = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    return (x * 255).round().to(torch.uint8).numpy()


def export_onnx(
    det: Detector, out: str | Path, check_images: np.ndarray | None = None
) -> dict[str, Any]:
    """Write ``out`` (the ONNX graph) and its ``.json`` beside it, after a parity check.

    The graph is traced on a batch of 2 (the batch axis stays dynamic), then onnxruntime
    and the detector score ``check_images`` (default: 3 smoothed random images, so another
    batch size than the traced one); any output outside its tolerance (see :func:`parity`)
    refuses the export. Both files are written atomically, and only over files an earlier
    export wrote.

    Args:
        det: a fitted Detector.
        out: the ``.onnx`` path.
        check_images: uint8 ``(N, C, H, W)`` images at the model's input size.

    Returns:
        What the ``.json`` holds.

    Raises:
        ImportError: without onnx and onnxruntime (one line: how to install them).
        ExportError: when the model cannot be exported faithfully (one line: why).
        OutputRefused: when ``out`` or its ``.json`` exists and reconad did not write it.
        ValueError: for check images of another dtype or shape than the model's input.
    """
    require_onnx()
    import onnx

    det._check_fitted()
    why = refusal(det)
    if why:
        raise ExportError(why)
    out = Path(out)
    check_outputs(out)
    images = _check_images(det, 3, seed=2) if check_images is None else check_images
    if images.dtype != np.uint8 or tuple(images.shape[1:]) != tuple(det.input_shape_):
        raise ValueError(
            f"check images must be uint8 (N, {', '.join(map(str, det.input_shape_))}); "
            f"got {images.dtype} {tuple(images.shape)}"
        )
    scorer = _Scorer(det).eval()
    outputs = ["score", "map"] if scorer.maps else ["score"]
    device = det.method_.device
    det.method_.cpu().eval()
    try:
        proto = onnx.load_from_string(
            _trace(scorer, torch.from_numpy(_check_images(det, 2, seed=1)), outputs)
        )
        proto.producer_name = "reconad"
        onnx.helper.set_model_props(proto, {"format": FORMAT, "method": det.method})
        data = proto.SerializeToString()
        try:
            got = run_onnx(_session(data), images)
        except Exception as e:  # onnxruntime's own error types
            why = _first_line(e)
            raise ExportError(f"onnxruntime cannot run the traced graph: {why}") from None
        report = parity(det, got, images)
    finally:
        det.method_.to(device)
    for name, r in report.items():
        if not r["max_abs_diff"] <= r["tolerance"]:
            raise ExportError(
                f"the exported {name} differs from the detector's by up to "
                f"{r['max_abs_diff']:.3g} (tolerance {r['tolerance']:.3g}); method "
                f"{det.method!r} cannot be exported faithfully"
            )
    info = sidecar(det, out, outputs, report, len(images))
    atomic_write(out, lambda p: p.write_bytes(data))
    atomic_write(sidecar_path(out), lambda p: p.write_text(json.dumps(info, indent=2) + "\n"))
    return info


def sidecar(
    det: Detector, out: Path, outputs: list[str], report: dict[str, Any], n_checked: int
) -> dict[str, Any]:
    """What the ``.json`` holds: input convention, outputs, decision, provenance, parity."""
    import onnx
    import onnxruntime

    cfg = det.to_config()
    c, h, w = det.input_shape_
    threshold = float(cfg["calibration"]["threshold"])
    return {
        "format": FORMAT,
        "onnx": out.name,
        "method": det.method,
        "provenance": cfg["provenance"],
        "preset": cfg["preset"],
        "input": {
            "name": "images",
            "shape": ["batch", c, h, w],
            "channels": c,
            "height": h,
            "width": w,
            "dtype": "uint8",
            "range": [0, 255],
            "layout": "NCHW",
            "color": "gray" if c == 1 else "RGB",
            "resize": "bring images to height x width first (reconad: Pillow, bilinear); the "
            "graph does the rest, including the division by 255",
            "normalize": det.normalize,
        },
        "outputs": {
            "score": "(batch,) float64, higher = more anomalous",
            **({"map": f"(batch, {h}, {w}) float32, the anomaly map"} if "map" in outputs else {}),
        },
        "decision": "anomalous when score > threshold; or when p_value <= alpha",
        "calibration": {
            "threshold": threshold if np.isfinite(threshold) else None,
            "target_fpr": cfg["calibration"]["target_fpr"],
            "p_value": "(1 + number of scores >= s) / (len(scores) + 1): conformal, against "
            "these held-out normal scores",
            "scores": cfg["calibration"]["scores"],
        },
        "scoring": cfg["scoring"],
        "hparams": cfg["hparams"],
        "training": {k: v for k, v in cfg["training"].items() if k != "history"},
        "parity": {"images": n_checked, **report},
        "opset": OPSET,
        "versions": {
            **cfg["versions"],
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
    }


def check_outputs(out: str | Path) -> None:
    """Refuse to replace ``out`` or its ``.json`` unless an export wrote them: a file of the
    user's at the chosen path is never overwritten.

    Raises:
        ValueError: when ``out`` does not end in ``.onnx`` (its ``.json`` would collide).
        OutputRefused: naming the file.
    """
    if Path(out).suffix.lower() != ".onnx":
        raise ValueError(f"{out}: the output must be an .onnx file (its .json goes beside it)")
    for path, ours in ((Path(out), is_our_onnx), (sidecar_path(out), is_our_sidecar)):
        if (path.exists() or path.is_symlink()) and (
            path.is_symlink() or not path.is_file() or not ours(path)
        ):
            raise OutputRefused(
                f"{path} exists and is not a file reconad export wrote; refusing to replace "
                "it (choose another --out)"
            )


def is_our_onnx(path: str | Path) -> bool:
    """True when ``path`` is an ONNX file an export wrote (so it may be replaced)."""
    try:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # not ONNX, unreadable, or onnx missing: not ours to replace
        return False
    props = {p.key: p.value for p in proto.metadata_props}
    return proto.producer_name == "reconad" and props.get("format") == FORMAT


def is_our_sidecar(path: str | Path) -> bool:
    """True when ``path`` is the ``.json`` an export wrote."""
    try:
        return json.loads(Path(path).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False
