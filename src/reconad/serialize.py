"""Pickle-free storage: nested states as safetensors + JSON, and atomic writes.

Optimiser states and checkpoints are nested dicts of tensors and plain values. They are
split into a flat tensor dict (stored with safetensors) and a JSON skeleton that refers to
those tensors by key, so that nothing we write needs pickle to read back. Every file or
folder is written under a temporary name and renamed when complete, so an interrupted
write never leaves a half-written result behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

_TENSOR = "__tensor__"


def flatten_state(obj: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested state into a JSON-able skeleton and a flat dict of tensors."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(o: Any, path: str) -> Any:
        if isinstance(o, torch.Tensor):
            tensors[path] = o.detach().cpu().contiguous()
            return {_TENSOR: path}
        if isinstance(o, dict):
            return {"__dict__": [[k, walk(v, f"{path}.{k}")] for k, v in o.items()]}
        if isinstance(o, (list, tuple)):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(o)]
        return o

    return walk(obj, prefix or "s"), tensors


def unflatten_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state` (dict keys keep their type: int stays int)."""
    if isinstance(skeleton, dict) and _TENSOR in skeleton:
        return tensors[skeleton[_TENSOR]]
    if isinstance(skeleton, dict) and "__dict__" in skeleton:
        return {k: unflatten_state(v, tensors) for k, v in skeleton["__dict__"]}
    if isinstance(skeleton, list):
        return [unflatten_state(v, tensors) for v in skeleton]
    return skeleton


def atomic_write(path: Path, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        writer(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically, indented, with a trailing newline."""
    atomic_write(Path(path), lambda p: p.write_text(json.dumps(data, indent=2) + "\n"))


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write tensors with safetensors, atomically (copies make shared storage safe)."""
    clean = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    atomic_write(Path(path), lambda p: save_file(clean, str(p)))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file (no pickle involved)."""
    return load_file(str(path))


class OutputRefused(ValueError):
    """Writing to a path would destroy something reconad did not write there."""


def check_replaceable(path: Path, is_ours: Callable[[Path], bool], what: str) -> None:
    """Refuse to replace ``path`` unless it is absent, an empty folder, or ``is_ours(path)``.

    Why: replacing a model folder must never delete a user's images, notes or files that
    happen to sit at the chosen output path.

    Raises:
        OutputRefused: naming the path and why it is kept.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or not path.is_dir():
        raise OutputRefused(
            f"{path} exists and is not a folder reconad wrote; refusing to replace it "
            f"(choose another output path for the {what})"
        )
    if not any(path.iterdir()) or is_ours(path):
        return
    raise OutputRefused(
        f"{path} exists and is not a {what} folder (its config.json does not say so); "
        "refusing to replace it, since that would delete its contents (choose another path)"
    )


def atomic_dir(
    path: Path,
    writer: Callable[[Path], None],
    is_ours: Callable[[Path], bool] | None = None,
    what: str = "reconad output",
) -> None:
    """Fill a temporary folder with ``writer(tmp_dir)``, then put it at ``path``.

    An existing folder at ``path`` is replaced only after the new one is complete, and only
    when it is empty or ``is_ours(path)`` says reconad wrote it (anything else is refused
    before ``writer`` runs: see :func:`check_replaceable`).
    """
    path = Path(path)
    check_replaceable(path, is_ours or (lambda _p: False), what)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        writer(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
