"""Benchmark protocols on one engine (:mod:`reconad.protocols.engine`).

- :class:`OneClass` (``reconad benchmark one-class``): each class of a labelled data set in
  turn is normal; AUROC per class beside the published numbers.
- :class:`Industrial` (``reconad benchmark industrial``): an MVTec AD-style category; image
  AUROC (per defect type too), pixel AUROC and AUPRO.
- :class:`Adversarial` (``reconad benchmark adversarial``): can a detector fitted on clean
  images flag adversarial ones?

Each takes its settings dataclass; :func:`run_benchmark` picks the protocol from it::

    from reconad.protocols import IndustrialSettings, run_benchmark
    outcome = run_benchmark(IndustrialSettings(dataset="magnetic-tile", method="pca"))
    print(outcome.summary["rows"][0])
"""

from __future__ import annotations

from reconad.protocols.adversarial import Adversarial, AdversarialSettings
from reconad.protocols.engine import Log, Outcome, Protocol, RunSettings, Target, run
from reconad.protocols.industrial import Industrial, IndustrialSettings
from reconad.protocols.one_class import OneClass, OneClassSettings

#: each settings class and its protocol
PROTOCOLS: dict[type[RunSettings], type[Protocol]] = {
    OneClassSettings: OneClass,
    IndustrialSettings: Industrial,
    AdversarialSettings: Adversarial,
}


def run_benchmark(settings: RunSettings, log: Log = print) -> Outcome:
    """Run (or resume) the protocol that ``settings`` belongs to.

    Raises:
        ValueError: the results folder holds runs made with other settings.
        DataError: the data set is missing or unusable.
    """
    return run(PROTOCOLS[type(settings)](settings), log)


__all__ = [
    "PROTOCOLS",
    "Adversarial",
    "AdversarialSettings",
    "Industrial",
    "IndustrialSettings",
    "OneClass",
    "OneClassSettings",
    "Outcome",
    "Protocol",
    "RunSettings",
    "Target",
    "run",
    "run_benchmark",
]
