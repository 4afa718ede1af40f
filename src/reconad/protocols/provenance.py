"""What every benchmark record says about where and with what it ran: hardware, library
versions, git commit, and the process's peak memory."""

from __future__ import annotations

import gc
import os
import resource
import subprocess
from typing import Any


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak_rss() -> bool:
    """Reset this process's peak-RSS mark to its current RSS (Linux), so that each run's
    peak is its own; False where the system does not allow it (the peak then counts from
    the start of the process)."""
    gc.collect()  # the previous run's model and maps go first
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def git_commit() -> str | None:
    """The current git commit of the working directory, if any."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def hardware(accelerator: str = "cpu") -> str:
    """The machine a run used, in words, for the result record (e.g. "cuda: NVIDIA H200")."""
    import torch

    if accelerator in ("cuda", "gpu", "auto") and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    model = ""
    try:  # the host's CPU model: timings from different hosts differ by up to 2x here
        with open("/proc/cpuinfo") as f:
            names = (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
            model = next(names, "")
    except OSError:
        pass
    where = f"{model}, " if model else ""
    return f"cpu: {where}{os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def provenance(accelerator: str = "cpu", commit: str | None = None) -> dict[str, Any]:
    """The closing entries of every record: hardware, versions and git commit (``commit``:
    the one read when the run started, since a long run may end after a later commit)."""
    from reconad.detector import versions

    commit = commit if commit is not None else git_commit()
    return {"hardware": hardware(accelerator), "versions": versions(), "git_commit": commit}
