"""The shared training loop: determinism, checkpoint per epoch, resume, NaN guard, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from reconad import training
from reconad.methods import get_method
from reconad.training import TrainConfig, TrainingError, train


def _images(n: int = 96, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 1, 32, 32), dtype=np.uint8)


def _ae(epochs: int = 2, seed: int = 0, **kw):
    cls = get_method("ae")
    torch.manual_seed(seed)
    return cls(cls.make_config(epochs=epochs, batch_size=32, **kw), 1, (32, 32))


def _weights(m) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in m.state_dict().items()}


def _same(a, b) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_weights_other_seed_other_weights():
    imgs = _images()
    runs = []
    for seed in (0, 0, 1):
        m = _ae(seed=seed)
        train(m, imgs, TrainConfig(seed=seed, progress=False))
        runs.append(_weights(m))
    assert _same(runs[0], runs[1])
    assert not _same(runs[0], runs[2])


def test_history_and_checkpoint_written_each_epoch(tmp_path):
    m = _ae(epochs=3)
    res = train(m, _images(), TrainConfig(checkpoint_dir=tmp_path, progress=False))
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    assert all(np.isfinite(h["loss"]) for h in res.history)
    meta = training.read_checkpoint_meta(tmp_path)
    assert meta["epoch"] == 2 and meta["stage"] == 0
    assert (tmp_path / "last.safetensors").exists()
    assert os.listdir(tmp_path) == ["last.safetensors"]  # one file: one atomic write
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    imgs = _images()
    full = _ae(epochs=3)
    train(full, imgs, TrainConfig(seed=5, progress=False))

    real_epoch = training._run_epoch

    def dies_in_third_epoch(model, stage, opts, loader, si, epoch, *a):
        if epoch == 2:
            raise KeyboardInterrupt
        return real_epoch(model, stage, opts, loader, si, epoch, *a)

    monkeypatch.setattr(training, "_run_epoch", dies_in_third_epoch)
    interrupted = _ae(epochs=3)
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, imgs, TrainConfig(seed=5, checkpoint_dir=tmp_path, progress=False))
    assert training.read_checkpoint_meta(tmp_path)["epoch"] == 1
    monkeypatch.setattr(training, "_run_epoch", real_epoch)

    resumed = _ae(epochs=3)  # a fresh process would build a fresh model, too
    res = train(resumed, imgs, TrainConfig(seed=5, checkpoint_dir=tmp_path, progress=False))
    assert res.resumed_from == str(tmp_path)
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    for k, v in _weights(full).items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=1e-5, atol=1e-6)


def test_checkpoint_of_another_run_is_not_resumed(tmp_path):
    imgs = _images()
    train(_ae(epochs=1), imgs, TrainConfig(seed=0, checkpoint_dir=tmp_path, progress=False))
    res = train(_ae(epochs=1), imgs, TrainConfig(seed=1, checkpoint_dir=tmp_path, progress=False))
    assert res.resumed_from is None


def test_corrupt_checkpoint_starts_afresh(tmp_path):
    (tmp_path / "last.safetensors").write_bytes(b"garbage")
    res = train(_ae(epochs=1), _images(), TrainConfig(checkpoint_dir=tmp_path, progress=False))
    assert res.resumed_from is None and len(res.history) == 1


def test_step_decay_lowers_the_learning_rate():
    assert training._lr_factor((0.5,), 0.1, 0, 10) == 1.0
    assert training._lr_factor((0.5,), 0.1, 5, 10) == pytest.approx(0.1)
    assert training._lr_factor((0.5, 0.75), 0.1, 8, 10) == pytest.approx(0.01)


def test_non_finite_loss_stops_with_a_clear_error():
    base = get_method("ae")

    class Diverges(base):
        def training_step(self, batch, stage):
            return super().training_step(batch, stage) * float("nan")

    m = Diverges(base.make_config(epochs=1), 1, (32, 32))
    assert m.channels_last  # trains channels-last: the error must not leave it that way
    with pytest.raises(TrainingError, match="stage 'train', epoch 1"):
        train(m, _images(), TrainConfig(progress=False))
    assert all(p.is_contiguous() for p in m.parameters())


def test_epochs_scale_keeps_at_least_one_epoch():
    m = _ae(epochs=10)
    res = train(m, _images(40), TrainConfig(progress=False, epochs_scale=0.01))
    assert len(res.history) == 1


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_trains_a_working_model(tmp_path, mnist_small):
    """`reconad fit --devices 2 --strategy ddp` (gloo) trains, saves once, and the model
    separates real MNIST ones from other digits."""
    from PIL import Image

    from reconad.detector import Detector
    from reconad.metrics import image_auroc

    train_set, test, anomalous = mnist_small
    folder = tmp_path / "normal"
    folder.mkdir()
    for i, img in enumerate(train_set.images):
        Image.fromarray(img[0]).save(folder / f"{i:04d}.png")
    out = tmp_path / "model"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "reconad",
        "fit",
        "--data",
        str(folder),
        "--out",
        str(out),
        "--devices",
        "2",
        "--strategy",
        "ddp",
        "--epochs",
        "20",
        "--set",
        "batch_size=16",
        "--no-progress",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["training"]["strategy"] == "ddp" and cfg["training"]["devices"] == 2
    assert len(cfg["training"]["history"]) == 20
    det = Detector.load(out)
    assert image_auroc(anomalous, det.score_samples(test)) > 0.85, cfg["training"]["history"][-1]


def test_stage_frozen_target_is_computed_once_and_paired_with_each_batch():
    """A stage's ``frozen_target`` runs once per image; each batch reaches the step with
    its own images' targets, as the named field ``target``."""
    from reconad.methods.base import Stage

    calls: list[int] = []
    seen: list[torch.Tensor] = []
    base = type(_ae())

    class Paired(base):
        def stages(self):
            groups = super().stages()[0].groups
            return [Stage("s", 3, groups, batch_size=16, frozen_target=self.target)]

        def target(self, x):
            calls.append(len(x))
            return 1.0 - x  # a frozen function of the input that the step can check

        def training_step(self, batch, stage, target=None):
            seen.append((batch.detach().clone(), target))
            return super().training_step(batch, stage)

    m = Paired(base.make_config(epochs=3), 1, (32, 32))
    train(m, _images(40), TrainConfig(progress=False))
    assert sum(calls) == 40
    assert len(seen) == 3 * (40 // 16)
    for b, t in seen:
        assert b.shape[1] == 1 and t is not None and torch.allclose(t, 1.0 - b)


def test_channels_last_training_gives_the_same_model_in_the_usual_layout():
    """The layout is a speed setting: same losses and outputs, usual layout after training."""
    base = type(_ae())
    layouts: list[bool] = []

    class ChannelsFirst(base):
        channels_last = False

    class ChannelsLast(base):
        channels_last = True

        def training_step(self, batch, stage):
            w = next(p for p in self.parameters() if p.dim() == 4 and p.shape[1] > 1)
            layouts.append(
                w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
            )
            return super().training_step(batch, stage)

    images = _images(64)
    torch.manual_seed(0)
    plain = ChannelsFirst(base.make_config(epochs=2, batch_size=32), 1, (32, 32))
    torch.manual_seed(0)
    fast = ChannelsLast(base.make_config(epochs=2, batch_size=32), 1, (32, 32))
    ra = train(plain, images, TrainConfig(progress=False))
    rb = train(fast, images, TrainConfig(progress=False))
    assert layouts and all(layouts)  # the weights were channels-last while training
    losses = [[h["loss"] for h in r.history] for r in (ra, rb)]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)
    assert all(p.is_contiguous() for p in fast.parameters())
    # Summation order differs and Adam's normalised steps amplify that where a gradient is
    # near zero, so compare what the models do rather than each weight.
    x = torch.from_numpy(images[:16]).float() / 255.0
    with torch.no_grad():
        out_a, out_b = plain.eval()(x), fast.eval()(x)
    assert (out_a - out_b).abs().max() < 1e-2 and (out_a - out_b).abs().mean() < 1e-3


def test_a_small_set_trains_as_many_steps_as_the_preset_was_chosen_with():
    """Issue 21: 200 images at batch 32 used to give 6 steps an epoch; the preset's length
    is now a step count, so the stage runs its floor of epochs * (4500 // 32) steps."""
    stage = _ae(epochs=2).stages()[0]
    small = training.plan_stage(stage, 200, reference=4500)
    assert small.steps >= 2 * (4500 // 32) and small.batches == training.MIN_BATCHES_PER_EPOCH
    large = training.plan_stage(stage, 6000, reference=4500)
    assert (large.epochs, large.batches, large.samples_per_epoch) == (2, 6000 // 32, 6000)
    literal = training.plan_stage(stage, 200, reference=0)  # epochs chosen by the caller
    assert (literal.epochs, literal.steps) == (2, 2 * (200 // 32))


def test_a_stage_given_in_steps_runs_at_least_those_steps():
    stage = _ae(epochs=1).stages()[0]
    stage.steps = 50
    plan = training.plan_stage(stage, 96)
    assert plan.steps >= 50 and plan.steps - 50 < plan.batches
    assert training.plan_stage(stage, 96, scale=0.5).steps >= 25


def test_history_records_steps_and_images_seen():
    m = _ae(epochs=1)
    res = train(m, _images(96), TrainConfig(progress=False, step_floor=True))
    plan = training.plan_stage(m.stages()[0], 96, reference=m.reference_train_size)
    assert res.steps == plan.steps == sum(h["steps"] for h in res.history)
    assert res.images_seen == plan.steps * 32


def test_detector_warns_when_a_run_is_shorter_than_its_preset():
    from reconad.detector import Detector

    imgs = _images(64)
    with pytest.warns(UserWarning, match="fewer than the"):
        det = Detector("ae", hparams={"epochs": 1}, progress=False, val_fraction=0).fit(imgs)
    assert det.to_config()["training"]["steps"] == det.steps_ == 1  # 64 images, one batch


def test_augment_batch_flips_and_turns_each_image_by_itself():
    x = torch.arange(2 * 16, dtype=torch.float).view(2, 1, 4, 4).repeat(32, 1, 1, 1)
    torch.manual_seed(0)
    y = training.augment_batch(x, ("hflip", "vflip", "rot90"))
    assert y.shape == x.shape
    # every output is one of the 8 symmetries of its own input, and more than one is drawn
    seen = set()
    for a, b in zip(x, y, strict=True):
        options = [torch.rot90(f, r, dims=(-2, -1)) for f in (a, a.flip(-1)) for r in range(4)]
        hits = [i for i, o in enumerate(options) if torch.equal(o, b)]
        assert hits
        seen.add(hits[0])
    assert len(seen) >= 4
    assert torch.equal(training.augment_batch(x, ()), x)


def test_augment_is_checked_recorded_and_changes_training(tmp_path):
    with pytest.raises(ValueError, match="choose from"):
        training.check_augment(("shear",), (32, 32))
    with pytest.raises(ValueError, match="square"):
        training.check_augment(("rot90",), (32, 48))
    imgs = _images()
    plain, turned = _ae(), _ae()
    train(plain, imgs, TrainConfig(progress=False))
    train(turned, imgs, TrainConfig(progress=False, augment=("hflip", "rot90")))
    assert not _same(_weights(plain), _weights(turned))
    from reconad import Detector

    det = Detector("ae", augment="hflip,vflip", progress=False, hparams={"epochs": 1}).fit(imgs)
    assert det.to_config()["training"]["augment"] == ["hflip", "vflip"]
    bare = Detector("ae", progress=False, hparams={"epochs": 1}).fit(imgs)
    assert "augment" not in bare.to_config()["training"]
    with pytest.raises(ValueError, match="choose from"):
        Detector("ae", augment="hflip,warp", progress=False, hparams={"epochs": 1}).fit(imgs)


def test_augment_is_refused_where_a_stage_has_frozen_targets():
    cls = get_method("utad")
    torch.manual_seed(0)
    m = cls(cls.make_config(), 1, (64, 64))
    imgs = np.random.default_rng(0).integers(0, 256, (16, 1, 64, 64), dtype=np.uint8)
    with pytest.raises(ValueError, match="untransformed"):
        train(m, imgs, TrainConfig(progress=False, augment=("hflip",), epochs_scale=0.001))
