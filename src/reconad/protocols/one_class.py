"""The one-class protocol: each normal class in turn, one record per (class, seed).

Per class and seed: fit on that class's training images minus a seeded held-out share
(which sets the threshold and fits any score fusion), score the whole test split, and
record AUROC, AP, the calibrated rates, the AUROC of each alternative score, times and
memory. The summary puts the published number beside ours per class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconad.data.protocol import one_class_split
from reconad.evaluate import evaluate_one_class
from reconad.protocols import one_class_summary as summary_mod
from reconad.protocols.engine import Log, Protocol, RunSettings, Target, collect, fit_detector
from reconad.protocols.fingerprint import settings_mismatch
from reconad.protocols.provenance import peak_rss_mb
from reconad.scoring import ScoringSpec


@dataclass(kw_only=True)
class OneClassSettings(RunSettings):
    """The one-class protocol's options beside the shared ones.

    Attributes:
        classes: the normal classes, each in turn.
        scoring: the detector's ``score_views`` (under ``score``, as records keep it),
            ``difficulty`` and ``difficulty_mode``.
        also_score: further scoring variants of the same trained network (e.g.
            ``multiview+entropy-subtract``), reported as components ``+VARIANT``.
    """

    classes: tuple[int, ...] = (0,)
    scoring: dict[str, str] | None = None
    also_score: tuple[str, ...] = ()


def class_name(names: list[str] | None, c: int) -> str:
    """The name of class ``c``, or its number when the data set names none."""
    return names[c] if names and 0 <= c < len(names) else str(c)


def variant_key(tag: str) -> str:
    """The key an ``--also-score`` variant's AUROC has in a record's ``components``."""
    return ScoringSpec.parse(tag).name or "+native"


def collect_records(out_dir: Path, classes: list[int] | None = None) -> list[dict[str, Any]]:
    """Every finished (class, seed) record in ``out_dir``, e.g. to summarise all seeds run
    so far, whichever invocation ran them."""
    records = collect(out_dir, OneClass.record_glob, OneClass.key_fields)
    return [r for r in records if classes is None or r["class"] in classes]


def run_one_class(
    dataset: str,
    train,
    test,
    normal: int,
    settings: OneClassSettings,
    seed: int,
    save_to: Path | None = None,
    log_to: Path | None = None,
) -> dict[str, Any]:
    """Fit on one normal class, score the whole test split, return the result record
    (without provenance, which the engine adds). ``save_to`` keeps the fitted detector;
    ``log_to`` receives its step log when it is not kept."""
    s = settings
    split = one_class_split(train, test, normal, val_fraction=s.val_fraction, seed=seed)
    spec = ScoringSpec.from_record(s.scoring)  # records keep the key "score"
    det = s.detector(
        seed, score_views=spec.score, difficulty=spec.difficulty, difficulty_mode=spec.mode
    )
    fitted = fit_detector(det, split.train, split.val, save_to, log_to)
    variants = {variant_key(t): ScoringSpec.parse(t) for t in s.also_score}
    res = evaluate_one_class(det, split.test, split.test_anomalous, split.val, variants)
    cfg = det.to_config()
    t_score = res.pop("score_seconds")
    return {
        "dataset": dataset,
        "method": s.method,
        "preset": cfg["preset"],
        "class": normal,
        "class_name": class_name(train.class_names, normal),
        "seed": seed,
        **res,
        "n_train": len(split.train),
        "n_val": len(split.val),
        "n_test": len(split.test),
        **fitted,
        "score_seconds": t_score,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "scoring": cfg["scoring"],
        "epochs_scale": s.epochs_scale,
    }


class OneClass(Protocol):
    """Each class in turn is normal; one ``class{C}_seed{S}.json`` per class and seed."""

    files = "summary.csv, summary.json, one JSON per class and seed"
    record_glob, key_fields = "class*_seed*.json", ("class", "seed")
    settings: OneClassSettings
    table = staticmethod(summary_mod.render_table)

    def __init__(self, settings: OneClassSettings) -> None:
        super().__init__(settings)
        self.wanted = self.settings.method_settings(self.settings.scoring)

    def default_out(self) -> Path:
        s = self.settings
        tag = ScoringSpec.from_record(s.scoring).name
        return Path("benchmarks/results") / s.dataset / (s.folder_name() + tag)

    def targets(self) -> list[Target]:
        s = self.settings
        return [
            Target((c, seed), f"class{c}_seed{seed}", seed, f"class {c}, seed {seed}", c)
            for seed in s.seeds
            for c in s.classes
        ]

    def mismatch(self, record: dict[str, Any]) -> list[str]:
        return settings_mismatch(record, self.wanted)

    def needs_run(self, target: Target, record: dict[str, Any], log: Log) -> bool:
        # A finished run that lacks a requested --also-score variant is run again (the same
        # settings, so the new record only adds the variant), not skipped without it.
        missing = {variant_key(t) for t in self.settings.also_score}
        missing -= set(record.get("components", {}))
        if missing:
            log(
                f"[{self._prefix}] {target.label}: its record lacks "
                f"{', '.join(sorted(missing))}: running it again"
            )
        return bool(missing)

    @property
    def _prefix(self) -> str:
        return f"{self.settings.dataset}/{self.settings.method}"

    def run_target(self, target: Target, record: dict[str, Any] | None, log: Log) -> dict:
        s = self.settings
        log(f"[{self._prefix}] {target.label}: training")
        rec = run_one_class(
            s.dataset, self.train, self.test, target.item, s, target.seed,
            save_to=self.model_dir(target), log_to=self.log_dir(target),
        )  # fmt: skip
        log(f"[{self._prefix}] {target.label}: {self.result_line(rec)}")
        return rec

    def summary_records(self, ran: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # every seed finished so far in this folder, for the classes asked for
        return collect_records(self.out, list(self.settings.classes)) or ran

    def summarize(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        from reconad.methods import get_method

        refs = getattr(get_method(self.settings.method), "reference_methods", ())
        return summary_mod.summarize(records, references=refs)

    def write_summary(self, summary: dict[str, Any]) -> None:
        summary_mod.write_summary(summary, self.out)
