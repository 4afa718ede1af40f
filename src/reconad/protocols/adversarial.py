"""The adversarial-detection protocol: targets, resumable records, summary table."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reconad.adversarial.attacks import ATTACKS, attack, resolve_backend, to_uint8
from reconad.adversarial.classifier import get_classifier, predict
from reconad.metrics import image_auroc
from reconad.serialize import write_json


@dataclass
class AdversarialSettings:
    """What the protocol attacks, and how the classifier and detector are trained."""

    attacks: tuple[str, ...] = ATTACKS
    epsilons: tuple[float, ...] = (2 / 255, 8 / 255)
    pgd_steps: int = 10
    backend: str = "auto"
    fit_on: str = "one-class"  # or "all"
    classifier_epochs: int = 10
    classifier_width: int = 32
    n_fit_all: int = 10000  # training images of the all-classes detector
    n_test_all: int = 2000  # test images attacked in the all-classes mode

    def __post_init__(self) -> None:
        bad = sorted(set(self.attacks) - set(ATTACKS))
        if bad:
            raise ValueError(f"unknown attack(s) {bad}; choose from {ATTACKS}")
        if self.fit_on not in ("one-class", "all"):
            raise ValueError(f"fit_on must be 'one-class' or 'all'; got {self.fit_on!r}")
        resolve_backend(self.backend)


def _targets(train, test, classes: list[int], settings: AdversarialSettings, seed: int):
    """(name, detector training images, test indices) for each detector to fit."""
    if settings.fit_on == "all":
        rng = np.random.default_rng(seed)
        fit = rng.choice(len(train), min(settings.n_fit_all, len(train)), replace=False)
        tst = rng.choice(len(test), min(settings.n_test_all, len(test)), replace=False)
        return [("all", train.subset(np.sort(fit)), np.sort(tst))]
    return [
        (f"class{c}", train.subset(train.labels == c), np.flatnonzero(test.labels == c))
        for c in classes
    ]


def run_adversarial(
    dataset: str,
    method: str,
    classes: list[int],
    out_dir: Path,
    settings: AdversarialSettings,
    root: str | Path | None = None,
    preset: str | None = None,
    seed: int = 0,
    epochs_scale: float = 1.0,
    progress: bool = True,
    hparams: dict[str, Any] | None = None,
    log=print,
    detectors: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) the adversarial-detection protocol; one record per target.

    Each target's detector is kept in ``detectors/<target>_seed<S>/`` (default
    ``out_dir/detectors``): loaded when there (its settings must be this run's), else fitted
    and saved. The one-class benchmark's ``--save-models`` folder has the same layout, so
    detectors it fitted (on 90% of the class's training images, the rest held out) are
    reused rather than trained again.

    Raises:
        ValueError: ``out_dir`` holds records or detectors made with other settings (the
            detector's preset, hyper-parameters or ``epochs_scale``; the attacks' PGD steps
            or backend; the classifier; the fitting mode): resuming would mix them.
    """
    from reconad.benchmark import resolved_settings
    from reconad.data.datasets import load_dataset
    from reconad.detector import Detector

    out_dir = Path(out_dir)
    detectors = Path(detectors) if detectors is not None else out_dir / "detectors"
    backend = resolve_backend(settings.backend)
    if settings.backend == "auto" and backend == "torch":
        log(
            "attacks in plain torch (same FGSM/PGD definitions): the Adversarial Robustness "
            "Toolbox is not installed (pip install adversarial-robustness-toolbox)"
        )
    wanted = resolved_settings(method, preset, hparams, epochs_scale)
    protocol = dataclasses.asdict(settings) | {"backend": backend}
    protocol = json.loads(json.dumps({k: v for k, v in protocol.items() if k not in _PER_ENTRY}))
    train = load_dataset(dataset, "train", root=root)
    test = load_dataset(dataset, "test", root=root)
    targets = _targets(train, test, classes, settings, seed)
    keys = [(a, e, f"{a}@{e:.6g}") for a in settings.attacks for e in settings.epsilons]
    saved = {}  # each target's record so far, read once
    for name, _, _ in targets:  # before the classifier, which a mismatch would overwrite
        path = out_dir / f"{name}_seed{seed}.json"
        if path.exists():
            saved[name] = json.loads(path.read_text())
            _check_record(path, saved[name], wanted, protocol)
    if all(name in saved and not _pending(saved[name], keys) for name, _, _ in targets):
        return [saved[name] for name, _, _ in targets]  # no classifier to load or train
    clf, clf_meta = get_classifier(
        out_dir, train, test, settings.classifier_epochs, settings.classifier_width, seed, log
    )
    records = []
    for name, fit_set, idx in targets:
        path = out_dir / f"{name}_seed{seed}.json"
        rec = saved.get(name, {})
        rec.update(dataset=dataset, method=method, preset=wanted["preset"], target=name, seed=seed)
        rec.update(fit_on=settings.fit_on, backend=backend, classifier=clf_meta)
        rec.update(settings=wanted, protocol=protocol)
        rec.setdefault("entries", {})
        x_test, y_test = test.images[idx], test.labels[idx]
        correct = predict(clf, x_test) == y_test
        x_ok, y_ok = x_test[correct], torch.from_numpy(y_test[correct])
        rec.update(n_test=len(idx), n_correct=int(correct.sum()))
        if not len(x_ok):
            log(f"{dataset}/{method} {name}: no test image is classified right; none attacked")
            write_json(path, rec)
            records.append(rec)
            continue
        model_dir = detectors / f"{name}_seed{seed}"
        rec["detector_dir"] = str(model_dir)
        todo = _pending(rec, keys)
        if not todo:  # finished: no detector to load, no clean images to score
            write_json(path, rec)
            records.append(rec)
            continue
        if (model_dir / "config.json").exists():
            det = _load_detector(model_dir, wanted)
            log(f"{dataset}/{method} {name}: using the detector in {model_dir}")
        else:
            log(f"{dataset}/{method} {name}: fitting the detector on {len(fit_set)} images")
            det = Detector(
                method,
                preset=preset,
                seed=seed,
                progress=progress,
                epochs_scale=epochs_scale,
                hparams=hparams,
            )
            det.fit(fit_set)
            det.save(model_dir)
        clean = det.explain(x_ok, n=0, maps=False)  # scores and the method's other scores
        x = torch.from_numpy(x_ok).float() / 255.0  # the attacks do not modify it
        for atk, eps, key in todo:
            t0 = time.perf_counter()
            adv = to_uint8(attack(clf, x, y_ok, atk, eps, backend, settings.pgd_steps, seed))
            fooled = predict(clf, adv) != y_ok.numpy()
            s_adv = det.explain(adv, n=0, maps=False)
            rec["entries"][key] = _entry(atk, eps, clean, s_adv, fooled, x_ok, adv, t0)
            write_json(path, rec)
            e = rec["entries"][key]
            log(
                f"{dataset}/{method} {name} {key}: success {e['success_rate']:.1f}%, "
                f"detection AUROC {_fmt(e['auroc'])}"
            )
        write_json(path, rec)
        records.append(rec)
    return records


# The fields of a finished entry; an older record's entry without one of them is recomputed
# (the attacks are seeded, so its other numbers come out the same).
_ENTRY_KEYS = {"auroc", "auroc_all_perturbed", "auroc_paired", "components", "components_paired"}

# Settings that only add entries (attack@eps keys) to a record: a resumed run may change them.
_PER_ENTRY = ("attacks", "epsilons")


def _pending(rec: dict, keys: list) -> list:
    """The (attack, eps, key) entries a record still lacks; an entry from before one of
    ``_ENTRY_KEYS`` existed counts as missing and is redone."""
    have = rec.get("entries", {})
    return [k for k in keys if not _ENTRY_KEYS <= set(have.get(k[2], {}))]


def _check_record(path: Path, rec: dict, wanted: dict, protocol: dict) -> None:
    """Refuse to add to a record made under other settings (its entries would mix them);
    ``protocol`` holds the classifier's epochs and width, so it covers the classifier too."""
    old = {"settings": rec.get("settings"), "protocol": rec.get("protocol")}
    new = {"settings": wanted, "protocol": protocol}
    bad = [k for k in new if old[k] != new[k]]
    if bad:
        raise ValueError(
            f"{path} was made with other settings ({', '.join(bad)} differ): "
            "choose another --out, or the same settings"
        )


def _load_detector(model_dir: Path, wanted: dict):
    """A saved detector, if it was fitted with the settings this run asks for."""
    from reconad.benchmark import settings_mismatch
    from reconad.detector import Detector

    det = Detector.load(model_dir)
    cfg = det.to_config()
    have = {**cfg, "epochs_scale": cfg["training"]["epochs_scale"]}
    bad = settings_mismatch(have, wanted)
    if bad:
        raise ValueError(
            f"{model_dir} holds a detector fitted with other settings ({', '.join(bad)} differ): "
            "choose another --out, or the same settings"
        )
    return det


def _entry(atk, eps, clean, s_adv, fooled, x_ok, adv, t0) -> dict[str, Any]:
    """One (attack, epsilon) result; ``clean`` and ``s_adv`` are ``Detector.explain``
    outputs, whose ``components`` (e.g. DDR-ID's latent and image scores) get AUROCs too."""

    def auroc(neg, pos):
        if len(neg) == 0 or len(pos) == 0:
            return None
        return 100 * image_auroc(np.r_[np.zeros(len(neg)), np.ones(len(pos))], np.r_[neg, pos])

    linf = np.abs(adv.astype(np.int16) - x_ok.astype(np.int16)).max() / 255 if len(adv) else 0.0
    return {
        "attack": atk,
        "epsilon": eps,
        "epsilon_255": round(eps * 255, 3),
        "n_correct": len(fooled),
        "n_success": int(fooled.sum()),
        "success_rate": 100 * float(fooled.mean()) if len(fooled) else 0.0,
        "auroc": auroc(clean["scores"], s_adv["scores"][fooled]),
        "auroc_all_perturbed": auroc(clean["scores"], s_adv["scores"]),
        # the fooled images' own clean originals against them: the perturbation alone, without
        # the selection effect (the images an attack fools are atypical before the attack)
        "auroc_paired": auroc(clean["scores"][fooled], s_adv["scores"][fooled]),
        "components": {
            k: auroc(v, s_adv["components"][k][fooled]) for k, v in clean["components"].items()
        },
        "components_paired": {
            k: auroc(v[fooled], s_adv["components"][k][fooled])
            for k, v in clean["components"].items()
        },
        "max_linf": float(linf),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def _mean(values) -> float | None:
    """The mean of the values that are not None (an entry without a successful attack has
    no AUROC), or None when there is none."""
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def summarize_adversarial(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (attack, epsilon): means over targets of success rate and AUROCs."""
    rows: dict[str, dict[str, Any]] = {}
    for rec in records:
        for key, e in rec["entries"].items():
            row = rows.setdefault(key, {"attack": e["attack"], "epsilon": e["epsilon"], "n": []})
            row["n"].append(e)
    out = []
    for row in rows.values():
        es = row.pop("n")
        names = sorted({k for e in es for k in e.get("components", {})})
        out.append(
            {
                **row,
                "epsilon_255": es[0]["epsilon_255"],
                "targets": len(es),
                "success_rate": _mean(e["success_rate"] for e in es),
                "auroc": _mean(e["auroc"] for e in es),
                "auroc_all_perturbed": _mean(e["auroc_all_perturbed"] for e in es),
                "auroc_paired": _mean(e.get("auroc_paired") for e in es),
                **{
                    field: {k: _mean(e.get(field, {}).get(k) for e in es) for k in names}
                    for field in ("components", "components_paired")
                },
            }
        )
    return sorted(out, key=lambda r: (r["attack"], r["epsilon"]))


def render_adversarial(rows: list[dict[str, Any]], title: str):
    """A rich Table of ``summarize_adversarial`` rows."""
    from rich.table import Table

    t = Table(title=title)
    names = sorted({k for r in rows for k in r.get("components", {})})
    cols = ("attack", "eps (x/255)", "targets", "success %")
    cols += ("AUROC %", "AUROC all %", "AUROC paired %")
    extra = [(f, k) for k in names for f in ("components", "components_paired")]
    heads = [f"AUROC {k}{' paired' if f.endswith('paired') else ''} %" for f, k in extra]
    for col in (*cols, *heads):
        t.add_column(col, justify="left" if col == "attack" else "right")
    for r in rows:
        t.add_row(
            r["attack"],
            f"{r['epsilon_255']:g}",
            str(r["targets"]),
            _fmt(r["success_rate"]),
            _fmt(r["auroc"]),
            _fmt(r["auroc_all_perturbed"]),
            _fmt(r.get("auroc_paired")),
            *(_fmt(r.get(f, {}).get(k)) for f, k in extra),
        )
    return t
