"""Pickle-free nested states and atomic writes."""

from __future__ import annotations

import pytest
import torch

from reconad.serialize import (
    OutputRefused,
    atomic_dir,
    flatten_state,
    load_tensors,
    save_tensors,
    unflatten_state,
)


def test_optimizer_state_round_trips_through_safetensors(tmp_path):
    p = torch.nn.Parameter(torch.randn(3, 2))
    opt = torch.optim.Adam([p], lr=1e-3, betas=(0.5, 0.9))
    p.sum().backward()
    opt.step()
    skeleton, tensors = flatten_state(opt.state_dict(), "opt")
    save_tensors(tmp_path / "s.safetensors", tensors)
    back = unflatten_state(skeleton, load_tensors(tmp_path / "s.safetensors"))
    fresh = torch.optim.Adam([torch.nn.Parameter(torch.zeros(3, 2))], lr=1.0)
    fresh.load_state_dict(back)
    assert fresh.param_groups[0]["lr"] == 1e-3
    assert list(fresh.state_dict()["state"]) == [0]  # int keys stay int
    torch.testing.assert_close(
        fresh.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"]
    )


def test_atomic_dir_leaves_nothing_when_the_writer_fails(tmp_path):
    def fails(tmp):
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        atomic_dir(tmp_path / "out", fails)
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_keeps_the_old_folder_until_the_new_one_is_complete(tmp_path):
    ours = {"is_ours": lambda p: True}
    atomic_dir(tmp_path / "out", lambda t: (t / "a.txt").write_text("old"))
    with pytest.raises(RuntimeError):
        atomic_dir(tmp_path / "out", lambda t: (_ for _ in ()).throw(RuntimeError("x")), **ours)
    assert (tmp_path / "out" / "a.txt").read_text() == "old"
    atomic_dir(tmp_path / "out", lambda t: (t / "b.txt").write_text("new"), **ours)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_dir_refuses_a_folder_it_cannot_prove_is_its_own(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "user.txt").write_text("keep")
    with pytest.raises(OutputRefused, match="refusing"):
        atomic_dir(tmp_path / "out", lambda t: (t / "b.txt").write_text("new"))
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["user.txt"]
