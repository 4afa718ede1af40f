"""Bad input, scanned as a list of cases: the input, the exit code, the words in the message.

Each case also checks that nothing the user owns was lost (issue 20: never delete or
overwrite a file that reconad did not write).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from reconad import Detector
from reconad.cli import app
from reconad.serialize import OutputRefused

runner = CliRunner()


def _invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def parts(tmp_path: Path) -> Path:
    """A small folder of a user's real-looking images (random gray parts) plus a note."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "parts"
    folder.mkdir()
    for i in range(24):
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "notes.txt").write_text("my notes")
    return folder


# --- item 1: data loss at --out ------------------------------------------------------------
# (what sits at --out, the words the refusal must say)
OUT_CASES = [
    ("same as --data", "inside"),
    ("inside --data", "inside"),
    ("a folder of notes", "not a reconad model"),
    ("a file", "not a folder reconad wrote"),
    ("cwd (.)", "not a reconad model"),
]


@pytest.mark.parametrize(("case", "words"), OUT_CASES)
def test_fit_never_replaces_what_reconad_did_not_write(case, words, parts, tmp_path, monkeypatch):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.md").write_text("keep me")
    a_file = tmp_path / "report.pdf"
    a_file.write_bytes(b"%PDF keep")
    out = {
        "same as --data": parts,
        "inside --data": parts / "model",
        "a folder of notes": notes,
        "a file": a_file,
        "cwd (.)": Path("."),
    }[case]
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    r = _invoke("fit", "--data", parts, "--out", out, "--method", "pca")
    assert r.exit_code == 2, r.output
    assert words in " ".join(r.output.split()), r.output
    assert "Traceback" not in r.output
    assert _snapshot(tmp_path) == before  # nothing lost, nothing added


def test_fit_replaces_its_own_model_folder(parts, tmp_path):
    out = tmp_path / "model"
    assert _invoke("fit", "--data", parts, "--out", out, "--method", "pca").exit_code == 0
    r = _invoke("fit", "--data", parts, "--out", out, "--method", "pca", "--seed", "1")
    assert r.exit_code == 0, r.output
    assert (out / "config.json").exists()


def test_fit_writes_into_an_empty_folder(parts, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    r = _invoke("fit", "--data", parts, "--out", out, "--method", "pca")
    assert r.exit_code == 0, r.output
    assert (out / "weights.safetensors").exists()


def test_detector_save_refuses_a_user_folder(parts, tmp_path):
    det = Detector("pca").fit(parts)
    before = _snapshot(parts)
    with pytest.raises(OutputRefused, match="not a reconad model"):
        det.save(parts)
    assert _snapshot(parts) == before
    target = tmp_path / "file.txt"
    target.write_text("keep")
    with pytest.raises(OutputRefused):
        det.save(target)
    assert target.read_text() == "keep"


# --- items 8, 9, 16: predict reads folders as fit does; stdout stays machine-readable ----
@pytest.fixture
def parts_model(parts, tmp_path) -> Path:
    out = tmp_path / "model"
    r = _invoke("fit", "--data", parts, "--out", out, "--method", "pca")
    assert r.exit_code == 0, r.output
    return out


def test_predict_folder_skips_what_fit_skips(parts, parts_model):
    (parts / ".DS_Store").write_bytes(b"\x00\x01junk")
    (parts / "README.txt").write_text("not an image")
    r = _invoke("predict", "--model", parts_model, parts)
    assert r.exit_code == 0, r.output
    assert len(r.output.strip().splitlines()) == 24  # the 24 images, nothing else


def test_predict_json_is_one_object_per_line_even_with_a_progress_bar(
    parts, parts_model, monkeypatch
):
    import json

    import reconad.data.folders as folders

    monkeypatch.setattr(folders, "PROGRESS_MIN_FILES", 5)  # the decoding bar shows
    r = runner.invoke(app, ["predict", "--model", str(parts_model), str(parts), "--json"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert len(lines) == 24 and all(json.loads(line)["file"] for line in lines)


def test_heatmaps_of_same_named_files_in_two_folders_do_not_overwrite(parts_model, tmp_path):
    for sub in ("good", "broken"):
        (tmp_path / "t" / sub).mkdir(parents=True)
        img = np.full((16, 16), 40 if sub == "good" else 200, np.uint8)
        Image.fromarray(img).save(tmp_path / "t" / sub / "000.png")
    maps = tmp_path / "maps"
    r = _invoke(
        "predict",
        "--model",
        parts_model,
        tmp_path / "t" / "good",
        tmp_path / "t" / "broken",
        "--heatmaps",
        maps,
    )
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in maps.iterdir() if p.name.endswith("_heatmap.png"))
    assert names == ["broken_000_heatmap.png", "good_000_heatmap.png"]


def test_a_newline_in_a_file_name_stays_on_one_output_line(parts_model, tmp_path):
    odd = tmp_path / "a\nb.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(odd)
    r = _invoke("predict", "--model", parts_model, odd)
    assert r.exit_code == 0, r.output
    assert len(r.output.strip().splitlines()) == 1 and "a\\nb.png" in r.output


# --- items 2, 3, 6, 13: a broken model folder gets one line naming the file, exit code 2 -
def _corrupt(model: Path, case: str) -> None:
    import json

    import torch
    from safetensors.torch import load_file, save_file

    weights, cfg_path = model / "weights.safetensors", model / "config.json"
    cfg = json.loads(cfg_path.read_text())
    if case == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:100])
    elif case == "random weights":
        weights.write_bytes(np.random.default_rng(0).bytes(4096))
    elif case in ("wrong-shaped weight", "NaN weights"):
        t = load_file(str(weights))
        key = next(k for k in sorted(t) if t[k].ndim >= 2)
        t[key] = torch.zeros(1) if case == "wrong-shaped weight" else t[key] * float("nan")
        save_file(t, str(weights))
    elif case == "bad JSON":
        cfg_path.write_text('{"format": "reconad-model/1", method: pca}')
    elif case == "JSON list":
        cfg_path.write_text("[1, 2]")
    elif case == "no calibration":
        del cfg["calibration"]
        cfg_path.write_text(json.dumps(cfg))
    elif case == "unknown hyper-parameter":
        cfg["hparams"]["speed"] = "high"
        cfg_path.write_text(json.dumps(cfg))
    elif case == "changed input size":
        cfg["input"]["height"] = cfg["input"]["width"] = 32
        cfg_path.write_text(json.dumps(cfg))


# (what is broken, the words the one-line message must hold)
MODEL_CASES = [
    ("truncated weights", "weights.safetensors"),
    ("random weights", "not a readable safetensors file"),
    ("wrong-shaped weight", "has shape (1,)"),
    ("NaN weights", "NaN"),
    ("bad JSON", "not valid JSON"),
    ("JSON list", "expected a JSON object, found a list"),
    ("no calibration", "'calibration'"),
    ("unknown hyper-parameter", "speed"),
    ("changed input size", "needs"),
]


@pytest.fixture(scope="module")
def ae_model(tmp_path_factory) -> Path:
    """A tiny trained ae (it has 4-d weights, which pca lacks)."""
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (24, 1, 16, 16), dtype=np.uint8)
    out = tmp_path_factory.mktemp("ae") / "model"
    Detector("ae", hparams={"epochs": 1}, progress=False).fit(imgs).save(out)
    return out


@pytest.mark.parametrize(("case", "words"), MODEL_CASES)
def test_a_broken_model_folder_is_one_clear_line(case, words, ae_model, parts, tmp_path):
    import shutil

    model = tmp_path / "m"
    shutil.copytree(ae_model, model)
    _corrupt(model, case)
    r = _invoke("predict", "--model", model, parts)
    assert r.exit_code == 2, r.output
    flat = " ".join(r.output.split())
    assert words in flat and "Traceback" not in r.output
    assert str(model) in flat  # the message names the folder's file


def test_set_with_a_word_for_a_number_is_refused_before_training(parts, tmp_path):
    r = _invoke(
        "fit", "--data", parts, "--out", tmp_path / "m", "--method", "ae", "--set", "lr=fast"
    )
    assert r.exit_code == 2
    assert "lr='fast' should be a float" in " ".join(r.output.split())
    assert not (tmp_path / "m").exists()


def test_a_corrupt_training_checkpoint_starts_afresh_and_says_so(tmp_path, capsys):
    """A checkpoint of this very run (its fingerprint matches) whose tensors are garbage."""
    import json

    import torch

    from reconad.methods import get_method
    from reconad.serialize import save_tensors
    from reconad.training import TrainConfig, _fingerprint, train

    imgs = np.random.default_rng(0).integers(0, 255, (24, 1, 16, 16), dtype=np.uint8)
    cls = get_method("ae")
    method = cls(cls.make_config(epochs=1), 1, (16, 16))
    cfg = TrainConfig(checkpoint_dir=tmp_path, progress=False)
    meta = {"fingerprint": _fingerprint(method, imgs, cfg), "stage": 0, "epoch": 0}
    save_tensors(
        tmp_path / "last.safetensors", {"junk": torch.zeros(3)}, {"reconad": json.dumps(meta)}
    )
    res = train(method, imgs, cfg)
    assert res.resumed_from is None and len(res.history) == 1
    assert f"checkpoint {tmp_path} is unreadable" in capsys.readouterr().err


# --- items 6, 12: run options refused with one line before any training ------------------
# (extra fit options, the words of the refusal)
OPTION_CASES = [
    (["--devices", "abc"], "--devices 'abc'"),
    (["--val-fraction", "-0.5"], "--val-fraction -0.5: must be in [0, 1)"),
    (["--epochs", "0"], "--epochs 0: must be at least 1"),
    (["--epochs", "-3"], "--epochs -3: must be at least 1"),
    (["--target-fpr", "1.5"], "--target-fpr 1.5"),
    (["--image-score", "best"], "image_score='best': choose from"),
    (["--image-score", "map_max", "--score", "multiview"], "applies to the native score"),
]


@pytest.mark.parametrize(("extra", "words"), OPTION_CASES)
def test_bad_run_options_are_refused(extra, words, parts, tmp_path):
    r = _invoke("fit", "--data", parts, "--out", tmp_path / "m", "--method", "ae", *extra)
    assert r.exit_code == 2, r.output
    assert words in " ".join(r.output.split()) and "Traceback" not in r.output
    assert not (tmp_path / "m").exists()


def test_cuda_without_a_gpu_is_one_line(parts, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    r = _invoke("fit", "--data", parts, "--out", tmp_path / "m", "--accelerator", "cuda")
    assert r.exit_code == 2 and "sees no CUDA GPU" in r.output


def test_a_one_image_folder_is_refused_not_saved_with_a_nan_threshold(tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(one / "a.png")
    r = _invoke("fit", "--data", one, "--out", tmp_path / "m", "--method", "pca")
    assert r.exit_code == 2 and "too few to hold any out" in " ".join(r.output.split())
    assert not (tmp_path / "m").exists()


def test_a_nan_loss_is_one_line_and_leaves_no_checkpoint(parts, tmp_path):
    out = tmp_path / "m"
    r = _invoke("fit", "--data", parts, "--out", out, "--method", "ae", "--epochs", "3",
                "--set", "lr=1e30", "--no-progress")  # fmt: skip
    assert r.exit_code == 2, r.output
    assert "became" in r.output and "Traceback" not in r.output
    assert not out.exists() and not out.with_name(".m.checkpoint").exists()


# --- item 11: a second fit on the same --out refuses while the first holds the lock -------
def test_a_second_fit_on_the_same_out_is_refused(parts, tmp_path):
    import fcntl

    out = tmp_path / "m"
    with open(tmp_path / ".m.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running fit holds it
        r = _invoke("fit", "--data", parts, "--out", out, "--method", "pca")
    assert r.exit_code == 2 and "another reconad fit is writing" in " ".join(r.output.split())
    assert not out.exists()
    assert _invoke("fit", "--data", parts, "--out", out, "--method", "pca").exit_code == 0
    assert not (tmp_path / ".m.lock").exists()  # the finished fit leaves no lock file behind


def test_a_fit_that_locked_a_lock_file_just_removed_takes_a_fresh_one(tmp_path, monkeypatch):
    import fcntl
    import os

    from reconad import cli

    out, path = tmp_path / "m", tmp_path / ".m.lock"
    real, calls = fcntl.flock, []

    def flock(f, op):  # the holder finishes and removes the file just as we lock it
        calls.append(os.fstat(f.fileno()).st_ino)
        if len(calls) == 1:
            path.unlink()
        return real(f, op)

    monkeypatch.setattr(fcntl, "flock", flock)
    with cli._locked(out):
        assert path.exists() and os.stat(path).st_ino == calls[-1]  # the file now at the path
    assert len(calls) == 2 and not path.exists()


# --- item 15: saved files follow the umask ------------------------------------------------
def test_saved_model_honours_the_umask(parts, tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        Detector("pca").fit(parts).save(tmp_path / "m")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m").stat().st_mode) == 0o755
    for f in (tmp_path / "m").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f


# --- items 4, 14: kill -9 at each point of fit leaves the old state or the new one --------
def _fit_process(parts: Path, out: Path, kill_at: str | None):
    import os
    import subprocess
    import sys

    env = {**os.environ, "RECONAD_KILL_AT": kill_at or ""}
    cmd = [sys.executable, "-m", "reconad.cli", "fit", "--data", str(parts), "--out", str(out),
           "--method", "ae", "--epochs", "3", "--set", "batch_size=8", "--no-progress"]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".partial", ".old", ".tmp")))


@pytest.mark.slow
def test_kill_between_checkpoint_writes_resumes_to_the_same_model(parts, tmp_path):
    import json

    ref = _fit_process(parts, tmp_path / "ref", None)
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "m"
    # killed while the second epoch's checkpoint is complete but not yet renamed into place
    r = _fit_process(parts, out, "before-rename:last.safetensors#2")
    assert r.returncode == -9 and not out.exists()
    r = _fit_process(parts, out, None)
    assert r.returncode == 0, r.stderr
    assert "resuming from checkpoint" in r.stderr and "after epoch 1" in r.stderr
    got, want = (json.loads((p / "config.json").read_text()) for p in (out, tmp_path / "ref"))
    assert got["calibration"]["threshold"] == want["calibration"]["threshold"]
    assert [h["loss"] for h in got["training"]["history"]] == [
        h["loss"] for h in want["training"]["history"]
    ]
    assert _leftovers(tmp_path) == [] and not (tmp_path / ".m.checkpoint").exists()


@pytest.mark.slow
@pytest.mark.parametrize("point", ["dir-complete#1", "between-renames#1"])
def test_kill_during_the_final_save_leaves_old_or_new_and_is_cleaned_up(point, parts, tmp_path):
    out = tmp_path / "m"
    assert _fit_process(parts, out, None).returncode == 0
    first = (out / "weights.safetensors").read_bytes()
    r = _fit_process(parts, out, point)
    assert r.returncode == -9
    # the old model is still there, or (between the two renames) set aside as .m.old
    kept = out if out.exists() else tmp_path / ".m.old"
    assert (kept / "weights.safetensors").read_bytes() == first
    r = _fit_process(parts, out, None)  # the next run recovers and cleans up
    assert r.returncode == 0, r.stderr
    assert (out / "config.json").exists() and _leftovers(tmp_path) == []


# --- no traceback reaches the user unless --debug asks for it -----------------------------
def test_an_internal_error_is_one_line_and_debug_shows_the_traceback(tmp_path):
    import os
    import subprocess
    import sys

    code = (
        "import sys, reconad.cli as c\n"
        "def boom(): raise RuntimeError('a bug')\n"
        "c.app.command('boom')(boom)\n"
        "sys.argv = ['reconad', *sys.argv[1:], 'boom']\n"
        "c.main()\n"
    )
    env = {**os.environ, "RECONAD_DEBUG": ""}
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert "internal error: RuntimeError: a bug (rerun with --debug" in plain.stderr
    debug = subprocess.run(
        [sys.executable, "-c", code, "--debug"], capture_output=True, text=True, env=env
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    after = code.replace("*sys.argv[1:], 'boom'", "'boom', *sys.argv[1:]")
    late = subprocess.run(
        [sys.executable, "-c", after, "--debug"], capture_output=True, text=True, env=env
    )  # written after the command, as users do: still the traceback, not "no such option"
    assert late.returncode == 1 and "Traceback" in late.stderr, late.stderr


# --- item 10: the advice names options that exist ---------------------------------------
def test_mixed_sizes_and_modes_advise_options_that_exist(tmp_path):
    sizes, modes = tmp_path / "sizes", tmp_path / "modes"
    for folder in (sizes, modes):
        folder.mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(sizes / "a.png")
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(sizes / "b.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(modes / "a.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(modes / "b.png")
    r = _invoke("fit", "--data", sizes, "--out", tmp_path / "m", "--method", "pca")
    assert r.exit_code == 2 and "--image-size N to reconad fit" in " ".join(r.output.split())
    r = _invoke("fit", "--data", modes, "--out", tmp_path / "m", "--method", "pca")
    flat = " ".join(r.output.split())
    assert r.exit_code == 2 and "convert the files to one mode" in flat
    assert "pass channels=1" not in flat  # fit has no such option
