"""Run many one-class protocol jobs side by side, one process per (class, seed), under a deadline.

Measured on one H200 (methods/arnet/README.md): processes sharing a GPU are time-sliced, not
overlapped, so more workers than one or two buy little there; the script's use is the
deadline and the bookkeeping (and CPU machines with cores to spare). Each job is one
``reconad benchmark`` call for one class and one seed, so a
job either writes its result file or nothing; a job killed at the deadline is simply run
again next time (the benchmark skips finished files). Sweeps are taken in the order given,
seed by seed, so the first finished seeds cover every class.

    python benchmarks/parallel_runs.py --workers 2 --launch-until 400 --stop-at 480 \\
        --sweep cifar10:arnet:paper:0-9:0-2 --sweep mnist:arnet:paper:0-9:0 \\
        -- --accelerator cuda --data-root .gpudata --no-progress

Each sweep is ``DATASET:METHOD:PRESET:CLASSES:SEEDS`` (an empty PRESET = the default); its
results go to ``OUT_ROOT/DATASET/METHOD[-PRESET]``, each job's log to ``OUT_ROOT/logs``.
Arguments after ``--`` are passed to every ``reconad benchmark`` call.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from reconad.data.protocol import parse_classes


def expand(sweep: str, out_root: Path) -> list[tuple[str, list[str], Path]]:
    """The jobs of one sweep: (name, benchmark arguments, result file), seed-major."""
    try:
        dataset, method, preset, classes, seeds = sweep.split(":")
    except ValueError:
        msg = f"--sweep {sweep!r}: expected DATASET:METHOD:PRESET:CLASSES:SEEDS"
        raise SystemExit(msg) from None
    out = out_root / dataset / (method + (f"-{preset}" if preset else ""))
    jobs = []
    for s in parse_classes(seeds, 10**6):
        for c in parse_classes(classes, 100):
            args = ["--dataset", dataset, "--method", method, "--classes", str(c)]
            args += ["--seeds", str(s), "--out", str(out)]
            args += ["--preset", preset] if preset else []
            name = f"{dataset}-{method}-{preset or 'default'}-c{c}-s{s}"
            jobs.append((name, args, out / f"class{c}_seed{s}.json"))
    return jobs


def main() -> None:
    argv = sys.argv[1:]
    passthrough = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", action="append", required=True)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--out-root", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--launch-until", type=float, default=float("inf"), help="seconds")
    ap.add_argument("--stop-at", type=float, default=float("inf"), help="seconds: kill the rest")
    args = ap.parse_args(argv)

    jobs = [j for sweep in args.sweep for j in expand(sweep, args.out_root)]
    todo = [j for j in jobs if not j[2].exists()]
    print(f"{len(jobs)} jobs, {len(jobs) - len(todo)} already done, {args.workers} at a time")
    logs = args.out_root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    start = time.monotonic()
    running: dict[str, tuple[subprocess.Popen, float]] = {}
    finished = failed = todo_left = 0
    durations: list[float] = []
    while todo or running:
        now = time.monotonic() - start
        for name, (proc, t0) in list(running.items()):
            if proc.poll() is not None:
                del running[name]
                ok = proc.returncode == 0
                finished += ok
                failed += not ok
                if ok:
                    durations.append(now - t0)
                print(f"{now:6.0f} s  {'done' if ok else 'FAILED'} {name} ({now - t0:.0f} s)")
        if now > args.stop_at:
            for name, (proc, _) in running.items():
                proc.kill()
                print(f"{now:6.0f} s  killed {name} at the deadline")
            break
        # Once jobs have finished, start another only if it can end before --stop-at.
        est = sorted(durations)[len(durations) // 2] if durations else 0.0
        while todo and len(running) < args.workers and now < args.launch_until:
            if now + 1.1 * est > args.stop_at:
                print(f"{now:6.0f} s  no time for more jobs (a job takes about {est:.0f} s)")
                todo_left = len(todo)
                todo.clear()
                break
            name, bargs, _ = todo.pop(0)
            cmd = [sys.executable, "-m", "reconad", "benchmark", *bargs, *passthrough]
            log = open(logs / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
            running[name] = (subprocess.Popen(cmd, stdout=log, stderr=log, env=env), now)
            print(f"{now:6.0f} s  start {name}")
        if not running and (not todo or now >= args.launch_until):
            break
        time.sleep(1)
    print(f"finished {finished}, failed {failed}, not started {len(todo) + todo_left}")


if __name__ == "__main__":
    main()
