"""A run's settings as its records keep them, and the check that refuses to mix settings.

A results folder summarises the runs in it, so every protocol refuses to add a run made
with other settings (preset, any hyper-parameter as resolved, ``epochs_scale``, scoring, or
a protocol option) to a folder that holds runs made with others.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

NATIVE_SCORING = {"score": "native", "difficulty": "none", "difficulty_mode": "divide"}


def as_stored(value: Any) -> Any:
    """``value`` as a JSON record stores it (tuples become lists)."""
    return json.loads(json.dumps(value))


def resolved_settings(
    method: str,
    preset: str | None = None,
    hparams: dict[str, Any] | None = None,
    epochs_scale: float = 1.0,
    scoring: dict[str, str] | None = None,
) -> dict[str, Any]:
    """What a run's records say about how it was trained and scored, resolved before any
    training (the preset's name and every hyper-parameter, as JSON stores them), so that a
    resumed run can refuse a folder whose finished runs used other settings."""
    from reconad.methods import get_method

    cls = get_method(method)
    name = preset or next(iter(cls.presets))
    hp = dataclasses.asdict(cls.make_config(name, **(hparams or {})))
    sc = {**NATIVE_SCORING, **(scoring or {})}
    out = {"method": method, "preset": name, "hparams": hp, "epochs_scale": epochs_scale}
    out["scoring"] = {k: sc[k] for k in ("score", "difficulty", "difficulty_mode")}
    return as_stored(out)


def settings_mismatch(record: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """The keys of ``wanted`` (see :func:`resolved_settings`) on which a record differs;
    hyper-parameters are compared one by one and named ``hparams.NAME``. The record's values
    are compared as JSON stores them, so a live config's tuples equal a file's lists."""
    bad = []
    for k, v in wanted.items():
        got = as_stored(record.get(k))
        if k == "epochs_scale" and got is None:
            got = 1.0
        if k == "scoring":  # records made before scoring options existed were native
            got = {kk: {**NATIVE_SCORING, **(got or {})}[kk] for kk in v}
        if k == "hparams" and isinstance(got, dict):
            bad += [f"hparams.{n}" for n in sorted(set(v) | set(got)) if v.get(n) != got.get(n)]
        elif got != v:
            bad.append(k)
    return bad
