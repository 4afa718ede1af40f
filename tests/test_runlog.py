"""Run logs: each optimiser step's losses and learning rates, in the model folder."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from reconad import Detector, runlog, training
from reconad.cli import app
from reconad.methods import get_method
from reconad.runlog import parse_loggers, read_run_log
from reconad.training import TrainConfig, train
from tests.conftest import digit_zeros

AE_TINY = {"epochs": 1, "batch_size": 8, "latent_dim": 8}

runner = CliRunner()
# the tiny fits here are meant to be short: their "undertrained" and "too few held-out
# normals" warnings are expected
pytestmark = pytest.mark.filterwarnings("ignore:.*(undertrained|held-out normal image):UserWarning")


def _rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _check_series(series, steps: int, names: list[str]) -> None:
    """Each named series has one finite value per step 0..steps-1, in order."""
    assert sorted(series) == sorted(names)
    for name in names:
        s, v = series[name]
        assert s.dtype == np.int64 and v.dtype == np.float64
        np.testing.assert_array_equal(s, np.arange(steps))
        assert np.isfinite(v).all() and (v > 0).all()


@pytest.fixture(scope="module")
def zeros_folder(tmp_path_factory):
    """64 of scikit-learn's digit zeros as 16x16 PNGs (every machine has them)."""
    folder = tmp_path_factory.mktemp("zeros") / "normal"
    folder.mkdir()
    for i, img in enumerate(digit_zeros(16)[:64]):
        Image.fromarray(img[0]).save(folder / f"{i:02d}.png")
    return folder


def test_fit_logger_csv_writes_one_row_per_step_into_the_model_folder(zeros_folder, tmp_path):
    out = tmp_path / "model"
    r = runner.invoke(
        app,
        ["fit", "--data", str(zeros_folder), "--out", str(out), "--epochs", "2",
         "--set", "batch_size=8", "--set", "latent_dim=8", "--logger", "csv", "--no-progress"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "run log (csv)" in r.output
    cfg = json.loads((out / "config.json").read_text())
    steps = cfg["training"]["steps"]
    assert steps == 2 * (58 // 8)  # 64 images less 10% held out, batch 8, 2 epochs
    assert cfg["training"]["logger"] == ["csv"]
    rows = _rows(out / "logs" / "metrics.csv")
    assert len(rows) == steps
    assert list(rows[0]) == ["step", "train/loss/model", "train/lr/model"]
    assert [int(row["step"]) for row in rows] == list(range(steps))
    assert all(np.isfinite(float(row["train/loss/model"])) for row in rows)
    assert {float(row["train/lr/model"]) for row in rows} == {2e-4}  # the ae's lr
    series = read_run_log(out)
    _check_series(series, steps, ["train/loss/model", "train/lr/model"])
    assert not out.with_name(f".{out.name}.checkpoint").exists()  # the log moved with it


def test_python_api_keeps_the_log_through_save_and_load(tmp_path):
    x = digit_zeros(16)[:48]
    det = Detector("ae", hparams=AE_TINY, progress=False, logger="csv")
    det.fit(x)
    assert list(det.run_log_) == ["metrics.csv"]
    det.save(tmp_path / "m")
    series = read_run_log(tmp_path / "m")
    _check_series(series, det.steps_, ["train/loss/model", "train/lr/model"])
    # a loaded model saved again keeps its log; the log alone reads the same
    Detector.load(tmp_path / "m").save(tmp_path / "again")
    assert (tmp_path / "again" / "logs" / "metrics.csv").read_bytes() == det.run_log_["metrics.csv"]
    assert det.save_run_log(tmp_path / "logs" / "class0_seed0") is not None
    alone = read_run_log(tmp_path / "logs" / "class0_seed0")
    assert all(np.array_equal(alone[k][1], series[k][1]) for k in series)
    # without a logger there is no log, and nothing says there is one
    plain = Detector("ae", hparams=AE_TINY, progress=False).fit(x)
    plain.save(tmp_path / "plain")
    assert read_run_log(tmp_path / "plain") is None
    assert "logger" not in json.loads((tmp_path / "plain" / "config.json").read_text())["training"]


def test_each_stage_and_optimiser_is_logged_in_training_order(tmp_path):
    """UTAD: an impression stage with three optimisers, an expert stage with two."""
    cls = get_method("utad")
    torch.manual_seed(0)
    hp = dict(n_samples=2, ie_batch_size=4, expert_batch_size=4, ie_epochs=1, expert_epochs=1)
    m = cls(cls.make_config("cpu", **hp), 1, (64, 64))
    res = train(
        m, digit_zeros(64)[:8], TrainConfig(progress=False, loggers=("csv",), log_dir=tmp_path)
    )
    series = read_run_log(tmp_path)
    groups = {s.name: list(s.groups) for s in m.stages()}
    assert groups == {"impression": ["ie", "d_img", "mi"], "expert": ["gen", "dis"]}
    names = [f"{st}/{kind}/{g}" for st, gs in groups.items() for kind in ("loss", "lr") for g in gs]
    assert sorted(series) == sorted(names)
    assert list(series)[0].startswith("impression/")  # training order
    first = {"impression": [0, 1], "expert": [2, 3]}  # 8 images, batch 4: 2 steps a stage
    assert res.steps == 4
    for name, (s, v) in series.items():
        assert s.tolist() == first[name.split("/")[0]] and np.isfinite(v).all()
    gen = m.stages()[1].groups["gen"]  # the rate the optimiser used: decay included
    lr = gen.lr * training._lr_factor(gen.milestones, gen.gamma, 0, 1)
    assert series["expert/lr/gen"][1].tolist() == [lr] * 2


def _ae():
    cls = get_method("ae")
    torch.manual_seed(0)
    return cls(cls.make_config(epochs=3, batch_size=16, latent_dim=8), 1, (16, 16))


def test_a_resumed_run_continues_its_log_without_gaps_or_repeats(tmp_path, monkeypatch):
    x = digit_zeros(16)[:64]  # 4 steps an epoch, 12 in all
    full = tmp_path / "full"
    train(_ae(), x, TrainConfig(seed=3, progress=False, loggers=("csv",), log_dir=full))
    real_epoch = training._run_epoch

    def dies_after_third_epoch(model, stage, opts, loader, si, epoch, *a):
        loss = real_epoch(model, stage, opts, loader, si, epoch, *a)
        if epoch == 2:  # its steps are logged, its checkpoint is not written
            raise KeyboardInterrupt
        return loss

    monkeypatch.setattr(training, "_run_epoch", dies_after_third_epoch)
    ckpt = tmp_path / "ckpt"
    cfg = TrainConfig(seed=3, checkpoint_dir=ckpt, progress=False, loggers=("csv",))
    with pytest.raises(KeyboardInterrupt):
        train(_ae(), x, cfg)
    assert len(_rows(ckpt / "logs" / "metrics.csv")) == 12  # finalized on the interrupt
    monkeypatch.setattr(training, "_run_epoch", real_epoch)
    res = train(_ae(), x, cfg)
    assert res.resumed_from == str(ckpt)
    assert [int(r["step"]) for r in _rows(ckpt / "logs" / "metrics.csv")] == list(range(12))
    got, want = read_run_log(ckpt), read_run_log(full)
    np.testing.assert_array_equal(got["train/loss/model"][0], np.arange(12))
    np.testing.assert_allclose(got["train/loss/model"][1], want["train/loss/model"][1], rtol=1e-5)
    assert list(res.logs) == ["metrics.csv"]


def test_an_unknown_logger_is_one_clear_line_before_training(zeros_folder, tmp_path):
    out = tmp_path / "m"
    r = runner.invoke(
        app, ["fit", "--data", str(zeros_folder), "--out", str(out), "--logger", "csvv"]
    )
    assert r.exit_code == 2
    assert "--logger csvv: choose csv, tensorboard" in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert not out.exists()
    with pytest.raises(ValueError, match="logger wandb"):
        Detector("ae", logger="csv,wandb").fit(digit_zeros(16)[:8])
    assert parse_loggers(" CSV , csv ") == ("csv",) and parse_loggers("") == ()


def test_tensorboard_without_the_package_names_the_extra(zeros_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(runlog, "tensorboard_available", lambda: False)
    out = tmp_path / "m"
    r = runner.invoke(
        app,
        ["fit", "--data", str(zeros_folder), "--out", str(out), "--logger", "csv,tensorboard"],
    )
    assert r.exit_code == 2
    assert 'pip install "reconad[tensorboard]"' in r.output
    assert len(r.output.strip().splitlines()) == 1 and not out.exists()
    with pytest.raises(ImportError, match=r"reconad\[tensorboard\]"):
        parse_loggers("tensorboard")


def test_tensorboard_writes_event_files_beside_the_csv(tmp_path):
    if not runlog.tensorboard_available():
        pytest.skip("tensorboard is not installed (the optional extra reconad[tensorboard])")
    loggers = ("csv", "tensorboard")
    train(
        _ae(), digit_zeros(16)[:32], TrainConfig(progress=False, loggers=loggers, log_dir=tmp_path)
    )
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert read_run_log(tmp_path)["train/loss/model"][0].tolist() == list(range(6))


def test_benchmark_logs_each_fit_beside_its_model_or_in_the_results(tmp_path, monkeypatch):
    from sklearn.datasets import load_digits

    from reconad.data import datasets
    from reconad.data.imageset import ImageSet
    from tests.test_benchmark import run_protocol

    d = load_digits()
    keep = np.flatnonzero(d.target < 2)
    x = torch.from_numpy(d.images[keep]).float()[:, None] / 16.0
    x = torch.nn.functional.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    images = (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    half = len(keep) // 2
    sets = {
        split: ImageSet(images[sl], labels=d.target[keep][sl].astype(np.int64))
        for split, sl in (("train", slice(None, half)), ("test", slice(half, None)))
    }
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split, root=None: sets[split])
    kw = dict(
        progress=False, log=lambda *a: None, logger="csv",
        hparams={"epochs": 1, "batch_size": 16, "latent_dim": 8},
    )  # fmt: skip
    (rec,) = run_protocol("mnist", "ae", [0], [0], tmp_path / "res", **kw)
    series = read_run_log(tmp_path / "res" / "logs" / "class0_seed0")
    assert series["train/loss/model"][0].tolist() == list(range(rec["steps"]))
    (rec,) = run_protocol(
        "mnist", "ae", [1], [0], tmp_path / "res2", save_models=tmp_path / "models", **kw
    )
    assert not (tmp_path / "res2" / "logs").exists()
    series = read_run_log(tmp_path / "models" / "class1_seed0")
    assert series["train/loss/model"][0].tolist() == list(range(rec["steps"]))
