"""The method contract and the registry every method is listed in.

A method is an ``nn.Module`` with a small contract, so that one training loop, one
``Detector`` facade, the CLI and one parametrised contract test treat every method alike:

* ``stages()`` declares what trains: for each stage its name, epochs, and optimiser groups
  (which parameters, learning rate, weight decay, step decay). Classical methods have no
  stages and implement ``fit_closed_form`` instead.
* ``training_step(batch, stage)`` returns a loss, or for multi-optimiser stages (GANs) a dict
  ``{group_name: loss}``; the loop back-propagates each loss into its own group only.
* ``score(x)`` returns a :class:`ScoreOutput`: image scores (higher = more anomalous), an
  anomaly map or None, and named intermediate images in ``extras``.
* ``calibrate(normals)`` sees held-out normal images after training (never test images) to
  fit score statistics such as standardisation; thresholds are set by the Detector.

Learned state that is not a parameter (centres, score statistics, classical-model arrays) is
kept in buffers, so ``state_dict`` holds all of it and safetensors can store it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn


@dataclass
class ScoreOutput:
    """What ``Method.score`` returns for a batch of B images.

    Attributes:
        image_score: ``(B,)`` float, higher means more anomalous.
        anomaly_map: ``(B, 1, H, W)`` float at the model's input size, or None.
        extras: named intermediate images, each ``(B, C, H, W)`` (restorations, residuals...),
            so that a report can show why an image was flagged.
        components: named alternative image scores, each ``(B,)`` (e.g. DDR-ID's latent and
            image scores), computed in the same pass so a benchmark reports them for free.
    """

    image_score: Tensor
    anomaly_map: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)
    components: dict[str, Tensor] = field(default_factory=dict)


def cat_outputs(parts: list[ScoreOutput]) -> ScoreOutput:
    """The outputs of consecutive chunks of a batch as one output (scoring in chunks bounds
    memory: DRAEM at 256 x 256; tiles of whole images in ``Detector``)."""
    first = parts[0]

    def cat(get) -> Tensor:
        return torch.cat([get(p) for p in parts])

    return ScoreOutput(
        image_score=cat(lambda p: p.image_score),
        anomaly_map=None if first.anomaly_map is None else cat(lambda p: p.anomaly_map),
        extras={k: cat(lambda p, k=k: p.extras[k]) for k in first.extras},
        components={k: cat(lambda p, k=k: p.components[k]) for k in first.components},
    )


@dataclass
class OptimGroup:
    """One optimiser: which modules it trains and how.

    ``milestones`` are fractions of the stage's epochs at which the learning rate is
    multiplied by ``gamma`` (step decay), e.g. ``(0.5, 0.75)``.
    """

    modules: list[nn.Module]
    lr: float
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1

    def parameters(self) -> list[nn.Parameter]:
        seen: dict[int, nn.Parameter] = {}
        for m in self.modules:
            for p in m.parameters():
                if p.requires_grad:
                    seen.setdefault(id(p), p)
        return list(seen.values())


@dataclass
class Stage:
    """A training stage: its length (optimiser steps, or epochs) and its optimiser groups.

    ``frozen_target``, when set, is a deterministic, frozen function of the input (e.g. the
    output of an earlier stage's network in eval mode). The loop computes it once for every
    training image when the stage starts, instead of once per image per epoch, and each batch
    then reaches ``training_step`` with its images' targets as the keyword ``target``.
    """

    name: str
    epochs: int
    groups: dict[str, OptimGroup]
    batch_size: int = 32
    frozen_target: Callable[[Tensor], Tensor] | None = None
    #: the stage's length in optimiser steps: it trains for at least this many, however
    #: few the images (None: ``epochs`` converted at the method's ``reference_train_size``)
    steps: int | None = None


class Method(nn.Module):
    """Base class of every registered method. Subclasses set ``name`` and ``Config``."""

    name: ClassVar[str] = ""
    Config: ClassVar[type]
    #: one-line description for ``reconad list`` and ``--help``
    summary: ClassVar[str] = ""
    #: provenance of the design: "paper", "reconstructed from the published abstract", ...
    provenance: ClassVar[str] = "paper"
    #: input height and width must be a multiple of this (pooling depth)
    size_multiple: ClassVar[int] = 1
    #: smallest input side the architecture supports
    min_size: ClassVar[int] = 1
    #: whether ``score`` returns a pixel map
    produces_maps: ClassVar[bool] = True
    #: whether ``score`` returns alternative scores in ``ScoreOutput.components`` (the
    #: detector then runs ``score`` for them even where a fitted fusion needs no native view)
    has_components: ClassVar[bool] = False
    #: whether the image score can be negative (a sum of z-scores, a decision function):
    #: then dividing it by a difficulty would reverse the order of images below zero
    signed_score: ClassVar[bool] = False
    #: train with 4-d weights in channels-last layout (same maths; on CPU, oneDNN runs the
    #: small-channel convolutions of some networks 25-35% faster that way; see the loop)
    channels_last: ClassVar[bool] = False
    #: longer side images larger than 512 px are brought to when no size is given (the
    #: cpu presets are sized for 128 x 128 on 2 cores)
    working_side: ClassVar[int] = 128
    #: training-set size a stage given in epochs was chosen on: such a stage trains for at
    #: least ``epochs * (reference_train_size // batch_size)`` optimiser steps, so that a
    #: 200-image folder trains as long as the 4,500-6,000-image one-class sets the presets
    #: were tuned on (on those sets the epoch count already gives at least that many)
    reference_train_size: ClassVar[int] = 4500
    #: named presets: overrides of ``Config`` defaults; the first key is the default preset
    presets: ClassVar[dict[str, dict[str, Any]]] = {"default": {}}
    #: None when ``score`` can be traced into an ONNX graph (``reconad export``); else the
    #: reason it cannot, which the export states when it refuses (and the contract tests
    #: check that it does refuse)
    export_refusal: ClassVar[str | None] = None

    def __init__(self, config: Any, channels: int, image_size: tuple[int, int]) -> None:
        super().__init__()
        self.config = config
        self.channels = int(channels)
        self.image_size = (int(image_size[0]), int(image_size[1]))

    @property
    def device(self) -> torch.device:
        """Where the method's tensors live (the training accelerator after ``fit``)."""
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    @property
    def memory_format(self) -> torch.memory_format:
        """The layout the method trains and scores in (see ``channels_last``)."""
        return torch.channels_last if self.channels_last else torch.contiguous_format

    @contextlib.contextmanager
    def working_layout(self) -> Iterator[torch.memory_format]:
        """Switch the 4-d weights to :attr:`memory_format` for a block (training, scoring)
        and always put them back in the usual layout, so that saving, ``state_dict`` and
        code outside see contiguous tensors even when the block raised."""
        fmt = self.memory_format
        if fmt is torch.contiguous_format:
            yield fmt
            return
        self.to(memory_format=fmt)
        try:
            yield fmt
        finally:
            self.to(memory_format=torch.contiguous_format)

    # ---- training -------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        """The training stages, in order. Empty for closed-form (classical) methods."""
        return []

    def training_step(
        self, batch: Tensor, stage: str, target: Tensor | None = None
    ) -> Tensor | dict[str, Tensor]:
        """Loss for one batch of images in [0, 1], ``(B, C, H, W)``. ``target``: the
        stage's frozen target of each image (``Stage.frozen_target``), for stages that
        declare one; other stages are called without it."""
        raise NotImplementedError

    def on_stage_start(self, stage: str, batches: Iterable[Tensor]) -> None:
        """Hook before a stage's first epoch (e.g. fix a centre from a pass over the data)."""

    def fit_closed_form(self, images: Tensor) -> None:
        """Fit a non-iterative model on all training images at once (classical methods)."""

    def calibrate(self, normals: Tensor) -> None:
        """Fit score statistics on held-out normal images (never test images)."""

    @classmethod
    def needs_held_out(cls, config: Any) -> bool:
        """Whether the score, under ``config``, depends on statistics that ``calibrate``
        fits on held-out normals (then fitting without any is refused, not run with
        uncalibrated defaults)."""
        return False

    # ---- scoring --------------------------------------------------------------------
    def score(self, x: Tensor) -> ScoreOutput:
        raise NotImplementedError

    def reconstruct(self, x: Tensor) -> Tensor | None:
        """The method's image-space reconstruction of x ((B,C,H,W) in [0,1]), or None.

        Used by multi-view scoring (pixel MSE, 1 - SSIM, feature dissimilarity).
        """
        return None

    def features(self, x: Tensor) -> Tensor | None:
        """(B, D) globally pooled features of an image from the method's own encoder, or
        None (multi-view scoring then falls back to a frozen network)."""
        return None

    def score_components(self, x: Tensor) -> dict[str, Tensor]:
        """Named alternative image scores ``(B,)`` that a benchmark reports beside the main
        one: the ``components`` of :meth:`score` (a method sets them there, in one pass)."""
        return self.score(x).components

    # ---- helpers --------------------------------------------------------------------
    @classmethod
    def make_config(cls, preset: str | None = None, **overrides: Any) -> Any:
        """The paper-default config, with a preset's and then the caller's overrides.

        Raises:
            ValueError: for an unknown preset or a field the config does not have.
        """
        preset = preset or next(iter(cls.presets))
        if preset not in cls.presets:
            raise ValueError(
                f"method {cls.name!r} has no preset {preset!r}; choose from {list(cls.presets)}"
            )
        names = {f.name for f in dataclasses.fields(cls.Config)}
        values = {**cls.presets[preset], **{k: v for k, v in overrides.items() if v is not None}}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(
                f"method {cls.name!r} has no hyper-parameter(s) {unknown}; it has {sorted(names)}"
            )
        defaults = cls.Config()
        for key, value in values.items():
            _check_type(cls.name, key, getattr(defaults, key), value)
        cfg = cls.Config(**values)
        cfg_dict = dataclasses.asdict(cfg)
        if "preset" in cfg_dict:
            cfg = dataclasses.replace(cfg, preset=preset)
        return cfg

    def assign_state(self, tensors: dict[str, Tensor]) -> None:
        """Load a flat state dict, letting buffers take the stored shape.

        Buffers such as classical-model arrays have data-dependent shapes, so they are
        replaced rather than copied into. Parameters must match exactly.

        Raises:
            KeyError: if a stored name is unknown, or a parameter is missing.
            ValueError: if a parameter's stored shape differs (``copy_`` would broadcast a
                (1,) tensor into any weight silently), naming the tensor and both shapes.
        """
        own = dict(self.named_parameters())
        bufs = dict(self.named_buffers())
        missing = sorted(set(own) - set(tensors))
        if missing:
            raise KeyError(f"weights file lacks parameters {missing[:5]}")
        for key, value in tensors.items():  # check everything before changing anything
            if key not in own and key not in bufs:
                raise KeyError(f"weights file has {key!r}, which method {self.name!r} lacks")
            if key in own and own[key].shape != value.shape:
                raise ValueError(
                    f"weights tensor {key!r} has shape {tuple(value.shape)}; method "
                    f"{self.name!r} needs {tuple(own[key].shape)}"
                )
        for key, value in tensors.items():
            if key in own:
                with torch.no_grad():
                    own[key].copy_(value)
            else:
                module_name, _, attr = key.rpartition(".")
                module = self.get_submodule(module_name) if module_name else self
                module._buffers[attr] = value.clone()


def _check_type(method: str, key: str, default: Any, value: Any) -> None:
    """Refuse a word where a number or a flag belongs (``lr="fast"``), before any training.

    Only that case: hyper-parameters whose default is a word may take numbers
    (Isolation Forest's ``max_samples`` is "auto" or a count), and a method checks the
    ranges of its own numbers.

    Raises:
        ValueError: naming the method, the hyper-parameter, the value and the type wanted.
    """
    if isinstance(default, (bool, int, float)) and isinstance(value, str):
        want = type(default).__name__
        raise ValueError(
            f"method {method!r}: hyper-parameter {key}={value!r} should be a {want} "
            f"(default {default!r})"
        )


_REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: list a method under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a name to be registered")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"a method named {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def get_method(name: str) -> type[Method]:
    """The method class registered as ``name``.

    Raises:
        KeyError: naming the registered methods, when ``name`` is unknown.
    """
    from reconad import methods as _  # noqa: F401  (import registers the built-in methods)

    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; registered: {sorted(_REGISTRY)}") from None


def list_methods() -> list[str]:
    """Names of all registered methods, sorted."""
    from reconad import methods as _  # noqa: F401

    return sorted(_REGISTRY)
