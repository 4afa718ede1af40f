"""Pickle-free storage: nested states as safetensors + JSON, and atomic writes.

Optimiser states and checkpoints are nested dicts of tensors and plain values. They are
split into a flat tensor dict (stored with safetensors) and a JSON skeleton that refers to
those tensors by key, so that nothing we write needs pickle to read back. Every file or
folder is written under a temporary name and renamed when complete, so an interrupted
write never leaves a half-written result behind.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
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


_CRASH_COUNTS: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Fault injection for the kill -9 tests: SIGKILL this process the k-th time it reaches
    the named point when ``RECONAD_KILL_AT`` is ``name#k`` (never set in normal use)."""
    want = os.environ.get("RECONAD_KILL_AT")
    if not want:
        return
    _CRASH_COUNTS[name] = _CRASH_COUNTS.get(name, 0) + 1
    if want == f"{name}#{_CRASH_COUNTS[name]}":
        os.kill(os.getpid(), signal.SIGKILL)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _honour_umask(path: Path, folder: bool) -> None:
    """mkstemp/mkdtemp create 0600 files and 0700 folders whatever the umask; give the
    result the mode a plain open()/mkdir() would, so a service account can read a model."""
    os.chmod(path, (0o777 if folder else 0o666) & ~_umask())


def atomic_write(path: Path, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        writer(Path(tmp))
        _honour_umask(Path(tmp), folder=False)
        crash_point(f"before-rename:{path.name}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically, indented, with a trailing newline."""
    atomic_write(Path(path), lambda p: p.write_text(json.dumps(data, indent=2) + "\n"))


def write_csv(path: Path, fields: list[str], rows: Iterable[dict[str, Any]]) -> None:
    """Write a CSV atomically: a header of ``fields``, then one line per row (keys not in
    ``fields`` left out, missing ones empty)."""

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

    atomic_write(Path(path), write)


def save_tensors(
    path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Write tensors (and string metadata, in the same file) with safetensors, atomically
    (copies make shared storage safe)."""
    clean = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    atomic_write(Path(path), lambda p: save_file(clean, str(p), metadata=metadata))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file (no pickle involved)."""
    return load_file(str(path))


def load_metadata(path: Path) -> dict[str, str]:
    """The string metadata stored in a safetensors file's header (no tensors read)."""
    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


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


def recover_dir(path: Path) -> None:
    """Clean up after a write of ``path`` that was killed: remove the temporary
    ``.NAME.*.partial`` folders :func:`atomic_dir` makes, and if ``path`` is missing while
    ``.NAME.old`` (the previous version, moved aside just before the new one was renamed
    in) exists, put the old one back. Only names of reconad's own making are touched."""
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        return
    for p in parent.glob(f".{glob.escape(path.name)}.*.partial"):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
    old = parent / f".{path.name}.old"
    if old.is_dir() and not old.is_symlink():
        if not path.exists():
            os.replace(old, path)
        else:
            shutil.rmtree(old, ignore_errors=True)


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
    recover_dir(path)
    check_replaceable(path, is_ours or (lambda _p: False), what)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        writer(tmp)
        _honour_umask(tmp, folder=True)
        crash_point("dir-complete")
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            crash_point("between-renames")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
