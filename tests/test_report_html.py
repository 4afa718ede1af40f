"""The HTML report, opened in a real headless browser (Debian's chromium; CI installs it).

The page records on load, in a hidden element, how many images it has, which did not
decode (naturalWidth 0) and any script error; chromium's --dump-dom gives the DOM after
the load event, and --enable-logging=stderr its console messages. Every number marked
``data-metric`` must equal metrics.json (or the benchmark's records and summary).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from reconad.cli import app

runner = CliRunner()
CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="/usr/bin/chromium is missing (apt-get install chromium; .ci/run installs it)",
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture(scope="module")
def category(tmp_path_factory) -> Path:
    """A small MVTec-style category: gray textures, bright square defects of two types
    (some faint, so some are missed), masks; sizes vary, as in real sets."""
    rng = np.random.default_rng(1)
    root = tmp_path_factory.mktemp("report") / "parts"

    def texture(h: int, w: int) -> np.ndarray:
        return (100 + 30 * rng.random((h, w))).astype(np.uint8)

    for i in range(40):
        _save(root / "train/good" / f"{i:03d}.png", texture(30 + i % 3, 32))
    for i in range(8):
        _save(root / "test/good" / f"g{i}.png", texture(32, 30 + i % 3))
    for kind, bright in (("scratch", 250), ("stain", 150)):
        for i in range(5):
            img, mask = texture(32, 32), np.zeros((32, 32), np.uint8)
            y, x = 4 + 4 * i, 3 + 3 * i
            img[y : y + 8, x : x + 10] = bright - 12 * i  # fainter and fainter
            mask[y : y + 8, x : x + 10] = 255
            _save(root / "test" / kind / f"{kind[0]}{i}.png", img)
            _save(root / "ground_truth" / kind / f"{kind[0]}{i}_mask.png", mask)
    return root


@pytest.fixture(scope="module")
def model(category, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models") / "pca"
    args = ["fit", "--data", str(category), "--out", str(out), "--method", "pca"]
    r = runner.invoke(app, [*args, "--image-size", "24", "--val-fraction", "0.25"])
    assert r.exit_code == 0, r.output
    return out


class _Marks(HTMLParser):
    """Collects data-metric cells, <img> sources and the self-check element's text."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics: list[tuple[str, str, list[str]]] = []
        self.images: list[str] = []
        self.check: str | None = None
        self._open: list[str] | None = None
        self._in_check = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src") or "")
        if "data-metric" in a:
            self._open = [a["data-metric"], a["data-value"], []]
            self.metrics.append(self._open)
        self._in_check = a.get("id") == "reconad-selfcheck"

    def handle_endtag(self, tag):
        if tag in ("td", "span"):
            self._open = None
        self._in_check = False

    def handle_data(self, data):
        if self._open is not None:
            self._open[2].append(data)
        if self._in_check:
            self.check = (self.check or "") + data


def _browse(page: Path) -> tuple[_Marks, list[str]]:
    """Load the page in headless chromium: its DOM after load, and its console messages."""
    with tempfile.TemporaryDirectory() as profile:
        run = subprocess.run(
            [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
            capture_output=True,
            text=True,
            timeout=90,
        )
    assert run.returncode == 0, run.stderr[-2000:]
    marks = _Marks()
    marks.feed(run.stdout)
    console = [ln for ln in run.stderr.splitlines() if ":CONSOLE" in ln]
    return marks, console


def _value(d, dotted: str):
    for part in dotted.split("."):
        d = d[part]
    return d


def _check_page(page: Path, truth: dict) -> set[str]:
    """Assert the page loads cleanly, decodes every image and matches ``truth``; returns
    the metric keys it shows."""
    html = page.read_text()
    assert "http://" not in html and "https://" not in html  # nothing from the network
    marks, console = _browse(page)
    assert console == []  # no console message at all, errors included
    assert marks.check, "the page's load handler did not run"
    status = json.loads(marks.check)
    assert status["errors"] == []
    assert status["images"] == len(marks.images) >= 3 and status["undecoded"] == []
    assert all(src.startswith("data:image/png;base64,") for src in marks.images)
    for key, value, text in marks.metrics:
        want = _value(truth, key)
        assert float(value) == want, key  # the exact value, from the same dict
        shown = "".join(text).strip().rstrip("%")  # rounded to the digits it shows
        digits = len(shown.partition(".")[2])
        assert shown == (str(want) if isinstance(want, int) else f"{want:.{digits}f}"), key
        assert isinstance(want, int) or digits >= 1, key
    return {k for k, _, _ in marks.metrics}


@needs_chromium
def test_test_report_loads_in_a_browser_and_matches_metrics_json(category, model, tmp_path):
    page, out = tmp_path / "report.html", tmp_path / "out"
    args = ["test", "--model", str(model), "--data", str(category), "--out", str(out)]
    r = runner.invoke(app, [*args, "--report", str(page)])
    assert r.exit_code == 0, r.output
    metrics = json.loads((out / "metrics.json").read_text())
    keys = _check_page(page, metrics)
    for k in ("auroc", "ap", "pixel_auroc", "aupro", "calibrated.test_fpr"):
        assert k in keys
    assert {f"auroc_per_type.{t}" for t in ("scratch", "stain")} <= keys
    html = page.read_text()
    for section in ("card", "metrics", "curves", "types", "gallery"):
        assert f'id="{section}"' in html
    assert "Missed defects" in html and "False alarms" in html and "reconstruction" in html
    # written again over its own earlier page: allowed
    r = runner.invoke(app, [*args, "--report", str(page)])
    assert r.exit_code == 0, r.output


@needs_chromium
def test_benchmark_report_shows_the_summary_and_a_seed(category, tmp_path):
    page, out, keep = tmp_path / "bench.html", tmp_path / "res", tmp_path / "models"
    args = ["benchmark", "--dataset", str(category), "--method", "pca", "--size", "24"]
    args += ["--seeds", "0-1", "--out", str(out), "--save-models", str(keep), "--no-progress"]
    r = runner.invoke(app, [*args, "--report", str(page)])
    assert r.exit_code == 0, r.output
    seed0 = json.loads((out / "seed0.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    rows = {row["metric"]: row for row in summary["rows"]}
    truth = {
        **seed0,
        "summary": {
            m: {"mean": row["mean"], "std": row["std"]}
            | {f"seed{s}": v for s, v in row["per_seed"].items()}
            for m, row in rows.items()
        },
    }
    keys = _check_page(page, truth)
    assert {"auroc", "summary.auroc.mean", "summary.auroc.seed1"} <= keys
    assert "Seed 0 in detail" in page.read_text() and 'class="item' in page.read_text()


def test_report_refuses_a_file_it_did_not_write(category, model, tmp_path):
    page = tmp_path / "notes.html"
    page.write_text("<html><body>my notes</body></html>")
    args = ["test", "--model", str(model), "--data", str(category), "--report", str(page)]
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "not a report reconad wrote" in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert page.read_text() == "<html><body>my notes</body></html>"
    folder = tmp_path / "a-folder"
    folder.mkdir()
    r = runner.invoke(app, [*args[:-1], str(folder)])
    assert r.exit_code == 2 and "refusing" in r.output
    bench = ["benchmark", "--dataset", str(category), "--method", "pca", "--size", "24"]
    r = runner.invoke(app, [*bench, "--out", str(tmp_path / "res"), "--report", str(page)])
    assert r.exit_code == 2 and not (tmp_path / "res").exists()
    assert page.read_text() == "<html><body>my notes</body></html>"


def test_training_curves_of_a_run_log_and_of_the_config_history():
    import base64
    import io

    from reconad.report.figures import curves_uri
    from reconad.report.html import history_curves

    steps = np.arange(1, 501)
    run_log = {  # read_run_log's shape: "<stage>/<quantity>[/<group>]" -> (steps, values)
        "draem/loss/main": (steps, 1 / steps + 0.01 * np.random.default_rng(0).random(500)),
        "draem/lr/main": (steps, np.where(steps < 400, 1e-4, 2e-5)),
    }
    uri = curves_uri(run_log)
    png = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert png.width > 2 * png.height  # two panels side by side: loss and lr
    assert curves_uri({}) is None
    history = [
        {"stage": "ae", "epoch": 1, "loss": 0.5, "steps": 10},
        {"stage": "ae", "epoch": 2, "loss": 0.3, "steps": 10},
    ]
    curves = history_curves({"training": {"history": history}})
    np.testing.assert_array_equal(curves["ae/loss"][0], [10, 20])
    np.testing.assert_array_equal(curves["ae/loss"][1], [0.5, 0.3])
