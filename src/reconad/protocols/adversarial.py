"""The adversarial-detection protocol: one record per (target, seed), grown entry by entry.

A target is one normal class (``fit_on="one-class"``, each class in turn) or ``all``. Per
target and seed: the data set's classifier (trained once, kept in the results folder), the
detector (fitted on clean training images, kept in ``detectors/<target>_seed<S>/``, or
loaded from there), then per (attack, epsilon) one entry: the attack's success rate and the
detection AUROC of clean vs adversarial images. The record is written after every entry, so
a stopped run continues at the entry it stopped at; see :mod:`reconad.adversarial`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reconad.adversarial.attacks import ATTACKS, attack, resolve_backend, to_uint8
from reconad.adversarial.classifier import get_classifier, predict
from reconad.metrics import image_auroc
from reconad.protocols.engine import Log, Protocol, RunSettings, Target, fmt, other_settings
from reconad.protocols.fingerprint import as_stored, settings_mismatch

#: the protocol's own options, stored in each record's ``protocol`` (but _PER_ENTRY)
ATTACK_FIELDS = (
    "attacks", "epsilons", "pgd_steps", "backend", "fit_on", "classifier_epochs",
    "classifier_width", "n_fit_all", "n_test_all",
)  # fmt: skip


@dataclass(kw_only=True)
class AdversarialSettings(RunSettings):
    """What the protocol attacks, and how the classifier and detector are trained.

    ``save_models`` is where the detectors are kept (default ``OUT/detectors``): the
    one-class protocol's ``--save-models`` folder has the same layout, so detectors it
    fitted with the same settings are loaded rather than trained again.
    """

    classes: tuple[int, ...] = (0,)
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


class Adversarial(Protocol):
    """Adversarial-example detection; one ``<target>_seed<S>.json`` per target and seed."""

    files = "summary.json, one JSON per target and seed"
    record_glob, key_fields = "*_seed*.json", ("target", "seed")
    settings: AdversarialSettings

    def __init__(self, settings: AdversarialSettings) -> None:
        super().__init__(settings)
        s = self.settings
        self.backend = resolve_backend(s.backend)
        self.wanted = s.method_settings()
        proto = {k: getattr(s, k) for k in ATTACK_FIELDS if k not in _PER_ENTRY}
        self.protocol = as_stored(proto | {"backend": self.backend})
        self.keys = [(a, e, f"{a}@{e:.6g}") for a in s.attacks for e in s.epsilons]
        self.detectors = Path(s.save_models) if s.save_models else self.out / "detectors"
        self.classifiers: dict[int, tuple] = {}

    def default_out(self) -> Path:
        s = self.settings
        name = s.folder_name() + ("-all" if s.fit_on == "all" else "")
        return Path("benchmarks/results/adversarial") / s.dataset / name

    def targets(self) -> list[Target]:
        s = self.settings
        names = ["all"] if s.fit_on == "all" else [f"class{c}" for c in s.classes]
        return [
            Target((n, seed), f"{n}_seed{seed}", seed, f"{n}", n) for seed in s.seeds for n in names
        ]

    def mismatch(self, record: dict[str, Any]) -> list[str]:
        # ``protocol`` holds the classifier's epochs and width, so it covers the classifier
        new = {"settings": self.wanted, "protocol": self.protocol}
        return [k for k, v in new.items() if record.get(k) != v]

    def needs_run(self, target: Target, record: dict[str, Any], log: Log) -> bool:
        return bool(_pending(record, self.keys))

    def load(self, log: Log) -> None:
        if self.settings.backend == "auto" and self.backend == "torch":
            log(
                "attacks in plain torch (same FGSM/PGD definitions): the Adversarial Robustness "
                "Toolbox is not installed (pip install adversarial-robustness-toolbox)"
            )
        super().load(log)

    def summary_records(self, ran: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return ran  # the targets and seeds of this run

    def _fit_set(self, target: Target):
        """The detector's training images and the test indices to attack."""
        s, train, test = self.settings, self.train, self.test
        if target.item == "all":
            rng = np.random.default_rng(target.seed)
            fit = rng.choice(len(train), min(s.n_fit_all, len(train)), replace=False)
            tst = rng.choice(len(test), min(s.n_test_all, len(test)), replace=False)
            return train.subset(np.sort(fit)), np.sort(tst)
        c = int(target.item.removeprefix("class"))
        return train.subset(train.labels == c), np.flatnonzero(test.labels == c)

    def _classifier(self, seed: int, log: Log):
        if seed not in self.classifiers:
            s = self.settings
            self.classifiers[seed] = get_classifier(
                self.out, self.train, self.test, s.classifier_epochs, s.classifier_width, seed, log
            )
        return self.classifiers[seed]

    def run_target(self, target: Target, record: dict[str, Any] | None, log: Log) -> dict:
        s, seed, name = self.settings, target.seed, target.item
        where = f"{s.dataset}/{s.method} {name}"
        clf, clf_meta = self._classifier(seed, log)
        fit_set, idx = self._fit_set(target)
        rec = dict(record or {})
        rec.update(dataset=s.dataset, method=s.method, preset=self.wanted["preset"])
        rec.update(target=name, seed=seed, fit_on=s.fit_on, backend=self.backend)
        rec.update(classifier=clf_meta, settings=self.wanted, protocol=self.protocol)
        rec.setdefault("entries", {})
        x_test, y_test = self.test.images[idx], self.test.labels[idx]
        correct = predict(clf, x_test) == y_test
        x_ok, y_ok = x_test[correct], torch.from_numpy(y_test[correct])
        rec.update(n_test=len(idx), n_correct=int(correct.sum()))
        if not len(x_ok):
            log(f"{where}: no test image is classified right; none attacked")
            return rec
        model_dir = self.detectors / target.stem
        rec["detector_dir"] = str(model_dir)
        if (model_dir / "config.json").exists():
            det = _load_detector(model_dir, self.wanted)
            log(f"{where}: using the detector in {model_dir}")
        else:
            log(f"{where}: fitting the detector on {len(fit_set)} images")
            det = s.detector(seed)
            det.fit(fit_set)
            det.save(model_dir)
        clean = det.explain(x_ok, n=0, maps=False)  # scores and the method's other scores
        x = torch.from_numpy(x_ok).float() / 255.0  # the attacks do not modify it
        for atk, eps, key in _pending(rec, self.keys):
            t0 = time.perf_counter()
            adv = to_uint8(attack(clf, x, y_ok, atk, eps, self.backend, s.pgd_steps, seed))
            fooled = predict(clf, adv) != y_ok.numpy()
            s_adv = det.explain(adv, n=0, maps=False)
            rec["entries"][key] = _entry(atk, eps, clean, s_adv, fooled, x_ok, adv, t0)
            self.save(target, rec)
            e = rec["entries"][key]
            log(
                f"{where} {key}: success {e['success_rate']:.1f}%, "
                f"detection AUROC {fmt(e['auroc'])}"
            )
        return rec

    def summarize(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        clf = records[0]["classifier"] if records else {}
        return {
            "rows": summarize_adversarial(records),
            "classifier": clf,
            "n_records": len(records),
        }

    def table(self, summary: dict[str, Any]):
        s, clf = self.settings, summary["classifier"]
        title = f"{s.method} on {s.dataset}"
        if summary["n_records"]:
            title += (
                f": adversarial detection (fit on {s.fit_on}; classifier clean accuracy "
                f"{clf.get('test_accuracy', float('nan')):.1f}%; attacks via {self.backend})"
            )
        return render_adversarial(summary["rows"], title)


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


def _load_detector(model_dir: Path, wanted: dict):
    """A saved detector, if it was fitted with the settings this run asks for."""
    from reconad.detector import Detector

    det = Detector.load(model_dir)
    cfg = det.to_config()
    have = {**cfg, "epochs_scale": cfg["training"]["epochs_scale"]}
    bad = settings_mismatch(have, wanted)
    if bad:
        raise other_settings(f"{model_dir} holds a detector fitted", bad)
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


#: an entry's numbers that a summary row averages over targets (the first columns of its table)
_MEANS = ("success_rate", "auroc", "auroc_all_perturbed", "auroc_paired")


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
                **{k: _mean(e.get(k) for e in es) for k in _MEANS},
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
            *(fmt(r.get(k)) for k in _MEANS),
            *(fmt(r.get(f, {}).get(k)) for f, k in extra),
        )
    return t
