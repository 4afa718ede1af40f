"""The one training loop every method uses, on Lightning Fabric.

Fabric handles the device, precision and distributed data-parallel training (``devices=2,
strategy="ddp"`` runs on two CPU processes with gloo); the loop itself is ours: it walks the
method's declared stages, builds one Adam optimiser per group, applies step decay, shows a
progress bar, writes a checkpoint after every epoch and resumes from the last one.

Length: a stage is sized in optimiser steps (:func:`plan_stage`). It runs its epochs, or
more when those would take fewer steps than its floor (``Stage.steps``, or the epochs
converted at the size of the data set the preset was chosen on), so a folder of 200 images
trains as long as a 6,000-image class instead of leaving the network at its initial state.

Determinism: one seed sets initialisation (``seed_everything`` before the first stage), the
data order of every epoch (a generator seeded from seed, stage and epoch) and the method's
own randomness (the global torch RNG, whose state is checkpointed).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning_fabric import Fabric
from lightning_fabric.strategies import DDPStrategy
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from reconad.methods.base import Method, Stage
from reconad.runlog import LOG_DIR, RunLog, log_files, series_name
from reconad.serialize import (
    flatten_state,
    load_metadata,
    load_tensors,
    save_tensors,
    unflatten_state,
)


class TrainingError(RuntimeError):
    """Training cannot go on (for instance the loss became NaN)."""


@dataclass
class TrainConfig:
    """Run-time settings of the loop (the method's own hyper-parameters live in its config).

    Attributes:
        seed: controls initialisation, data order and the method's random erasers.
        accelerator, devices, strategy, precision: passed to Lightning Fabric.
        checkpoint_dir: where ``last.safetensors``/``last.json`` go each epoch; None = none.
        resume: continue from the checkpoint in ``checkpoint_dir`` when it matches this run.
        progress: show a rich progress bar.
        epochs_scale: multiply every stage's epochs and steps (tests and quick runs), at
            least 1 epoch.
        step_floor: give a stage stated in epochs its preset's length in optimiser steps
            (see :func:`plan_stage`). Off here, so the loop runs the epochs it is given; the
            ``Detector`` turns it on unless the caller chose the epochs explicitly.
        augment: label-preserving transforms drawn per image and batch: ``hflip``,
            ``vflip``, ``rot90`` (a multiple of 90 degrees; square inputs only). Safe only
            for categories whose normal images may appear so (a texture, not a transistor
            whose leads point one way); see :func:`augment_batch`.
        loggers: Fabric loggers recording each optimiser step's losses and learning rates
            (``csv``, ``tensorboard``; see :mod:`reconad.runlog`); () = none.
        log_dir: where the log is written while training; None = ``checkpoint_dir/logs``
            (so a resumed run continues it), or a temporary folder without a checkpoint.
            Either way :attr:`TrainResult.logs` returns its files.
    """

    seed: int = 0
    accelerator: str = "cpu"
    devices: int | str = 1
    strategy: str = "auto"
    precision: str = "32-true"
    checkpoint_dir: Path | None = None
    resume: bool = True
    progress: bool = True
    epochs_scale: float = 1.0
    num_workers: int = 0
    step_floor: bool = False
    augment: tuple[str, ...] = ()
    loggers: tuple[str, ...] = ()
    log_dir: Path | None = None


@dataclass
class TrainResult:
    """What the loop reports back (``logs``: the run log's files by relative path, on the
    main process, when ``TrainConfig.loggers`` asked for one)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: str | None = None
    is_main: bool = True
    logs: dict[str, bytes] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        """Optimiser steps taken, over all stages (including those before a resume)."""
        return sum(int(h.get("steps", 0)) for h in self.history)

    @property
    def images_seen(self) -> int:
        """Training images drawn, over all stages (an image counts once per draw)."""
        return sum(int(h.get("images", 0)) for h in self.history)


#: an epoch of a small training set is stretched to at least this many batches (the images
#: in fresh permutations), so a 200-image folder is not trained, checkpointed and logged one
#: batch at a time; sets of ``MIN_BATCHES_PER_EPOCH * batch_size`` images or more are unchanged
MIN_BATCHES_PER_EPOCH = 20


def stage_epochs(stage: Stage, scale: float) -> int:
    """The stage's epoch count alone (scaled, at least 1), before the step floor."""
    return max(1, int(round(stage.epochs * scale)))


@dataclass(frozen=True)
class StagePlan:
    """How long a stage trains on a given number of images.

    Attributes:
        batch_size: the batch actually used (at most the number of images).
        samples_per_epoch: images drawn per epoch (the set, or repeated permutations of it).
        batches: optimiser steps per epoch.
        epochs: epochs to run.
    """

    batch_size: int
    samples_per_epoch: int
    batches: int
    epochs: int

    @property
    def steps(self) -> int:
        return self.epochs * self.batches


def plan_stage(stage: Stage, n_images: int, scale: float = 1.0, reference: int = 0) -> StagePlan:
    """Size a stage in optimiser steps for ``n_images`` training images.

    The stage runs its epochs, or more when that would take fewer optimiser steps than its
    floor: ``stage.steps`` when set, else ``stage.epochs * (reference // batch)``. Both are
    multiplied by ``scale``. With no floor (``reference=0`` and no ``stage.steps``) an
    epoch is one pass over the images, as the caller asked.
    """
    bs = max(1, min(stage.batch_size, n_images))
    sized_in_steps = stage.steps is not None or reference > 0
    samples = max(n_images, MIN_BATCHES_PER_EPOCH * bs) if sized_in_steps else n_images
    batches = samples // bs if samples > bs else 1  # drop_last when there is a full batch
    per_epoch = reference // max(1, stage.batch_size)  # at the preset's batch, not a clipped one
    floor = stage.steps if stage.steps is not None else stage.epochs * per_epoch
    min_steps = int(round(floor * scale))
    epochs = max(stage_epochs(stage, scale) if stage.steps is None else 1, -(-min_steps // batches))
    return StagePlan(bs, samples, batches, epochs)


def plan_steps(method: Method, n_images: int, scale: float = 1.0, floor: bool = True) -> int:
    """Total optimiser steps of all the method's stages on ``n_images`` images."""
    ref = method.reference_train_size if floor else 0
    return sum(plan_stage(s, n_images, scale, ref).steps for s in method.stages())


def _lr_factor(group_milestones: tuple[float, ...], gamma: float, epoch: int, epochs: int) -> float:
    passed = sum(1 for m in group_milestones if epoch >= int(round(m * epochs)))
    return gamma**passed


def _fingerprint(method: Method, images: np.ndarray, cfg: TrainConfig) -> str:
    """Identify a run so that a checkpoint is only resumed into the same run."""
    h = hashlib.sha256()
    h.update(method.name.encode())
    h.update(json.dumps(method.config.__dict__, sort_keys=True, default=str).encode())
    h.update(str((images.shape, cfg.seed, cfg.epochs_scale)).encode())
    h.update(images[:: max(1, len(images) // 64)].tobytes())
    if cfg.augment:  # only then, so earlier checkpoints keep their fingerprint
        h.update(str(cfg.augment).encode())
    return h.hexdigest()[:16]


def _make_fabric(cfg: TrainConfig) -> Fabric:
    strategy: Any = cfg.strategy
    if strategy in ("ddp", "ddp_spawn"):
        # Multi-stage methods freeze parts of the network, so some parameters get no grad.
        strategy = DDPStrategy(
            find_unused_parameters=True,
            start_method="spawn" if strategy == "ddp_spawn" else "popen",
        )
    return Fabric(
        accelerator=cfg.accelerator, devices=cfg.devices, strategy=strategy, precision=cfg.precision
    )


def train(
    method: Method,
    images: np.ndarray,
    cfg: TrainConfig,
    on_epoch_end: Callable[[str, int], None] | None = None,
) -> TrainResult:
    """Train ``method`` on uint8 images ``(N, C, H, W)`` through all its stages.

    ``on_epoch_end(stage, epoch)`` (1-based epoch) is called after each epoch's checkpoint,
    e.g. to log or to inspect the model; it must leave the model's weights alone.

    With ``cfg.loggers``, each optimiser step's losses and learning rates are logged (see
    :mod:`reconad.runlog`); the log is finalized however training ends.

    Returns:
        The per-epoch history (stage, epoch, mean loss, seconds), total wall time and the
        run log's files.

    Raises:
        TrainingError: if a loss is not finite, naming stage and epoch.
    """
    fabric = _make_fabric(cfg)
    fabric.launch()
    fabric.seed_everything(cfg.seed, verbose=False)
    result = TrainResult(is_main=fabric.is_global_zero)
    start = time.perf_counter()

    data = torch.from_numpy(np.ascontiguousarray(images))
    method.fit_closed_form(data.float() / 255.0)
    stages = method.stages()
    if not stages:
        result.seconds = time.perf_counter() - start
        return result

    log_dir, temporary = _log_dir(cfg) if fabric.is_global_zero else (None, False)
    try:
        # the method's layout before wrapping (DDP buckets see the final one); back to the
        # usual layout afterwards, also on an error, so scoring and saving see contiguous
        # weights
        with method.working_layout():
            _train_stages(method, stages, data, images, cfg, fabric, result, on_epoch_end, log_dir)
        if log_dir is not None and fabric.is_global_zero:
            result.logs = log_files(log_dir)
    finally:
        if temporary:
            shutil.rmtree(log_dir, ignore_errors=True)
    result.seconds = time.perf_counter() - start
    method.eval()
    return result


def _log_dir(cfg: TrainConfig) -> tuple[Path | None, bool]:
    """Where the run log goes while training, and whether that folder is temporary."""
    if not cfg.loggers:
        return None, False
    if cfg.log_dir is not None:
        return Path(cfg.log_dir), False
    if cfg.checkpoint_dir is not None:
        return Path(cfg.checkpoint_dir) / LOG_DIR, False
    return Path(tempfile.mkdtemp(prefix="reconad-log-")), True


def _train_stages(
    method, stages, data, images, cfg, fabric, result, on_epoch_end, log_dir=None
) -> None:
    """The stage and epoch loops of :func:`train`, resuming from a checkpoint if asked."""
    model = fabric.setup_module(method)
    model.mark_forward_method("training_step")
    ckpt = _Checkpoint(cfg.checkpoint_dir, _fingerprint(method, images, cfg), fabric)
    done = ckpt.load(method, cfg.resume) if cfg.resume else None
    if done is not None:
        result.history = done["history"]
        result.resumed_from = str(cfg.checkpoint_dir)
    start_stage, start_epoch = (done["stage"], done["epoch"] + 1) if done else (0, 0)
    runlog = None
    if log_dir is not None and fabric.is_global_zero:  # steps so far: the resumed ones
        runlog = RunLog(log_dir, cfg.loggers, start_step=TrainResult(history=result.history).steps)
    status = "failed"
    try:
        _stage_loop(
            method, stages, data, cfg, fabric, result, on_epoch_end, model, ckpt, done,
            start_stage, start_epoch, runlog,
        )  # fmt: skip
        status = "success"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if runlog is not None:
            runlog.finalize(status)


def _stage_loop(
    method, stages, data, cfg, fabric, result, on_epoch_end, model, ckpt, done, start_stage,
    start_epoch, runlog,
) -> None:  # fmt: skip
    with _progress(cfg.progress and fabric.is_global_zero) as bar:
        for si, stage in enumerate(stages):
            if si < start_stage:
                continue
            ref = method.reference_train_size if cfg.step_floor else 0
            plan = plan_stage(stage, len(data), cfg.epochs_scale, ref)
            epochs = plan.epochs
            first = start_epoch if si == start_stage else 0
            if first >= epochs:
                continue
            optimizers = {
                name: torch.optim.Adam(
                    g.parameters(), lr=g.lr, betas=g.betas, weight_decay=g.weight_decay
                )
                for name, g in stage.groups.items()
            }
            if done is not None and si == start_stage and done.get("optimizers"):
                for name, opt in optimizers.items():
                    opt.load_state_dict(done["optimizers"][name])
            wrapped = {n: fabric.setup_optimizers(o) for n, o in optimizers.items()}
            targets = _frozen_targets(stage, data)
            if targets is not None and cfg.augment:
                raise ValueError(
                    f"augment is not available for stage {stage.name!r}: its targets are "
                    "computed once from the untransformed images"
                )
            loader = _loader(data, plan, cfg, fabric, targets)
            if first == 0:
                method.on_stage_start(stage.name, _float_batches(loader))
            task = bar.add_task(stage.name, total=(epochs - first) * len(loader)) if bar else None
            for epoch in range(first, epochs):
                t0 = time.perf_counter()
                for name, g in stage.groups.items():
                    for pg in wrapped[name].param_groups:
                        pg["lr"] = g.lr * _lr_factor(g.milestones, g.gamma, epoch, epochs)
                loss_sum = _run_epoch(
                    model, stage, wrapped, loader, si, epoch, cfg.seed, fabric, bar, task, epochs,
                    cfg.augment, runlog,
                )  # fmt: skip
                mean_loss = loss_sum / max(1, len(loader))
                result.history.append(
                    {
                        "stage": stage.name,
                        "epoch": epoch + 1,
                        "loss": mean_loss,
                        "steps": len(loader),
                        "images": len(loader) * plan.batch_size,
                        "seconds": round(time.perf_counter() - t0, 3),
                    }
                )
                if runlog is not None:  # on disk before the checkpoint that counts its steps
                    runlog.flush()
                ckpt.save(method, si, epoch, optimizers, result.history)
                if on_epoch_end is not None:
                    on_epoch_end(stage.name, epoch + 1)
            if task is not None:
                bar.update(task, visible=False)


AUGMENTS = ("hflip", "vflip", "rot90")


def check_augment(augment: tuple[str, ...], size: tuple[int, int]) -> tuple[str, ...]:
    """Validated transform names (see :data:`AUGMENTS`).

    Raises:
        ValueError: an unknown name, or ``rot90`` on a non-square input.
    """
    bad = [a for a in augment if a not in AUGMENTS]
    if bad:
        raise ValueError(f"augment {bad}: choose from {list(AUGMENTS)}")
    if "rot90" in augment and size[0] != size[1]:
        raise ValueError(f"augment rot90 needs a square input; this one is {size[0]}x{size[1]}")
    return tuple(augment)


def augment_batch(x: torch.Tensor, augment: tuple[str, ...]) -> torch.Tensor:
    """Each image of a batch ``(B, C, H, W)`` flipped and/or turned at random (a fair coin
    per image and transform; a uniform quarter turn for ``rot90``), from the global RNG,
    which the checkpoint keeps, so a resumed run draws the same transforms."""
    n = len(x)

    def where(m: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.where(m.to(x.device).view(n, 1, 1, 1), a, b)

    if "hflip" in augment:
        x = where(torch.rand(n) < 0.5, x.flip(-1), x)
    if "vflip" in augment:
        x = where(torch.rand(n) < 0.5, x.flip(-2), x)
    if "rot90" in augment:
        k = torch.randint(0, 4, (n,))
        for r in (1, 2, 3):
            x = where(k == r, torch.rot90(x, r, dims=(-2, -1)), x)
    return x


def _run_epoch(
    model, stage, optimizers, loader, si, epoch, seed, fabric, bar, task, epochs, augment=(),
    runlog=None,
):  # fmt: skip
    model.train()
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch + 1000 * si)
    gen = getattr(loader, "_reconad_generator", None)
    if gen is not None:
        gen.manual_seed(seed * 1_000_003 + si * 10_007 + epoch)
    loss_sum = 0.0
    if runlog is not None:  # names once per epoch; the learning rates are set per epoch
        loss_keys = {n: series_name(stage.name, "loss", n) for n in stage.groups}
        lrs = {
            series_name(stage.name, "lr", n): float(o.param_groups[0]["lr"])
            for n, o in optimizers.items()
        }
    for batch in loader:
        x = batch[0].float().div_(255.0)
        if augment:
            x = augment_batch(x, augment)
        if len(batch) > 1:  # the stage's frozen targets, computed once at its start
            out = model.training_step(x, stage.name, target=batch[1])
        else:
            out = model.training_step(x, stage.name)
        losses = out if isinstance(out, dict) else {next(iter(stage.groups)): out}
        for opt in optimizers.values():
            opt.zero_grad(set_to_none=True)
        names = list(losses)
        total = 0.0
        values = {}
        for i, name in enumerate(names):
            loss = losses[name]
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"loss {name!r} became {loss.item()} in stage {stage.name!r}, epoch "
                    f"{epoch + 1}; try a lower learning rate"
                )
            params = stage.groups[name].parameters()
            fabric.backward(loss, inputs=params, retain_graph=i < len(names) - 1)
            values[name] = float(loss.detach())
            total += values[name]
        for name in names:
            optimizers[name].step()
        loss_sum += total
        if runlog is not None:
            runlog.log({**{loss_keys[n]: v for n, v in values.items()}, **lrs})
        if bar is not None:
            bar.update(
                task,
                advance=1,
                description=f"{stage.name} {epoch + 1}/{epochs} loss {total:.4g}",
            )
    return loss_sum


def _frozen_targets(stage: Stage, data: torch.Tensor, chunk: int = 64) -> torch.Tensor | None:
    """``stage.frozen_target`` of every training image, in chunks, without gradients."""
    if stage.frozen_target is None:
        return None
    with torch.no_grad():
        parts = [
            stage.frozen_target(data[i : i + chunk].float() / 255.0).float()
            for i in range(0, len(data), chunk)
        ]
    return torch.cat(parts).contiguous()


def _loader(
    data: torch.Tensor,
    plan: StagePlan,
    cfg: TrainConfig,
    fabric: Fabric,
    targets: torch.Tensor | None = None,
) -> DataLoader:
    gen = torch.Generator()
    bs = plan.batch_size
    tensors = (data,) if targets is None else (data, targets)
    dataset = TensorDataset(*tensors)
    # a small set's epoch is stretched over fresh permutations of it (see plan_stage); a
    # large set's is one plain shuffle, as before, so earlier runs reproduce exactly
    stretched = plan.samples_per_epoch > len(data)
    sampler = (
        RandomSampler(dataset, num_samples=plan.samples_per_epoch, generator=gen)
        if stretched
        else None
    )
    loader = DataLoader(
        dataset,
        batch_size=bs,
        shuffle=not stretched,
        sampler=sampler,
        generator=None if stretched else gen,
        # A last batch of 1 breaks BatchNorm; drop the remainder when there is a full batch.
        drop_last=plan.samples_per_epoch > bs,
        num_workers=cfg.num_workers,
    )
    loader = fabric.setup_dataloaders(loader)
    loader._reconad_generator = gen  # reseeded each epoch: resumable, deterministic order
    return loader


def _float_batches(loader: DataLoader):
    for batch in loader:
        yield batch[0].float() / 255.0


class _progress:
    """Progress on stderr (context manager yielding the bar or None): a rich bar on a
    terminal, plain periodic lines when stderr goes to a log file or a pipe."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = None

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.console import Console

        console = Console(stderr=True)
        if not console.is_terminal:
            self.bar = _LineProgress()
            return self.bar
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=False,
            console=console,
        )
        self.bar.__enter__()
        return self.bar

    def __exit__(self, *exc):
        if isinstance(self.bar, _LineProgress) or self.bar is None:
            return
        self.bar.__exit__(*exc)


class _LineProgress:
    """The subset of rich's Progress the loop uses, printing one line per ``every`` seconds
    (and at each stage's end): "stage 3/40 loss 0.01: step 120/1600, 35 s, ~7.2 min left"."""

    def __init__(self, every: float = 30.0) -> None:
        self.every = every
        self.tasks: dict[int, dict[str, Any]] = {}

    def add_task(self, description: str, total: int) -> int:
        tid = len(self.tasks)
        now = time.perf_counter()
        self.tasks[tid] = {"d": description, "n": 0, "total": total, "t0": now, "last": now}
        return tid

    def update(self, task: int, advance: int = 0, description: str | None = None, **_) -> None:
        t = self.tasks[task]
        t["n"] += advance
        t["d"] = description or t["d"]
        now = time.perf_counter()
        if now - t["last"] >= self.every or t["n"] == t["total"]:
            t["last"] = now
            spent = now - t["t0"]
            left = spent / max(t["n"], 1) * (t["total"] - t["n"])
            print(
                f"{t['d']}: step {t['n']}/{t['total']}, {spent:.0f} s, ~{left / 60:.1f} min left",
                file=sys.stderr,
                flush=True,
            )


def read_checkpoint_meta(folder: Path) -> dict[str, Any]:
    """The position and history stored in ``folder/last.safetensors``'s header."""
    return json.loads(load_metadata(Path(folder) / "last.safetensors")["reconad"])


class _Checkpoint:
    """``last.safetensors`` in a folder, rewritten atomically each epoch: weights, optimiser
    and RNG state as tensors, and the position (stage, epoch, history) in the same file's
    metadata, so a kill at any moment leaves the old checkpoint or the new one, never a mix
    of the two."""

    def __init__(self, folder: Path | None, fingerprint: str, fabric: Fabric) -> None:
        self.folder = Path(folder) if folder else None
        self.fingerprint = fingerprint
        self.fabric = fabric

    def save(self, method, stage_index, epoch, optimizers, history) -> None:
        if self.folder is None or not self.fabric.is_global_zero:
            return
        skeleton, tensors = flatten_state(
            {n: o.state_dict() for n, o in optimizers.items()}, "optim"
        )
        tensors.update({f"model.{k}": v for k, v in method.state_dict().items()})
        tensors["rng.torch"] = torch.get_rng_state()
        meta = {
            "fingerprint": self.fingerprint,
            "stage": stage_index,
            "epoch": epoch,
            "optimizers": skeleton,
            "history": history,
        }
        save_tensors(self.folder / "last.safetensors", tensors, {"reconad": json.dumps(meta)})

    def load(self, method, resume: bool) -> dict | None:
        if self.folder is None or not resume:
            return None
        weights = self.folder / "last.safetensors"
        if not weights.exists():
            return None
        try:
            meta = read_checkpoint_meta(self.folder)
            if meta.get("fingerprint") != self.fingerprint:
                return None  # a checkpoint of another run: start afresh, it gets overwritten
            tensors = load_tensors(weights)
            state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
            method.assign_state(state)  # checks every tensor before it changes one
            torch.set_rng_state(tensors["rng.torch"])
            meta["optimizers"] = unflatten_state(meta["optimizers"], tensors)
        except Exception as e:  # unreadable, truncated or foreign: start afresh, say so
            print(
                f"checkpoint {self.folder} is unreadable ({type(e).__name__}: {e}); "
                "training starts afresh and overwrites it",
                file=sys.stderr,
            )
            return None
        done = meta["history"][-1] if meta["history"] else {}
        print(
            f"resuming from checkpoint {self.folder}: stage {done.get('stage')!r}, after epoch "
            f"{done.get('epoch')} ({TrainResult(history=meta['history']).steps} steps)",
            file=sys.stderr,
        )
        return meta


__all__ = [
    "StagePlan",
    "read_checkpoint_meta",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "plan_stage",
    "plan_steps",
    "train",
]
