"""Residual maps, multi-view score fusion and difficulty normalisation (METHODS.md section 4).

The multi-view score (Zhu 2023, [reconstructed] from the thesis abstract) looks at a
reconstruction from several sides, each a scalar per image:

* ``mse``: mean squared pixel error between x and its reconstruction x_hat;
* ``ssim``: mean of 1 - SSIM (Gaussian window 11, sigma 1.5; kornia), the local view;
* ``feature``: 1 - cos(phi(x), phi(x_hat)) with phi the method's own encoder, globally pooled
  (``Method.features``), or :class:`RandomFeatures` when the method has no encoder;
* ``native``: the method's own image score (to normalise a plain score by difficulty).

Difficulty D(x) of the *input* image, because the error of an autoencoder grows with how
busy an image is:

* ``entropy``: Shannon entropy (bits) of the 256-bin histogram of the gray image;
* ``bpp``: compressed bits per pixel: the image (gray or RGB, 8 bit) encoded as PNG by Pillow
  (level 9); only the IDAT payload is counted, so the fixed header does not act as an offset;
* ``gradient``: mean Sobel gradient magnitude of the gray image (kornia, normalised kernel).

:class:`ScoreFusion` turns the views into one score, fitted on held-out normal images only:
each view v is first normalised, ``v / max(D, floor)`` (divide; floor = 10% of the normals'
median D, so a blank image cannot divide by zero) or ``v - beta D`` (subtract; beta the least
squares slope of v on D over the normals), then standardised with the normals' mean and
standard deviation, and the standardised views are summed (weights a = b = c = 1). Dividing
each raw view before standardising is our reading of ``S / D(x)``: a z-score can be negative,
and dividing it by D would reverse the order of below-average images. All fitted state is
plain floats, saved as JSON.

Layers: the map primitives (``mse_map``, ``ssim_map``, ``ssim_window``, the mean filter and
``map_image_scores``, ``feature_dissimilarity``) live in :mod:`reconad.methods.maps`, below the
methods that use them, and are re-exported here. This module sits above the methods: it may
import them, and no method imports it (``tests/test_layers.py``).
"""

from __future__ import annotations

import dataclasses
import io
import struct
from typing import Any

import numpy as np
import torch
from kornia.color import rgb_to_grayscale
from kornia.filters import sobel
from PIL import Image
from torch import Tensor, nn

from reconad.calibration import Standardizer
from reconad.methods.maps import (  # re-exported: the map primitives live below the methods
    feature_dissimilarity,
    gaussian_smooth,
    map_image_scores,
    mean_filter_side,
    mse_map,
    ssim_map,
    ssim_window,
)

VIEWS = ("mse", "ssim", "feature", "native")
MULTIVIEW = ("mse", "ssim", "feature")
DIFFICULTIES = ("none", "entropy", "bpp", "gradient")
MODES = ("divide", "subtract")
SCORES = ("native", "multiview")

__all__ = [
    "DIFFICULTIES",
    "MODES",
    "MULTIVIEW",
    "SCORES",
    "VIEWS",
    "RandomFeatures",
    "ScoreFusion",
    "ScoringSpec",
    "bits_per_pixel",
    "compute_views",
    "difficulty",
    "feature_dissimilarity",
    "gaussian_smooth",
    "frozen_network",
    "gray_entropy",
    "map_image_scores",
    "mean_filter_side",
    "mean_gradient",
    "mse_map",
    "ssim_map",
    "ssim_window",
]


class RandomFeatures(nn.Module):
    """A frozen, randomly initialised conv net (3 stride-2 layers, ReLU, global average pool).

    The fallback phi for methods without an encoder. No pretrained network can be shipped or
    downloaded here, and random convolutional features are a known, if weak, image descriptor.
    The weights follow from ``seed`` alone (He-normal draws from a CPU generator), so only the
    seed and channel count need saving.
    """

    def __init__(self, channels: int, seed: int = 0, widths: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        layers: list[nn.Module] = []
        c_in = channels
        for c_out in widths:
            conv = nn.Conv2d(c_in, c_out, 3, 2, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
                conv.weight.mul_((2.0 / (c_in * 9)) ** 0.5)
                conv.bias.zero_()
            layers += [conv, nn.ReLU()]
            c_in = c_out
        self.net = nn.Sequential(*layers).requires_grad_(False).eval()

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).mean((2, 3))


_FROZEN: dict[int, RandomFeatures] = {}


def frozen_network(channels: int) -> RandomFeatures:
    """The shared fallback phi for ``channels``-channel images (seed 0), built once."""
    if channels not in _FROZEN:
        _FROZEN[channels] = RandomFeatures(channels, seed=0)
    return _FROZEN[channels]


# ---- difficulty ----------------------------------------------------------------------------
def _gray_uint8(x: Tensor) -> Tensor:
    g = rgb_to_grayscale(x) if x.shape[1] == 3 else x.mean(1, keepdim=True)
    return (g.clamp(0, 1) * 255).round().to(torch.uint8)


def gray_entropy(x: Tensor) -> Tensor:
    """Shannon entropy in bits of each image's 256-bin gray-level histogram: ``(B,)``."""
    g = _gray_uint8(x).flatten(1).long()
    counts = torch.zeros(g.shape[0], 256, dtype=torch.float64)
    counts.scatter_add_(1, g, torch.ones_like(g, dtype=torch.float64))
    p = counts / g.shape[1]
    return -(p * torch.log2(p.clamp_min(1e-300))).sum(1)


def _idat_bytes(png: bytes) -> int:
    """Bytes of compressed pixel data (IDAT chunks) in a PNG file."""
    pos, total = 8, 0
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        if kind == b"IDAT":
            total += length
        pos += 12 + length
    return total


def bits_per_pixel(x: Tensor) -> Tensor:
    """PNG-compressed bits per pixel (Pillow, level 9, IDAT only) of each 8-bit image."""
    u8 = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    h, w = u8.shape[-2:]
    out = []
    for img in u8:
        arr = img[0].numpy() if img.shape[0] == 1 else img[:3].permute(1, 2, 0).numpy()
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", compress_level=9)
        out.append(8.0 * _idat_bytes(buf.getvalue()) / (h * w))
    return torch.tensor(out, dtype=torch.float64)


def mean_gradient(x: Tensor) -> Tensor:
    """Mean Sobel gradient magnitude of the gray image (kornia, normalised kernel): ``(B,)``."""
    g = rgb_to_grayscale(x) if x.shape[1] == 3 else x.mean(1, keepdim=True)
    return sobel(g.float(), eps=0.0).flatten(1).mean(1).double()


def difficulty(x: Tensor, name: str) -> Tensor:
    """The difficulty measure ``name`` (entropy, bpp or gradient) of images in [0, 1]."""
    fns = {"entropy": gray_entropy, "bpp": bits_per_pixel, "gradient": mean_gradient}
    if name not in fns:
        raise ValueError(f"unknown difficulty {name!r}; choose from {list(fns)}")
    return fns[name](x.detach().cpu()).cpu()  # histogram/PNG measures run on the CPU


# ---- views --------------------------------------------------------------------------------
def compute_views(
    method: Any,
    x: Tensor,
    views: tuple[str, ...],
    difficulty_name: str = "none",
    frozen: nn.Module | None = None,
    native: Tensor | None = None,
) -> dict[str, Tensor]:
    """The named scalar views ``(B,)`` (float64, CPU) of images x, plus ``difficulty``.

    Args:
        method: a fitted method in eval mode.
        x: images ``(B, C, H, W)`` in [0, 1].
        views: view names, see ``VIEWS``.
        difficulty_name: ``none`` or the difficulty measure to add as ``difficulty``.
        frozen: phi for methods without ``features``; default :func:`frozen_network`.
        native: the method's image scores of x when already computed.

    Raises:
        ValueError: if a view needs a reconstruction and ``method.reconstruct`` gives None.
    """
    unknown = set(views) - set(VIEWS)
    if unknown:
        raise ValueError(f"unknown score view(s) {sorted(unknown)}; choose from {VIEWS}")
    out: dict[str, Tensor] = {}
    if "native" in views:
        native = method.score(x).image_score if native is None else native
        out["native"] = native.double().cpu()
    if set(views) & set(MULTIVIEW):
        x_hat = method.reconstruct(x)
        if x_hat is None:
            raise ValueError(
                f"method {method.name!r} gives no image reconstruction (reconstruct() returns "
                "None), so multi-view scoring cannot be used with it; use score_views='native' "
                "(--score native)"
            )
        if "mse" in views:
            out["mse"] = mse_map(x, x_hat).flatten(1).mean(1).double().cpu()
        if "ssim" in views:
            out["ssim"] = ssim_map(x, x_hat).flatten(1).mean(1).double().cpu()
        if "feature" in views:
            fa, fb = method.features(x), method.features(x_hat)
            if fa is None or fb is None:
                frozen = frozen or frozen_network(x.shape[1])
                fa, fb = frozen(x.float().cpu()), frozen(x_hat.float().cpu())
            out["feature"] = feature_dissimilarity(fa, fb).cpu()
    if difficulty_name != "none":
        out["difficulty"] = difficulty(x, difficulty_name)
    return out


# ---- fusion -------------------------------------------------------------------------------
class ScoreFusion:
    """Difficulty-normalise and standardise views on held-out normals, then sum them.

    Args:
        views: view names (see ``VIEWS``); ``("native",)`` normalises a method's own score.
        difficulty: ``none``, ``entropy``, ``bpp`` or ``gradient``.
        mode: ``divide`` (v / D) or ``subtract`` (v - beta D, beta fitted on the normals).
    """

    def __init__(
        self, views: tuple[str, ...], difficulty: str = "none", mode: str = "divide"
    ) -> None:
        if not views or set(views) - set(VIEWS):
            raise ValueError(f"score views must be a non-empty subset of {VIEWS}; got {views}")
        if difficulty not in DIFFICULTIES:
            raise ValueError(f"unknown difficulty {difficulty!r}; choose from {DIFFICULTIES}")
        if mode not in MODES:
            raise ValueError(f"unknown difficulty mode {mode!r}; choose from {MODES}")
        self.views = tuple(views)
        self.difficulty = difficulty
        self.mode = mode

    def _d(self, values: dict[str, Any]) -> np.ndarray | None:
        if self.difficulty == "none":
            return None
        if "difficulty" not in values:
            raise ValueError(f"difficulty {self.difficulty!r} values are missing")
        return np.asarray(values["difficulty"], dtype=np.float64)

    def _normalised(self, name: str, v: np.ndarray, d: np.ndarray | None) -> np.ndarray:
        if d is None:
            return v
        if self.mode == "divide":
            return v / np.maximum(d, self.floor_)
        return v - self.beta_[name] * d

    def fit(self, values: dict[str, Any]) -> ScoreFusion:
        """Fit on the views (and difficulty) of held-out normal images only."""
        d = self._d(values)
        if d is not None:
            med = float(np.median(d))
            self.floor_ = 0.1 * med if med > 0 else 1e-6
        self.beta_: dict[str, float] = {}
        self.stats_: dict[str, Standardizer] = {}
        for name in self.views:
            v = np.asarray(values[name], dtype=np.float64)
            if d is not None and self.mode == "divide" and v.size and float(v.min()) < 0:
                raise ValueError(
                    f"view {name!r} is negative on some held-out normals: dividing it by "
                    f"{self.difficulty!r} would reverse their order; use mode='subtract'"
                )
            if d is not None and self.mode == "subtract":
                var = float(np.var(d))
                cov = float(np.mean((d - d.mean()) * (v - v.mean())))
                self.beta_[name] = cov / var if var > 0 else 0.0
            self.stats_[name] = Standardizer().fit(self._normalised(name, v, d))
        return self

    def transform(self, values: dict[str, Any]) -> np.ndarray:
        """The fused score of each image: the sum of its standardised, normalised views."""
        if not hasattr(self, "stats_"):
            raise RuntimeError("ScoreFusion is not fitted: call fit() on held-out normals")
        d = self._d(values)
        total = 0.0
        for name in self.views:
            v = np.asarray(values[name], dtype=np.float64)
            total = total + self.stats_[name].transform(self._normalised(name, v, d))
        return np.asarray(total, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state."""
        if not hasattr(self, "stats_"):
            raise RuntimeError("ScoreFusion is not fitted: nothing to save")
        return {
            "views": list(self.views),
            "difficulty": self.difficulty,
            "mode": self.mode,
            "floor": getattr(self, "floor_", None),
            "beta": dict(self.beta_),
            "stats": {k: s.to_dict() for k, s in self.stats_.items()},
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> ScoreFusion:
        """Rebuild from :meth:`to_dict` output."""
        obj = cls(tuple(state["views"]), state["difficulty"], state["mode"])
        if state.get("floor") is not None:
            obj.floor_ = float(state["floor"])
        obj.beta_ = {k: float(v) for k, v in state.get("beta", {}).items()}
        obj.stats_ = {k: Standardizer.from_dict(s) for k, s in state["stats"].items()}
        missing = set(obj.views) - set(obj.stats_)
        if missing:
            raise ValueError(f"ScoreFusion state lacks statistics for {sorted(missing)}")
        return obj


# ---- the scoring spec (Detector, protocols, CLI) -------------------------------------------
@dataclasses.dataclass(frozen=True)
class ScoringSpec:
    """A post-hoc scoring option: which views (``native`` or ``multiview``), normalised by
    which image difficulty, and how (``divide`` or ``subtract``).

    Spelt as one tag in result folders and ``--also-score``: ``native``, ``multiview``,
    ``multiview+entropy``, ``bpp-subtract``... (:meth:`parse` and :attr:`name` invert each
    other); records keep it as ``{"score", "difficulty", "difficulty_mode"}``.
    """

    score: str = "native"
    difficulty: str = "none"
    mode: str = "divide"

    @classmethod
    def parse(cls, tag: str) -> ScoringSpec:
        """``"multiview+entropy-subtract"`` (a leading ``+`` is optional; ``native`` is the
        plain score) -> the spec.

        Raises:
            ValueError: for a tag that names an unknown score or difficulty.
        """
        parts = [p for p in tag.strip().strip("+").split("+") if p]
        score, difficulty_name, mode = "native", "none", "divide"
        if parts and parts[0] in SCORES:
            score = parts.pop(0)
        if parts:
            difficulty_name = parts.pop(0)
            if difficulty_name.endswith("-subtract"):
                difficulty_name, mode = difficulty_name[: -len("-subtract")], "subtract"
            elif difficulty_name.endswith("-divide"):
                difficulty_name = difficulty_name[: -len("-divide")]
        if parts or difficulty_name not in DIFFICULTIES:
            raise ValueError(
                f"cannot read scoring variant {tag!r}: expected SCORE[+DIFFICULTY[-subtract]] "
                f"with SCORE in {SCORES} and DIFFICULTY in {DIFFICULTIES}, e.g. "
                "multiview+entropy-subtract"
            )
        return cls(score, difficulty_name, mode)

    @classmethod
    def from_record(cls, record: dict[str, str] | None) -> ScoringSpec:
        """The spec a record's ``scoring`` entry holds (none: the native score)."""
        r = record or {}
        return cls(r.get("score", "native"), r.get("difficulty", "none"),
                   r.get("difficulty_mode", "divide"))  # fmt: skip

    @property
    def name(self) -> str:
        """A short tag for result folders, e.g. ``+multiview+entropy`` or ``+bpp-subtract``
        (empty for the native score)."""
        tag = "+multiview" if self.score == "multiview" else ""
        if self.difficulty != "none":
            tag += f"+{self.difficulty}" + ("-subtract" if self.mode == "subtract" else "")
        return tag

    def as_record(self) -> dict[str, str]:
        """As records keep it: ``{"score", "difficulty", "difficulty_mode"}``."""
        return {"score": self.score, "difficulty": self.difficulty, "difficulty_mode": self.mode}

    def check(self, method_cls: type) -> None:
        """Validate the spec for a method class before any training is spent.

        Raises:
            ValueError: for an unknown option, or multi-view scoring of a method that does
                not implement ``reconstruct``.
        """
        score, difficulty_name, mode = self.score, self.difficulty, self.mode
        if score not in SCORES:
            own = {f.name for f in dataclasses.fields(method_cls.Config)} if method_cls else set()
            hint = (
                f"; {method_cls.name}'s own 'score' setting is a hyper-parameter: --set "
                f"score={score} (in Python, hparams={{'score': {score!r}}})"
                if "score" in own
                else ""
            )
            raise ValueError(f"unknown score {score!r}; choose from {SCORES}{hint}")
        if difficulty_name not in DIFFICULTIES:
            raise ValueError(f"unknown difficulty {difficulty_name!r}; choose from {DIFFICULTIES}")
        if mode not in MODES:
            raise ValueError(f"unknown difficulty mode {mode!r}; choose from {MODES}")
        if mode != "divide" and difficulty_name == "none":
            raise ValueError(
                f"difficulty_mode={mode!r} needs a difficulty (entropy, bpp or gradient); "
                "with difficulty='none' nothing is subtracted"
            )
        if score == "native" and difficulty_name != "none" and mode == "divide":
            if getattr(method_cls, "signed_score", False):
                raise ValueError(
                    f"{method_cls.name}'s own score can be negative, and dividing it by a "
                    "difficulty would reverse the order of the images scored below zero: use "
                    "difficulty_mode='subtract', or score_views='multiview' (--score "
                    "multiview; its views are errors)"
                )
        from reconad.methods.base import Method

        if score == "multiview" and method_cls.reconstruct is Method.reconstruct:
            raise ValueError(
                f"method {method_cls.name!r} gives no image reconstruction (it does not implement "
                "reconstruct()), so score_views='multiview' (--score multiview) cannot be used "
                "with it; use score_views='native'"
            )

    def fusion(self) -> ScoreFusion | None:
        """The fusion a Detector fits for this spec, or None for the plain native score."""
        if self.score == "native" and self.difficulty == "none":
            return None
        views = MULTIVIEW if self.score == "multiview" else ("native",)
        return ScoreFusion(views, self.difficulty, self.mode)
