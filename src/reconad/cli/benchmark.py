"""`reconad benchmark one-class|industrial|adversarial`: parse the options into the
protocol's settings, run it (:mod:`reconad.protocols`), print its table.

The earlier spelling, ``reconad benchmark --dataset D ...`` (with ``--protocol adversarial``
for the adversarial one), stays: the protocol is read from ``--protocol`` or the data set.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from reconad.cli.common import (
    AugmentOpt,
    DifficultyModeOpt,
    DifficultyOpt,
    KeepAspectOpt,
    LoggerOpt,
    MapSmoothingOpt,
    MethodOpt,
    NormalizeOpt,
    PatchOpt,
    ProgressOpt,
    SetOpt,
    _check_logger,
    _check_report,
    _fail,
    _fail_on,
    _log,
    _model_config,
    _scoring,
    _training_curves,
    app,
    console,
    parse_set,
)

SUBCOMMANDS = ("one-class", "industrial", "adversarial")


class _Protocols(TyperGroup):
    """The benchmark group; an argument list in the earlier spelling (no protocol named)
    gets its protocol from ``--protocol`` or from the data set, as it did before."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if args and args[0] not in SUBCOMMANDS and args[0] not in ("--help", "-h"):
            args = _earlier_spelling(list(args))
            self._refuse_others(args)
        return super().parse_args(ctx, args)

    def _refuse_others(self, args: list[str]) -> None:
        """An option of another protocol gets one line naming where it applies (the
        earlier spelling took every option, so it says why one does nothing here)."""
        names = {n: _option_names(cmd) for n, cmd in self.commands.items()}
        for a in args[1:]:
            opt = a.split("=", 1)[0]
            if opt.startswith("--") and opt not in names[args[0]]:
                where = [n for n in SUBCOMMANDS if opt in names.get(n, ())]
                if where:
                    plural = "s" if len(where) > 1 else ""
                    _fail(f"{opt} applies to the {' and '.join(where)} protocol{plural} only")


def _option_names(command) -> set[str]:
    return {o for p in command.params for o in (*p.opts, *p.secondary_opts)}


def _option_value(args: list[str], name: str) -> tuple[str | None, list[str]]:
    """The value of ``--name V`` / ``--name=V`` in ``args``, and ``args`` without it."""
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1], args[:i] + args[i + 2 :]
        if a.startswith(name + "="):
            return a.split("=", 1)[1], args[:i] + args[i + 1 :]
    return None, args


def _earlier_spelling(args: list[str]) -> list[str]:
    from reconad.protocols.industrial import is_industrial

    protocol, args = _option_value(args, "--protocol")
    if protocol not in (None, "one-class", "adversarial"):
        _fail(f"unknown protocol {protocol!r}; choose one-class or adversarial")
    if protocol is None:
        dataset, _ = _option_value(args, "--dataset")
        protocol = "industrial" if dataset and is_industrial(dataset) else "one-class"
    return [protocol, *args]


bench = typer.Typer(
    cls=_Protocols,
    no_args_is_help=True,
    help="Run a published protocol, resumably (a finished result file is skipped; a folder "
    "holding runs made with other settings is refused), and print ours beside the published "
    "numbers. `reconad benchmark --dataset D ...` without a protocol still works: the "
    "protocol is read from --protocol or the data set.",
)
app.add_typer(bench, name="benchmark")

DataRootOpt = Annotated[
    Path | None, typer.Option(help="Data root (else $RECONAD_DATA, else ~/.cache/reconad).")
]
SeedsOpt = Annotated[str, typer.Option(help="Seeds, e.g. 0 or 0-2.")]
PresetOpt = Annotated[str | None, typer.Option(help="Method preset.")]
ValOpt = Annotated[float, typer.Option(help="Training normals held out.")]
ScaleOpt = Annotated[float, typer.Option(help="Scale the epochs (quick runs).")]
AccelOpt = Annotated[str, typer.Option(help="cpu, cuda or auto: where training and scoring run.")]
ClassesOpt = Annotated[str, typer.Option(help="Normal classes, e.g. 0-9, 3, 1,4.")]

#: options every protocol takes: (name, type, default); appended by ``_shared``
EVERY = (
    ("method", MethodOpt, "ae"), ("seeds", SeedsOpt, "0"), ("preset", PresetOpt, None),
    ("data_root", DataRootOpt, None), ("epochs_scale", ScaleOpt, 1.0), ("set_", SetOpt, None),
    ("progress", ProgressOpt, True),
)  # fmt: skip
#: options of the protocols that fit with held-out normals and log (one-class, industrial)
FITTING = (
    ("val_fraction", ValOpt, 0.1), ("accelerator", AccelOpt, "cpu"), ("logger", LoggerOpt, ""),
)  # fmt: skip


def _shared(*groups):
    """Give a command the options in ``groups`` beside its own, and hand it them parsed into
    the settings fields every protocol shares, as the keyword ``common``."""

    def wrap(command):
        sig = inspect.signature(command, eval_str=True)  # the types, not their strings
        own = [p for p in sig.parameters.values() if p.name != "common"]
        added = [
            inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=t, default=d)
            for group in groups
            for n, t, d in group
        ]

        @functools.wraps(command)
        def run(**kw: Any) -> None:
            shared = {p.name: kw.pop(p.name) for p in added}
            return command(common=_common(**shared), **kw)

        run.__signature__ = inspect.Signature(own + added)  # type: ignore[attr-defined]
        return run

    return wrap


def _common(
    seeds: str, data_root: Path | None, set_: list[str] | None, **same: Any
) -> dict[str, Any]:
    """The settings every protocol shares, from their options (bad ones: one line); the
    options named as the settings' fields (``same``) pass as they are."""
    from reconad.data.protocol import parse_classes

    try:
        seed_list = tuple(parse_classes(seeds, 10**6))
    except ValueError:
        _fail(f"--seeds {seeds!r}: give seeds as 0, 0-2 or 0,3")
    if "logger" in same:
        same["logger"] = _check_logger(same["logger"])
    return dict(seeds=seed_list, root=data_root, hparams=parse_set(set_), **same)


def _classes(spec: str, dataset: str) -> tuple[int, ...]:
    from reconad.data.datasets import DATASETS, canonical_name
    from reconad.data.imageset import DataError
    from reconad.data.protocol import parse_classes

    with _fail_on(DataError, ValueError):
        return tuple(parse_classes(spec, len(DATASETS[canonical_name(dataset)]["classes"])))


def _run(settings):
    """Run the protocol, print its table and where its files are; the outcome."""
    from reconad.data.imageset import DataError
    from reconad.protocols import run_benchmark

    try:
        outcome = run_benchmark(settings, log=_log)
    except (DataError, ValueError, KeyError) as e:
        msg = str(e).strip('"')  # a KeyError's message comes quoted
        if "mixed" in msg:
            msg += " (on the command line: --channels 1 or --channels 3)"
        _fail(msg)
    console.print(outcome.table())
    console.print(f"results in {outcome.out}/ ({outcome.protocol.files})")
    return outcome


@bench.command(
    "one-class",
    short_help="Each class in turn is normal: AUROC per class beside the published numbers.",
)
@_shared(EVERY, FITTING)
def one_class(
    dataset: Annotated[str, typer.Option(help="mnist, fmnist, cifar10, cifar100, gtsrb.")],
    classes: ClassesOpt = "all",
    out: Annotated[
        Path | None,
        typer.Option(
            help="Results folder (default benchmarks/results/DATASET/METHOD[-PRESET][+SCORING], "
            "e.g. ae+multiview+entropy)."
        ),
    ] = None,
    score: Annotated[str, typer.Option(help="native or multiview (see fit --help).")] = "native",
    difficulty: DifficultyOpt = "none",
    difficulty_mode: DifficultyModeOpt = "divide",
    also_score: Annotated[
        str | None,
        typer.Option(
            help="Further scoring variants of the same trained network, fitted on the same "
            "held-out normals and reported as columns, e.g. "
            "native,multiview,multiview+entropy,multiview+entropy-subtract."
        ),
    ] = None,
    save_models: Annotated[
        Path | None, typer.Option(help="Keep each fitted model in DIR/classC_seedS.")
    ] = None,
    *,
    common: dict[str, Any],
) -> None:
    """Each class in turn is normal; AUROC per class with the published numbers beside ours
    (and any other score a method offers, e.g. DDR-ID's latent and image scores, with Deep
    SVDD's and ARNet's published numbers). One JSON per class and seed."""
    from reconad.protocols import OneClassSettings
    from reconad.scoring import ScoringSpec

    method = common["method"]
    scoring = _scoring(method, score, difficulty, difficulty_mode)
    variants = tuple(v for v in (also_score or "").split(",") if v.strip())
    for v in variants:  # validated before any training is spent, as --score is
        with _fail_on(ValueError):
            spec = ScoringSpec.parse(v)
        _scoring(method, spec.score, spec.difficulty, spec.mode)
    _run(
        OneClassSettings(
            dataset=dataset,
            classes=_classes(classes, dataset),
            out=out,
            scoring=scoring,
            also_score=variants,
            save_models=save_models,
            **common,
        )  # fmt: skip
    )


@bench.command(
    "industrial",
    short_help="An MVTec AD-style category: image AUROC, pixel AUROC, AUPRO.",
)
@_shared(EVERY, FITTING)
def industrial(
    dataset: Annotated[
        str,
        typer.Option(help="magnetic-tile, mvtec/screw, mvtec/transistor, or a category folder."),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Results folder (default benchmarks/results/CATEGORY/METHOD[-PRESET][+OPTIONS])."
        ),
    ] = None,
    size: Annotated[
        int, typer.Option(help="Input side (rounded up to what the method needs).")
    ] = 128,
    channels: Annotated[
        int | None, typer.Option(help="1 or 3 converts every image (magnetic-tile: 1).")
    ] = None,
    normalize: NormalizeOpt = "none",
    image_score: Annotated[
        str,
        typer.Option(
            help="The image score the detector uses (native, map_max, map_topk or auto; see "
            "fit --help). Whatever it is, a map method's record also holds the score auto "
            "chooses and its AUROC."
        ),
    ] = "native",
    patch: PatchOpt = None,
    keep_aspect: KeepAspectOpt = False,
    map_smoothing: MapSmoothingOpt = "0",
    augment: AugmentOpt = "",
    save_models: Annotated[
        Path | None, typer.Option(help="Keep each fitted model in DIR/seedN (for predict).")
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            help="Write one HTML page for the results folder: the summary over seeds, then "
            "the first seed in detail (curves, per-type table; a gallery when --save-models "
            "keeps its model). See test --help."
        ),
    ] = None,
    *,
    common: dict[str, Any],
) -> None:
    """An MVTec AD-style category: fit on train/good minus held-out normals; image AUROC
    (also per defect type), pixel AUROC and AUPRO at each mask's own resolution, wall times
    and peak memory. One JSON per seed."""
    from reconad.protocols import IndustrialSettings

    _check_report(report)
    outcome = _run(
        IndustrialSettings(
            dataset=dataset,
            out=out,
            size=size,
            channels=channels,
            normalize=normalize,
            image_score=image_score,
            patch=patch,
            keep_aspect=keep_aspect,
            map_smoothing=map_smoothing,
            augment=augment,
            save_models=save_models,
            **common,
        )  # fmt: skip
    )
    if report:
        _industrial_report(report, outcome, save_models)


def _industrial_report(report: Path, outcome, models: Path | None) -> None:
    """The benchmark's page: the summary, then the first seed asked for in detail, with its
    model (gallery, card) when --save-models kept it, and its run log if any."""
    from reconad.data.folders import read_mvtec
    from reconad.detector import Detector
    from reconad.report.html import config_from_record, write_benchmark_report

    if not outcome.records:
        return
    rec = outcome.records[0]
    model = Path(models) / f"seed{rec['seed']}" if models else None
    det = Detector.load(model) if model and (model / "config.json").is_file() else None
    cfg = _model_config(model, det) if det is not None else config_from_record(rec)
    side = rec["settings"]["size"]  # as the protocol read the test set
    channels = (rec.get("input") or {}).get("channels")
    ts = read_mvtec(rec["category_path"], "test", size=(side, side), channels=channels)
    curves, note = _training_curves(model or outcome.out / "logs" / f"seed{rec['seed']}", cfg)
    write_benchmark_report(report, outcome.summary, rec, ts, cfg, det, curves, note)
    console.print(f"wrote {report}")


@bench.command(
    "adversarial",
    short_help="Can a detector fitted on clean images flag adversarial ones?",
)
@_shared(EVERY)
def adversarial(
    dataset: Annotated[str, typer.Option(help="mnist, fmnist, cifar10, gtsrb.")],
    classes: ClassesOpt = "all",
    out: Annotated[
        Path | None,
        typer.Option(
            help="Results folder (default benchmarks/results/adversarial/DATASET/METHOD[-all])."
        ),
    ] = None,
    attacks: Annotated[str, typer.Option(help="Attacks, e.g. fgsm,pgd.")] = "fgsm,pgd",
    epsilons: Annotated[
        str, typer.Option(help="L-inf budgets on the [0, 1] scale, e.g. 2/255,8/255.")
    ] = "2/255,8/255",
    pgd_steps: Annotated[int, typer.Option(help="PGD iterations.")] = 10,
    fit_on: Annotated[
        str, typer.Option(help="Fit the detector on one class (each in turn) or all.")
    ] = "one-class",
    classifier_epochs: Annotated[int, typer.Option(help="Epochs of the attacked classifier.")] = 10,
    attack_backend: Annotated[
        str, typer.Option(help="auto (ART when installed), art, or torch (built in).")
    ] = "auto",
    save_models: Annotated[
        Path | None,
        typer.Option(
            help="Where the detectors are kept (default OUT/detectors); ones already there, "
            "e.g. from a one-class run's --save-models with the same settings, are used "
            "instead of fitting again."
        ),
    ] = None,
    *,
    common: dict[str, Any],
) -> None:
    """Can a detector fitted on clean images flag adversarial ones? A small classifier is
    trained on the data set; FGSM/PGD examples are crafted from correctly classified test
    images; attack success rate, and the detection AUROC of clean vs adversarial images."""
    from reconad.adversarial import parse_epsilons
    from reconad.protocols import AdversarialSettings

    with _fail_on(ValueError):
        settings = AdversarialSettings(
            dataset=dataset, classes=_classes(classes, dataset), out=out,
            attacks=tuple(a.strip() for a in attacks.split(",")),
            epsilons=parse_epsilons(epsilons), pgd_steps=pgd_steps, backend=attack_backend,
            fit_on=fit_on, classifier_epochs=classifier_epochs, save_models=save_models,
            **common,
        )  # fmt: skip
    _run(settings)
