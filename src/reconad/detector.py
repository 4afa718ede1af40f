"""`Detector`: the estimator facade over every registered method.

A scikit-learn estimator (``sklearn.base.BaseEstimator``): the constructor only stores its
explicit arguments, so ``get_params``, ``set_params`` and ``sklearn.base.clone`` work; ``fit``
returns ``self``; learned state ends with ``_`` (``method_``, ``threshold_``). A method's own
hyper-parameters go in one argument, ``hparams={...}``. Scores follow the anomaly-detection
convention: **higher = more anomalous** (as in PyOD's ``decision_function`` and anomalib),
and ``predict`` returns 1 for anomalous, 0 for normal.

The threshold is set on normal images held out from the training data (``val_fraction``, or
an explicit ``validation`` set), never on test images.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import platform
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator

import reconad
from reconad import conformal, tiling
from reconad.aspect import letterbox, unletterbox
from reconad.calibration import threshold_at_fpr
from reconad.data.imageset import DataError, ImageSet
from reconad.data.protocol import holdout_split
from reconad.inputs import (
    NORMALIZE_MODES,
    ImageInput,
    normalize_intensity,
    resize_uint8,
    round_up,
    to_imageset,
)
from reconad.methods.base import Method, ScoreOutput, cat_outputs, get_method
from reconad.runlog import LOG_DIR, log_files, parse_loggers, save_log_files, write_log_files
from reconad.score_choice import (
    CANDIDATES,
    IMAGE_SCORES,
    MIN_IMAGES,
    Choice,
    SigmaChoice,
    choose_sigma,
)
from reconad.score_choice import choose as choose_image_score
from reconad.scoring import (
    ScoreFusion,
    ScoringSpec,
    compute_views,
    gaussian_smooth,
    map_image_scores,
)
from reconad.serialize import atomic_dir, load_tensors, save_tensors, write_json
from reconad.training import TrainConfig, check_augment, plan_steps, train

MODEL_FORMAT = "reconad-model/1"
#: images whose longer side exceeds this are trained at the method's ``working_side``
#: unless an image size is given
LARGE_SIDE = 512


@dataclasses.dataclass
class Scored:
    """What one scoring pass (``Detector._run``) gives: image scores, maps ``(N, H, W)``
    (None unless asked for, or from a method without maps), the first images' extras, the
    alternative scores asked for (``components``) and, where a fusion scores, its raw views
    (``scores`` is None while that fusion is not yet fitted)."""

    scores: np.ndarray | None
    maps: np.ndarray | None = None
    extras: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    components: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    views: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


class NotFittedError(RuntimeError):
    """The detector was used before ``fit`` (or ``load``)."""


def _explicit_keywords(init):
    """Wrap ``Detector.__init__`` so that a keyword it does not take is refused with a
    TypeError saying where it goes now (earlier versions took a method's hyper-parameters as
    keywords, and called ``score_views`` ``score``). The signature stays ``__init__``'s own:
    ``inspect.signature`` and scikit-learn's ``get_params`` read it through ``__wrapped__``."""
    names = set(inspect.signature(init).parameters) - {"self"}

    @functools.wraps(init)
    def checked(self, *args: Any, **kwargs: Any) -> None:
        unknown = {k: v for k, v in kwargs.items() if k not in names}
        if unknown:
            raise TypeError(_unknown_keywords_message(unknown))
        init(self, *args, **kwargs)

    return checked


def _unknown_keywords_message(unknown: dict[str, Any]) -> str:
    told = f"Detector() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}: "
    if "score" not in unknown:
        return f"{told}a method's hyper-parameters go in one dict: hparams={unknown!r}"
    return (
        f"{told}the score fusion option is now score_views={unknown['score']!r} (the CLI keeps "
        "--score); a method's hyper-parameters, DDR-ID's own 'score' among them, go in one "
        f"dict: hparams={unknown!r}"
    )


class Detector(BaseEstimator):
    """Fit a reconstruction-based anomaly detector on normal images, then score new ones.

    Args:
        method: a registered method name (see ``reconad.list_methods()``).
        preset: the method's preset (e.g. ``"cpu"`` or ``"paper"``); None = its default.
        image_size: model input ``(h, w)`` or one int; None = the training images' size,
            rounded up to what the architecture needs.
        val_fraction: fraction of the training images held out for calibration.
        target_fpr: false-positive rate on held-out normals that sets ``threshold_``.
        seed: one seed for data order, initialisation and random erasers.
        accelerator, devices, strategy, precision: passed to Lightning Fabric.
        progress: show progress bars.
        epochs_scale: multiply the method's epochs (quick runs and tests).
        checkpoint_dir: write a checkpoint each epoch there and resume from it.
        score_batch_size: images per batch when scoring.
        score_views: which views of an image the score is made of: ``native`` (the method's
            own score) or ``multiview`` (pixel MSE, 1 - SSIM and feature dissimilarity of its
            reconstruction, standardised and summed; see ``reconad.scoring``). The CLI's
            ``--score``; ``config.json`` keeps it under ``scoring.score``. (Named so that it
            neither shadows scikit-learn's ``score`` method name nor a method's own ``score``
            hyper-parameter, such as DDR-ID's.)
        difficulty: ``none``, ``entropy``, ``bpp`` or ``gradient``: normalise the score by
            how hard the image is to reconstruct.
        difficulty_mode: ``divide`` or ``subtract`` (slope fitted on held-out normals).
        normalize: ``none`` or ``image``: per-image intensity normalisation (each image's
            mean and standard deviation set to fixed values), for parts photographed under
            varying lighting; applied alike in training, calibration and scoring.
        image_score: for map methods, how an image's score is read: ``native`` (the
            method's own), ``map_max`` (maximum of the mean-filtered map), ``map_topk``
            (mean of the top 1% pixels), or ``auto``: the one that best tells the held-out
            normals from the same images with synthetic defects (``reconad.score_choice``;
            no test image is involved).
        patch: a tile side P smaller than the working size (``image_size``): the network is
            built for P x P tiles, trains on tiles that cover each image, and scores whole
            images by overlapping tiles, maps stitched back at the working size (see
            ``reconad.tiling``); None = the whole image at once.
        map_smoothing: the standard deviation, in pixels at the working size, of a Gaussian
            filter applied to every anomaly map the detector returns (pixel metrics, heat
            maps; image scores are unchanged); 0 = none, or ``auto``: the width among
            ``reconad.score_choice.SIGMAS`` whose maps best find synthetic defects pasted
            into the held-out normals (pixel AUROC; no test image is involved).
        keep_aspect: keep each image's aspect ratio: shrink it into the working size and
            fill the rest by mirroring its own pixels, instead of squashing it (see
            ``reconad.aspect``); maps come back in the image's own frame either way. For
            sets whose images differ in shape (Magnetic-Tile).
        augment: training transforms drawn per image, from ``hflip``, ``vflip``, ``rot90``
            (a sequence, or one comma-separated string); only for categories whose normal
            images may appear flipped or turned.
        logger: record each optimiser step's losses and learning rates with Lightning
            Fabric's loggers: ``csv``, ``tensorboard`` (needs ``pip install
            "reconad[tensorboard]"``) or both (``"csv,tensorboard"`` or a sequence);
            :meth:`save` puts the log in the model folder's ``logs/`` (see
            ``reconad.runlog``; ``read_run_log`` reads the CSV). None = no log.
        hparams: the method's hyper-parameters (see its ``Config``) as a dict, e.g.
            ``{"epochs": 30}``, over the preset's; None = the preset as it is. (A keyword the
            constructor does not take raises a TypeError pointing here.)
    """

    @_explicit_keywords
    def __init__(
        self,
        method: str = "ae",
        *,
        preset: str | None = None,
        image_size: int | tuple[int, int] | None = None,
        val_fraction: float = 0.1,
        target_fpr: float = 0.05,
        seed: int = 0,
        accelerator: str = "cpu",
        devices: int | str = 1,
        strategy: str = "auto",
        precision: str = "32-true",
        progress: bool = True,
        epochs_scale: float = 1.0,
        checkpoint_dir: str | Path | None = None,
        score_batch_size: int = 256,
        score_views: str = "native",
        difficulty: str = "none",
        difficulty_mode: str = "divide",
        normalize: str = "none",
        image_score: str = "native",
        map_smoothing: float | str = 0.0,
        patch: int | None = None,
        keep_aspect: bool = False,
        augment: str | tuple[str, ...] = (),
        logger: str | tuple[str, ...] | None = None,
        hparams: dict[str, Any] | None = None,
    ) -> None:
        self.method = method
        self.preset = preset
        self.image_size = image_size
        self.val_fraction = val_fraction
        self.target_fpr = target_fpr
        self.seed = seed
        self.accelerator = accelerator
        self.devices = devices
        self.strategy = strategy
        self.precision = precision
        self.progress = progress
        self.epochs_scale = epochs_scale
        self.checkpoint_dir = checkpoint_dir
        self.score_batch_size = score_batch_size
        self.score_views = score_views
        self.difficulty = difficulty
        self.difficulty_mode = difficulty_mode
        self.normalize = normalize
        self.image_score = image_score
        self.map_smoothing = map_smoothing
        self.patch = patch
        self.keep_aspect = keep_aspect
        self.augment = augment
        self.logger = logger
        self.hparams = hparams  # as given: clone() checks each parameter is stored unchanged

    # ---- fitting ------------------------------------------------------------------------
    def fit(self, X: ImageInput, y: Any = None, *, validation: ImageInput | None = None):
        """Train on normal images ``X``; calibrate the threshold on held-out normals.

        Args:
            X: normal training images (array, tensor, ImageSet, files or a folder).
            y: ignored (present for scikit-learn compatibility).
            validation: held-out normal images; None = hold out ``val_fraction`` of X.

        Returns:
            self
        """
        cls = get_method(self.method)
        config = cls.make_config(self.preset, **(self.hparams or {}))
        self.loggers_ = parse_loggers(self.logger)  # before any data is read
        spec = ScoringSpec(self.score_views, self.difficulty, self.difficulty_mode)
        spec.check(cls)
        if self.normalize not in NORMALIZE_MODES:
            raise ValueError(f"normalize={self.normalize!r}: choose from {list(NORMALIZE_MODES)}")
        if not isinstance(self.keep_aspect, bool):
            raise ValueError(f"keep_aspect={self.keep_aspect!r}: True or False")
        fusion = spec.fusion()
        no_held_out = validation is None and not self.val_fraction > 0
        if fusion is not None and no_held_out:
            raise ValueError(
                f"score_views={self.score_views!r} with difficulty={self.difficulty!r} is fitted "
                "on held-out normal images: set val_fraction > 0 or pass validation="
            )
        if cls.needs_held_out(config) and no_held_out:
            raise ValueError(
                f"{self.method}'s score is standardised on held-out normal images: set "
                "val_fraction > 0 or pass validation="
            )
        self._check_image_score(cls, fusion)
        self._check_map_smoothing(cls)
        size = self._requested_size()
        data = to_imageset(X, size=size).unlabelled()  # the label fence: no truth past here
        if size is None:
            size = self._native_or_working_size(cls, data.size)
        net_size = self._check_patch(cls, size, fusion)
        self.augment_ = check_augment(_names(self.augment), net_size)
        if validation is None and self.val_fraction > 0:
            data, val = holdout_split(data, self.val_fraction, self.seed)
            if not len(val):
                raise ValueError(
                    f"{len(data)} normal image(s) are too few to hold any out for the "
                    "threshold (at least 2 are needed, 20 or more give a usable one); pass "
                    "val_fraction=0 (--val-fraction 0) to train without a threshold"
                )
        elif validation is not None:
            val = to_imageset(validation, size=size).unlabelled()
        else:
            val = None
        torch.manual_seed(self.seed)  # the seed also fixes the initial weights
        self.method_: Method = cls(config, data.channels, net_size)
        self.input_shape_ = (data.channels, *net_size)
        self.working_size_ = tuple(size)
        self.patch_ = self.patch
        images = normalize_intensity(resize_uint8(data.images, size), self.normalize)
        if self.keep_aspect:
            images = letterbox(images, data.orig_sizes)
        if self.patch_:  # tiles that cover each image (stride = tile side)
            images = tiling.cut(torch.from_numpy(images), self.patch_, self.patch_).numpy()
        self._warn_if_short(cls, config, data.channels, net_size, len(images))
        result = train(self.method_, images, self._train_config())
        self.history_ = result.history
        self.run_log_ = result.logs
        self.steps_ = result.steps
        self.images_seen_ = result.images_seen
        self.fit_seconds_ = result.seconds
        self.is_main_ = result.is_main
        self.n_train_ = len(data)
        self.threshold_ = float("nan")
        self.val_scores_ = np.array([])
        self.scoring_ = None
        val_images = None
        if val is not None and len(val):
            val_images = self._prepare(val)
            with torch.no_grad():
                normals = torch.from_numpy(val_images).to(self.method_.device)
                if self.patch_:  # the method sees tiles, in scoring as in training
                    normals = tiling.cut(normals, self.patch_, self._tile_stride)
                self.method_.calibrate(normals.float() / 255.0)
            if fusion is not None:  # fitted on the held-out normals only
                self.scoring_ = fusion.fit(self._run(val_images, fusion=fusion).views)
        # held-out normals and synthetic defects only, before the threshold is set on them
        self._choose_image_score(val_images, fused=fusion is not None)
        self._choose_map_sigma(val_images)
        if val_images is not None:
            self.val_scores_ = self._run(val_images).scores
            self.threshold_ = threshold_at_fpr(self.val_scores_, self.target_fpr)
        return self

    def _check_patch(self, cls, size: tuple[int, int], fusion) -> tuple[int, int]:
        """The network's input size: ``size``, or ``(patch, patch)`` after checking it."""
        if self.patch is None:
            return size
        p = self.patch
        if not isinstance(p, int) or isinstance(p, bool) or p < 1:
            raise ValueError(f"patch={p!r}: a tile side in pixels (an int >= 1)")
        ok = round_up(p, cls.size_multiple, cls.min_size)
        if ok != p:
            raise ValueError(
                f"patch={p}: {self.method} needs a multiple of {cls.size_multiple} of at least "
                f"{cls.min_size} (e.g. {ok})"
            )
        if p > min(size):
            raise ValueError(
                f"patch={p} exceeds the working size {size[0]}x{size[1]}: choose a smaller "
                "patch or a larger image_size"
            )
        if fusion is not None:
            raise ValueError(
                "patch applies to the native score (score_views='native', no difficulty)"
            )
        return (p, p)

    @property
    def _tile_stride(self) -> int:
        """Scoring tiles overlap by half a tile, so every pixel is seen away from an edge."""
        return max(1, self.patch_ // 2)

    @property
    def read_size_(self) -> tuple[int, int]:
        """The size images are read and resized to before scoring: the working size (larger
        than the network's input when it scores by tiles)."""
        self._check_fitted()
        return tuple(getattr(self, "working_size_", None) or self.input_shape_[1:])

    def _score(self, x: torch.Tensor, fmt: torch.memory_format) -> Any:
        """``method_.score`` of a batch, or, with tiles, of its tiles put back together."""
        patch = getattr(self, "patch_", None)
        if not patch:
            return self.method_.score(x)
        n, size, stride = len(x), tuple(x.shape[-2:]), self._tile_stride
        tiles = tiling.cut(x, patch, stride)
        out = cat_outputs(
            [
                self.method_.score(chunk.contiguous(memory_format=fmt))
                for chunk in tiles.split(self.score_batch_size)
            ]
        )
        amap = out.anomaly_map
        return ScoreOutput(
            image_score=tiling.per_image_max(out.image_score, n),
            anomaly_map=None if amap is None else tiling.stitch(amap, n, size, stride),
            extras={k: tiling.stitch(v, n, size, stride) for k, v in out.extras.items()},
            components={k: tiling.per_image_max(v, n) for k, v in out.components.items()},
        )

    def _check_image_score(self, cls, fusion) -> None:
        if self.image_score not in IMAGE_SCORES:
            raise ValueError(f"image_score={self.image_score!r}: choose from {list(IMAGE_SCORES)}")
        if self.image_score in ("native", "auto"):
            return  # auto: native for a method without maps or with a fused score
        if not cls.produces_maps:
            raise ValueError(
                f"image_score={self.image_score!r} reads the anomaly map; {self.method} "
                "produces none: use image_score='native'"
            )
        if fusion is not None:
            raise ValueError(
                f"image_score={self.image_score!r} applies to the native score; score_views="
                f"{self.score_views!r} with difficulty={self.difficulty!r} has its own"
            )

    def _check_map_smoothing(self, cls) -> None:
        ms = self.map_smoothing
        number = isinstance(ms, (int, float)) and not isinstance(ms, bool)
        if not (ms == "auto" or (number and np.isfinite(ms) and ms >= 0)):
            raise ValueError(
                f"map_smoothing={ms!r}: a Gaussian width in pixels (a number >= 0) or 'auto'"
            )
        if ms != 0 and not cls.produces_maps:
            raise ValueError(f"map_smoothing applies to anomaly maps; {self.method} produces none")

    def _choose_map_sigma(self, val_images: np.ndarray | None) -> None:
        """``map_smoothing='auto'``: the width whose maps best find synthetic defects pasted
        into the held-out normals (``reconad.score_choice.choose_sigma``); else as given."""
        auto = self.map_smoothing == "auto"
        self.map_sigma_ = 0.0 if auto else float(self.map_smoothing)
        self.map_sigma_auroc_: dict[float, float] = {}
        self.map_sigma_strength_: float | None = None
        if not auto or not _enough_held_out("map_smoothing", val_images, "maps stay unsmoothed"):
            return
        choice = self._map_sigma_choice(val_images)
        self.map_sigma_, self.map_sigma_auroc_, self.map_sigma_strength_ = choice

    def map_sigma_choice(self, validation: ImageInput) -> SigmaChoice:
        """What ``map_smoothing='auto'`` would choose on ``validation`` (held-out normal
        images): the width, each width's pixel AUROC on synthetic defects, and their
        strength; the detector is left unchanged.

        Raises:
            ValueError: for a method without maps, or too few images to choose by.
        """
        return self._map_sigma_choice(self._map_method_images(validation, " to smooth"))

    def _map_sigma_choice(self, images: np.ndarray) -> SigmaChoice:
        return choose_sigma(lambda x: self._run(x, maps=True, smooth=False).maps, images, self.seed)

    def _choose_image_score(self, val_images: np.ndarray | None, fused: bool) -> None:
        """``image_score='auto'``: keep the candidate that best tells the held-out normals
        from the same images with synthetic defects; native where there is nothing to
        choose (no maps, a fused score) or too few held-out images to choose by."""
        self.image_score_ = "native" if self.image_score == "auto" else self.image_score
        self.image_score_auroc_: dict[str, float] = {}
        self.image_score_strength_: float | None = None
        if self.image_score != "auto" or fused or not type(self.method_).produces_maps:
            return
        if not _enough_held_out("image_score", val_images, "keeping the method's native score"):
            return
        choice = self._image_score_choice(val_images)
        self.image_score_, self.image_score_auroc_, self.image_score_strength_ = choice

    def image_score_choice(self, validation: ImageInput) -> Choice:
        """What ``image_score='auto'`` would choose on ``validation`` (held-out normal
        images), each candidate's AUROC against the same images with synthetic defects, and
        the defects' strength (``reconad.score_choice``); the detector is left unchanged.

        Raises:
            ValueError: for a method without maps, or too few images to choose by.
        """
        images = self._map_method_images(validation, ": its only image score is native")
        return self._image_score_choice(images)

    def _map_method_images(self, validation: ImageInput, why: str) -> np.ndarray:
        """``validation`` prepared for a choice that reads maps; refused without them."""
        self._check_fitted()
        if not type(self.method_).produces_maps:
            raise ValueError(f"{self.method} produces no maps{why}")
        return self._prepare(self._as_set(validation))

    def _image_score_choice(self, images: np.ndarray) -> Choice:
        return choose_image_score(self.image_scores, images, self.seed)

    def image_scores(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Every image score a map method offers for uint8 model-size images ``(N, C, H, W)``:
        ``native``, ``map_max`` and ``map_topk`` (what ``image_score='auto'`` chooses from)."""
        out = self._run(images, components=("map",), fusion=None)
        comps = out.components
        return {"native": out.scores, **{k: comps[k] for k in CANDIDATES if k in comps}}

    def _warn_if_short(self, cls, config, channels: int, size, n: int) -> None:
        """Warn when this run takes fewer optimiser steps than its preset was chosen with
        (an ``epochs`` override or ``epochs_scale`` below 1): the model may be untrained."""
        if not self.hparams and self.epochs_scale >= 1:
            return  # the preset itself
        planned = plan_steps(self.method_, n, self.epochs_scale, self._step_floor)
        if not planned:
            return
        with torch.random.fork_rng():  # building the preset's network must not move the RNG
            preset = cls(cls.make_config(self.preset), channels, size)
        wanted = plan_steps(preset, n)
        if planned < wanted:
            warnings.warn(
                f"{self.method}: this run takes {planned} optimiser steps on {n} images, fewer "
                f"than the {wanted} its preset was chosen with; the model may be undertrained",
                UserWarning,
                stacklevel=3,
            )

    def _native_or_working_size(self, cls, hw: tuple[int, int]) -> tuple[int, int]:
        """The images' own size (rounded up to what the network needs), unless they are
        larger than ``LARGE_SIDE``: then the method's working resolution, aspect ratio kept,
        with a warning, instead of an hours-long full-resolution run nobody asked for."""
        h, w = hw
        large = max(h, w) > LARGE_SIDE
        scale = cls.working_side / max(h, w) if large else 1
        h2, w2 = (round_up(max(1, round(v * scale)), cls.size_multiple, cls.min_size) for v in hw)
        if large:
            warnings.warn(
                f"{self.method}: images are {h}x{w}; training at {h2}x{w2}, the method's working "
                "resolution (pass image_size= / --image-size to choose another)",
                UserWarning,
                stacklevel=3,
            )
        return h2, w2

    @property
    def stage_seconds_(self) -> dict[str, float]:
        """Wall seconds of each training stage, summed over its epochs (from the history)."""
        out: dict[str, float] = {}
        for h in getattr(self, "history_", []):
            out[h["stage"]] = out.get(h["stage"], 0.0) + h["seconds"]
        return out

    def _requested_size(self) -> tuple[int, int] | None:
        if self.image_size is None:
            return None
        if isinstance(self.image_size, int):
            return (self.image_size, self.image_size)
        return (int(self.image_size[0]), int(self.image_size[1]))

    def _train_config(self) -> TrainConfig:
        return TrainConfig(
            seed=self.seed,
            accelerator=self.accelerator,
            devices=self.devices,
            strategy=self.strategy,
            precision=self.precision,
            checkpoint_dir=Path(self.checkpoint_dir) if self.checkpoint_dir else None,
            progress=self.progress,
            epochs_scale=self.epochs_scale,
            step_floor=self._step_floor,
            augment=getattr(self, "augment_", ()),
            loggers=getattr(self, "loggers_", ()),
        )

    @property
    def _step_floor(self) -> bool:
        """Epochs the caller set are taken as epochs; a preset's epochs are a step count."""
        return not any("epochs" in k for k in self.hparams or {})

    # ---- scoring ------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "method_"):
            raise NotFittedError("this Detector is not fitted yet: call fit() or Detector.load()")

    def _prepare(self, data: ImageSet) -> np.ndarray:
        c = self.input_shape_[0]
        h, w = self.read_size_
        if data.channels != c:
            where = f" (first file: {data.paths[0]})" if data.paths else ""
            raise DataError(
                f"the model expects {c}-channel images; got {data.channels}-channel{where}"
            )
        images = normalize_intensity(resize_uint8(data.images, (h, w)), self.normalize)
        return letterbox(images, data.orig_sizes) if self.keep_aspect else images

    def _unbox(self, arrays: np.ndarray | None, data: ImageSet) -> np.ndarray | None:
        """Maps or intermediate images of letterboxed inputs back in the squashed frame
        (``keep_aspect``), which callers resize to each image's size; else unchanged."""
        if arrays is None or not self.keep_aspect:
            return arrays
        return unletterbox(arrays, data.orig_sizes)

    def _as_set(self, X: ImageInput) -> ImageSet:
        self._check_fitted()
        return to_imageset(X, size=self.read_size_).unlabelled()  # the label fence

    def _run(
        self,
        images: np.ndarray,
        *,
        maps: bool = False,
        extras: int = 0,
        components: tuple[str, ...] = (),
        fusion: Any = "own",
        smooth: bool = True,
    ) -> Scored:
        """One scoring pass over uint8 images, in batches; what to keep is asked for.

        Args:
            maps: keep each image's map (``Scored.maps``).
            extras: keep the first ``extras`` images' intermediate images.
            components: alternative image scores to keep: ``"method"`` (the method's own,
                e.g. DDR-ID's latent and image scores), ``"map"`` (read off the map:
                ``map_max``, ``map_topk``).
            fusion: whose score ``Scored.scores`` is: ``"own"``, the detector's (its fitted
                fusion, else its image score); None, the method's native score; a
                :class:`ScoreFusion`: its score once fitted, and its raw views
                (``Scored.views``; ``scores`` is None until it is fitted).
            smooth: apply the detector's map smoothing to the kept maps.
        """
        self.method_.eval()
        device = self.method_.device  # the training accelerator: score where the model is
        read = None  # the detector's image score read off the map, instead of the native one
        if isinstance(fusion, str):  # "own"
            fusion = getattr(self, "scoring_", None)
            if fusion is None and getattr(self, "image_score_", "native") != "native":
                read = self.image_score_
        sigma = getattr(self, "map_sigma_", 0.0)
        own_comps = "method" in components and self.method_.has_components
        map_comps = "map" in components and self.method_.produces_maps
        scores, amaps, kept, raw, comps = [], [], {}, {}, {}
        # channels-last where the method trains that way (on 2 CPU threads ARNet scores
        # 243 -> 430 gray images/s); the model is put back in the usual layout afterwards
        with torch.no_grad(), self.method_.working_layout() as fmt:
            for i in range(0, len(images), self.score_batch_size):
                x = torch.from_numpy(images[i : i + self.score_batch_size]).to(device)
                x = (x.float() / 255.0).contiguous(memory_format=fmt)
                out = None  # the method's forward, skipped when only views are needed
                if (
                    fusion is None or maps or own_comps or map_comps or i < extras
                    or "native" in fusion.views
                ):  # fmt: skip
                    out = self._score(x, fmt)
                if fusion is not None:
                    native = None if out is None else out.image_score
                    for k, t in compute_views(
                        self.method_, x, fusion.views, fusion.difficulty, native=native
                    ).items():
                        raw.setdefault(k, []).append(t.numpy())
                else:  # the image score: the method's own, or read off the map
                    got = map_image_scores(out.anomaly_map)[read] if read else out.image_score
                    scores.append(self._finite(got.detach().float().cpu().numpy(), i))
                if maps and out.anomaly_map is not None:
                    amap = out.anomaly_map
                    if smooth and sigma:
                        amap = gaussian_smooth(amap, sigma)
                    amaps.append(amap[:, 0].detach().float().cpu().numpy())
                if i < extras:
                    for k, v in out.extras.items():
                        kept.setdefault(k, []).append(v[: extras - i].detach().float().cpu())
                more = dict(out.components) if own_comps else {}
                if map_comps and out.anomaly_map is not None:
                    more.update(map_image_scores(out.anomaly_map))
                for k, v in more.items():
                    comps.setdefault(k, []).append(v.detach().float().cpu().numpy())
        raw = {k: np.concatenate(v) for k, v in raw.items()}
        if fusion is not None:
            fitted = hasattr(fusion, "stats_")
            scores = [self._finite(fusion.transform(raw), 0)] if fitted else None
        return Scored(
            scores=None if scores is None else np.concatenate(scores),
            maps=np.concatenate(amaps) if amaps else None,
            extras={k: torch.cat(v).numpy() for k, v in kept.items()},
            components={k: np.concatenate(v) for k, v in comps.items()},
            views=raw,
        )

    def _finite(self, s: np.ndarray, start: int) -> np.ndarray:
        if not np.isfinite(s).all():
            raise FloatingPointError(
                f"method {self.method!r} produced {int((~np.isfinite(s)).sum())} "
                f"non-finite score(s) in images {start}-{start + len(s) - 1}"
            )
        return s

    def score_samples(self, X: ImageInput) -> np.ndarray:
        """Image anomaly scores, ``(N,)``; higher = more anomalous."""
        return self._run(self._prepare(self._as_set(X))).scores

    def anomaly_maps(
        self, X: ImageInput, original_size: bool = False
    ) -> np.ndarray | list[np.ndarray]:
        """Pixel anomaly maps: ``(N, H, W)`` at the model's input size, or, with
        ``original_size``, a list with each map resized back to its image's own size.

        Raises:
            ValueError: if the method produces no maps (e.g. ``iforest``).
        """
        data = self._as_set(X)
        maps = self._unbox(self._run(self._prepare(data), maps=True).maps, data)
        if maps is None:
            raise ValueError(f"method {self.method!r} produces image scores only, no maps")
        return resize_maps(maps, data.orig_sizes) if original_size else maps

    def predict(self, X: ImageInput, threshold: float | None = None) -> np.ndarray:
        """1 = anomalous, 0 = normal, at ``threshold`` (default: the calibrated one)."""
        t = self.threshold_ if threshold is None else threshold
        if np.isnan(t):
            raise NotFittedError(
                "no calibrated threshold (fit held out no normal images): pass threshold="
            )
        return (self.score_samples(X) > t).astype(np.int64)

    def p_values(self, X: ImageInput) -> np.ndarray:
        """Conformal p-values, ``(N,)``: the share (with one added) of held-out normal
        scores at least as high as each image's (``reconad.conformal``). Flagging
        ``p <= alpha`` keeps the false-alarm rate on normal images at most alpha.

        Raises:
            NotFittedError: if fit held out no normal images (or the model predates them).
        """
        return self.p_values_of(self.score_samples(X))

    def p_values_of(self, scores: np.ndarray) -> np.ndarray:
        """Conformal p-values of scores already computed by this detector."""
        self._check_fitted()
        if not len(getattr(self, "val_scores_", ())):
            raise NotFittedError(
                "no held-out normal scores to calibrate p-values: fit with val_fraction > 0 "
                "(a model saved before reconad kept them needs fitting again)"
            )
        return conformal.p_values(self.val_scores_, scores)

    def score_variant(
        self,
        X: ImageInput,
        validation: ImageInput,
        score_views: str = "native",
        difficulty: str = "none",
        difficulty_mode: str = "divide",
    ) -> np.ndarray:
        """Image scores of X under another scoring option, fitted on ``validation`` (held-out
        normal images) with the trained network as it is: an ablation of scoring options
        needs one training run, not one per option. The detector itself is left unchanged.

        Raises:
            ValueError: for unknown options, or multi-view scoring of a method that cannot
                reconstruct.
        """
        self._check_fitted()
        spec = ScoringSpec(score_views, difficulty, difficulty_mode)
        spec.check(type(self.method_))
        fusion = spec.fusion()
        images = self._prepare(self._as_set(X))
        if fusion is None:  # the method's own score, without this detector's fusion
            return self._run(images, fusion=None).scores
        fusion.fit(self._run(self._prepare(self._as_set(validation)), fusion=fusion).views)
        return self._run(images, fusion=fusion).scores  # now fitted: its score

    def explain(
        self, X: ImageInput, n: int | None = None, maps: bool = True, map_scores: bool = False
    ) -> dict[str, Any]:
        """Scores, maps (unless ``maps=False``), the method's alternative scores
        (``components``; with ``map_scores``, also the image scores read off the map,
        ``map_max`` and ``map_topk``) and its named intermediate images (extras) of ``n``
        images, in one scoring pass."""
        data = self._as_set(X)
        images = self._prepare(data)
        n = len(images) if n is None else n
        kinds = ("method", "map") if map_scores else ("method",)
        out = self._run(images, maps=maps, extras=n, components=kinds)
        return {
            "scores": out.scores,
            "maps": self._unbox(out.maps, data),
            "extras": {k: self._unbox(v, data) for k, v in out.extras.items()},
            "components": out.components,
            "orig_sizes": data.orig_sizes,
            "paths": data.paths,
        }

    @property
    def provenance_(self) -> str:
        """Where the fitted method's design comes from (e.g. "reconstructed from the
        published abstract"), as its model card and ``config.json`` say."""
        self._check_fitted()
        return type(self.method_).provenance

    # ---- persistence --------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``config.json`` and ``weights.safetensors`` to a folder, atomically (with the
        run log in ``logs/`` when there is one, so it travels with the model)."""
        self._check_fitted()
        path = Path(path)
        if not getattr(self, "is_main_", True):
            return path  # other DDP ranks: rank 0 writes
        config = self.to_config()
        logs = self._run_log_files()

        def write(tmp: Path) -> None:
            save_tensors(tmp / "weights.safetensors", self.method_.state_dict())
            write_json(tmp / "config.json", config)
            (tmp / "MODEL_CARD.md").write_text(model_card(config))
            write_log_files(logs, tmp / LOG_DIR)

        atomic_dir(path, write, is_ours=is_model_dir, what="reconad model")
        return path

    def save_run_log(self, folder: str | Path) -> Path | None:
        """Write the run log alone to ``folder`` (replacing an earlier log there), e.g. for a
        benchmark run that keeps no model; None when training logged nothing."""
        return save_log_files(self._run_log_files(), Path(folder))

    def _run_log_files(self) -> dict[str, bytes]:
        """The run log's files: from this fit, or from the folder this model was loaded from."""
        if getattr(self, "run_log_", None):
            return self.run_log_
        source = getattr(self, "_run_log_source", None)
        return log_files(source) if source is not None else {}

    def _map_sigma_config(self) -> dict[str, Any]:
        """The map smoothing's entries of ``config.json``'s scoring, when it was asked for."""
        if self.map_smoothing == 0:
            return {}
        return {
            "map_smoothing_option": self.map_smoothing,
            "map_sigma": self.map_sigma_,
            "map_sigma_auroc": {f"{k:g}": v for k, v in self.map_sigma_auroc_.items()},
            "map_sigma_defect_strength": self.map_sigma_strength_,
        }

    def to_config(self) -> dict[str, Any]:
        """What ``config.json`` holds: method, hyper-parameters, input, calibration, run."""
        cls = type(self.method_)
        c, h, w = self.input_shape_
        return {
            "format": MODEL_FORMAT,
            "method": self.method,
            "provenance": cls.provenance,
            "preset": self.preset or next(iter(cls.presets)),
            "hparams": dataclasses.asdict(self.method_.config),
            "input": {
                "channels": c,
                "height": h,
                "width": w,
                **({} if self.normalize == "none" else {"normalize": self.normalize}),
                **({"keep_aspect": True} if self.keep_aspect else {}),
                **(
                    {"patch": self.patch_, "working_size": list(self.working_size_)}
                    if getattr(self, "patch_", None)
                    else {}
                ),
            },
            "calibration": {
                "threshold": self.threshold_,
                "target_fpr": self.target_fpr,
                "n_val": int(len(self.val_scores_)),
                "val_score_mean": float(np.mean(self.val_scores_))
                if len(self.val_scores_)
                else None,
                "val_score_std": float(np.std(self.val_scores_)) if len(self.val_scores_) else None,
                # every held-out score: what conformal p-values are computed against
                "scores": [float(v) for v in self.val_scores_],
            },
            "scoring": {
                "score": self.score_views,  # the key models were always saved with
                "difficulty": self.difficulty,
                "difficulty_mode": self.difficulty_mode,
                "fusion": self.scoring_.to_dict() if getattr(self, "scoring_", None) else None,
                # the option asked for, the score it gave, and (auto) each candidate's AUROC
                # between held-out normals and the same images with synthetic defects
                "image_score_option": self.image_score,
                "image_score": getattr(self, "image_score_", "native"),
                "image_score_auroc": getattr(self, "image_score_auroc_", {}),
                "image_score_defect_strength": getattr(self, "image_score_strength_", None),
                **self._map_sigma_config(),
            },
            "training": {
                "seed": self.seed,
                "n_train": getattr(self, "n_train_", None),
                "seconds": round(getattr(self, "fit_seconds_", 0.0), 3),
                "steps": getattr(self, "steps_", None),
                "images_seen": getattr(self, "images_seen_", None),
                "epochs_scale": self.epochs_scale,
                **({"augment": list(self.augment_)} if getattr(self, "augment_", ()) else {}),
                **({"logger": list(self.loggers_)} if getattr(self, "loggers_", ()) else {}),
                "devices": self.devices,
                "strategy": self.strategy,
                "precision": self.precision,
                "history": getattr(self, "history_", []),
            },
            "versions": versions(),
        }

    @classmethod
    def load(cls, path: str | Path) -> Detector:
        """Load a model folder written by :meth:`save` (no pickle involved).

        Its parameters (``get_params``) are what ``config.json`` records: method, preset, the
        method's full hyper-parameters in ``hparams``, seed, ``target_fpr``,
        ``epochs_scale``, ``augment``, and the input and scoring options; the others keep
        their defaults. ``sklearn.base.clone`` of it is an unfitted detector that builds the
        same network.

        Every way a folder can be broken (bad JSON, a missing or changed field, an unknown
        hyper-parameter, unreadable, wrongly shaped or non-finite weights) is a ValueError
        whose message names the file and the problem.

        Raises:
            FileNotFoundError: if the folder or one of its files is missing.
            ValueError: if the folder is not a usable reconad model.
        """
        path = Path(path)
        cfg_path, weights = path / "config.json", path / "weights.safetensors"
        for p in (cfg_path, weights):
            if not p.exists():
                raise FileNotFoundError(f"{p} not found: is {path} a model folder from fit?")
        cfg = _read_config(cfg_path)
        try:
            tensors = load_tensors(weights)
        except Exception as e:  # safetensors' own error type is not a ValueError
            raise ValueError(f"{weights}: not a readable safetensors file ({e})") from None
        for name, t in tensors.items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise ValueError(f"{weights}: tensor {name!r} holds NaN or infinite values")
        try:
            det = cls._from_config(cfg, tensors)
            det._run_log_source = path / LOG_DIR if (path / LOG_DIR).is_dir() else None
            return det
        except KeyError as e:
            raise ValueError(f"{cfg_path}: missing or unknown entry {e}") from None
        except (TypeError, ValueError) as e:
            raise ValueError(f"{cfg_path} / {weights.name}: {e}") from None

    @classmethod
    def _from_config(cls, cfg: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Detector:
        """Build a fitted detector from a parsed config.json and its weights."""
        method_cls = get_method(cfg["method"])
        known = {f.name for f in dataclasses.fields(method_cls.Config)}
        unknown = sorted(set(cfg["hparams"]) - known)
        if unknown:
            raise ValueError(
                f"hyper-parameter(s) {unknown} unknown to method {cfg['method']!r} "
                f"(it has {sorted(known)}); was the model written by another version?"
            )
        hp = _restore_tuples(method_cls.Config, cfg["hparams"])
        calib, inp, tr = cfg["calibration"], cfg["input"], cfg["training"]
        sc = cfg.get("scoring") or {}
        det = cls(  # the options that shaped the model and its score, as they were saved
            cfg["method"],
            preset=cfg["preset"],
            # a config's own "preset" field (DRAEM's) is the preset parameter's to set
            hparams={k: v for k, v in hp.items() if k != "preset"},
            target_fpr=calib["target_fpr"],
            seed=tr["seed"],
            epochs_scale=tr.get("epochs_scale", 1.0),
            augment=tuple(tr.get("augment", ())),
            progress=False,
            normalize=inp.get("normalize", "none"),
            patch=inp.get("patch"),
            keep_aspect=inp.get("keep_aspect", False),
            # "score" is the key config.json has always used for what is now score_views
            score_views=sc.get("score", "native"),
            difficulty=sc.get("difficulty", "none"),
            difficulty_mode=sc.get("difficulty_mode", "divide"),
            image_score=sc.get("image_score_option", "native"),
            map_smoothing=sc.get("map_smoothing_option", 0.0),
        )
        det.method_ = method_cls(
            method_cls.Config(**hp), inp["channels"], (inp["height"], inp["width"])
        )
        det.method_.assign_state(tensors)
        det.method_.eval()
        det.input_shape_ = (inp["channels"], inp["height"], inp["width"])
        det.patch_ = det.patch
        det.working_size_ = tuple(inp["working_size"]) if det.patch_ else None
        det.threshold_ = float("nan") if calib["threshold"] is None else float(calib["threshold"])
        det.val_scores_ = np.asarray(calib.get("scores") or [], dtype=np.float64)
        if not np.isfinite(det.val_scores_).all():
            raise ValueError("calibration scores hold NaN or infinite values")
        det.history_ = tr.get("history", [])
        det.loggers_ = tuple(tr.get("logger", ()))
        det.scoring_ = ScoreFusion.from_dict(sc["fusion"]) if sc.get("fusion") else None
        det.image_score_ = sc.get("image_score", "native")
        if det.image_score_ not in CANDIDATES:
            raise ValueError(f"unknown image score {det.image_score_!r} (not in {CANDIDATES})")
        det.image_score_auroc_ = sc.get("image_score_auroc", {})
        det.image_score_strength_ = sc.get("image_score_defect_strength")
        det.map_sigma_ = float(sc.get("map_sigma", 0.0))
        det.map_sigma_auroc_ = {float(k): v for k, v in (sc.get("map_sigma_auroc") or {}).items()}
        det.map_sigma_strength_ = sc.get("map_sigma_defect_strength")
        det.config_ = cfg
        return det


def _read_config(cfg_path: Path) -> dict[str, Any]:
    """config.json as a dict of this format, or a ValueError naming the file and problem."""
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{cfg_path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{cfg_path}: unreadable ({e})") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{cfg_path}: expected a JSON object, found a {type(cfg).__name__}")
    if cfg.get("format") != MODEL_FORMAT:
        raise ValueError(f"{cfg_path}: not a {MODEL_FORMAT} model (format {cfg.get('format')})")
    return cfg


def is_model_dir(path: str | Path) -> bool:
    """True when ``path`` is a folder whose config.json says it is a reconad model (the only
    kind of folder :meth:`Detector.save` may replace)."""
    try:
        _read_config(Path(path) / "config.json")
    except (OSError, ValueError):
        return False
    return True


def model_card(config: dict[str, Any]) -> str:
    """A short human-readable card for a saved model, from its ``config.json``: what the
    method is and where its design comes from, what it was trained on, how it decides."""
    cal, tr, inp = config["calibration"], config["training"], config["input"]
    hp = ", ".join(f"{k}={v}" for k, v in config["hparams"].items())
    lines = [
        f"# reconad model card: {config['method']}",
        "",
        f"- Method: `{config['method']}`, preset `{config['preset']}`",
        f"- Provenance: {config['provenance']}",
        f"- Input: {input_line(inp)}",
        f"- Trained on {tr['n_train']} normal images, seed {tr['seed']}, "
        f"{tr['seconds']} s, epochs scale {tr['epochs_scale']}",
        f"- Scoring: {config['scoring']['score']}, difficulty {config['scoring']['difficulty']}, "
        f"image score {_image_score_line(config['scoring'])}{_map_sigma_line(config['scoring'])}",
        f"- Decision threshold {cal['threshold']}: {100 * cal['target_fpr']:g}% false positives "
        f"on {cal['n_val']} held-out normal images (no anomalous image was used)",
        f"- Hyper-parameters: {hp}",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in config['versions'].items())}",
        "",
        "Machine-readable: config.json (this card is written from it); weights: "
        "weights.safetensors.",
        "",
    ]
    if tr.get("logger"):  # the run log saved beside the model
        lines[-3:-3] = [f"- Run log ({', '.join(tr['logger'])}): {LOG_DIR}/, losses and "
                        "learning rates of every optimiser step"]  # fmt: skip
    return "\n".join(lines)


def input_line(inp: dict[str, Any]) -> str:
    """What the network sees, from ``config.json``'s ``input``: its shape, and the options
    that shaped it (tiles, intensity normalisation, aspect ratio kept)."""
    shape = f"{inp.get('channels')} x {inp.get('height')} x {inp.get('width')}"
    if inp.get("patch"):
        shape += f", trained on {inp['patch']} x {inp['patch']} tiles"
    if inp.get("normalize"):
        shape += f", intensity normalised per {inp['normalize']}"
    if inp.get("keep_aspect"):
        shape += ", aspect ratio kept (mirror-padded)"
    return shape


def _map_sigma_line(scoring: dict[str, Any]) -> str:
    sigma, aurocs = scoring.get("map_sigma", 0.0), scoring.get("map_sigma_auroc") or {}
    if not sigma and not aurocs:
        return ""
    line = f"; maps smoothed by a Gaussian of sigma {sigma:g} px"
    if aurocs:
        told = ", ".join(f"{float(k):g} px {100 * v:.1f}" for k, v in aurocs.items())
        line += f" (chosen automatically; pixel AUROC on synthetic defects: {told})"
    return line


def _image_score_line(scoring: dict[str, Any]) -> str:
    chosen = scoring.get("image_score", "native")
    aurocs = scoring.get("image_score_auroc") or {}
    if not aurocs:
        return chosen
    told = ", ".join(f"{k} {100 * v:.1f}" for k, v in aurocs.items())
    return f"{chosen} (chosen automatically; AUROC held-out normals vs synthetic defects: {told})"


def _names(value: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """``"hflip,vflip"`` or a sequence of names -> a tuple of stripped names."""
    if not value:
        return ()
    items = value.split(",") if isinstance(value, str) else value
    return tuple(str(v).strip() for v in items if str(v).strip())


def _restore_tuples(config_cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """JSON turns tuples into lists; give tuple-typed fields their tuples back."""
    out = dict(values)
    for f in dataclasses.fields(config_cls):
        if isinstance(out.get(f.name), list) and "tuple" in str(f.type):
            out[f.name] = tuple(out[f.name])
    return out


def _enough_held_out(option: str, val_images: np.ndarray | None, fallback: str) -> bool:
    """Whether there are enough held-out normals for ``option='auto'`` to choose by; warns
    with the ``fallback`` taken when there are not."""
    n = 0 if val_images is None else len(val_images)
    if n >= MIN_IMAGES:
        return True
    warnings.warn(
        f"{option}='auto': {n} held-out normal image(s), fewer than {MIN_IMAGES} to choose "
        f"by; {fallback}",
        UserWarning,
        stacklevel=4,
    )
    return False


def resize_maps(maps: np.ndarray, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    """Resize each ``(H, W)`` map bilinearly to its image's original ``(h, w)``."""
    out = []
    for m, (h, w) in zip(maps, sizes, strict=True):
        if m.shape == (h, w):
            out.append(m)
            continue
        t = torch.from_numpy(np.ascontiguousarray(m))[None, None]
        r = torch.nn.functional.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)
        out.append(r[0, 0].numpy())
    return out


def versions() -> dict[str, str]:
    """Versions of reconad and the libraries that shape results."""
    import sklearn

    return {
        "reconad": reconad.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "python": platform.python_version(),
    }
