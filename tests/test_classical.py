"""Classical baselines: parity with scikit-learn, pickle-free round trip, real-data sanity.

The methods copy scikit-learn's fitted state into buffers and recompute its scores in torch,
so every score must match the scikit-learn estimator fitted the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.svm import OneClassSVM

from reconad.data.idx import read_idx_array
from reconad.methods import get_method
from reconad.methods.classical import average_path_length

FMNIST = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "fashion-mnist"
NAMES = ("pca", "iforest", "ocsvm")


def build(name: str, images: torch.Tensor, **overrides: object):
    """A method fitted on ``images`` (B, C, H, W)."""
    cls = get_method(name)
    method = cls(cls.make_config(**overrides), images.shape[1], tuple(images.shape[2:]))
    method.fit_closed_form(images)
    return method


def flat(images: torch.Tensor) -> np.ndarray:
    return images.reshape(len(images), -1).double().numpy()


def sklearn_scores(name: str, train: torch.Tensor, test: torch.Tensor, **kw: object) -> np.ndarray:
    """The reference: anomaly scores (higher = more anomalous) from scikit-learn itself."""
    x, t = flat(train), flat(test)
    if name == "pca":
        pca = PCA(n_components=0.9, svd_solver="full").fit(x)
        return ((t - pca.inverse_transform(pca.transform(t))) ** 2).sum(1)
    if name == "iforest":
        forest = IsolationForest(n_estimators=200, random_state=0, **kw).fit(x)
        return -forest.score_samples(t)
    pca = PCA(n_components=kw.get("components", 64), svd_solver="full").fit(x)
    svm = OneClassSVM(kernel="rbf", gamma="scale", nu=0.1).fit(pca.transform(x))
    return -svm.decision_function(pca.transform(t))


def random_images(n: int, seed: int, shape=(1, 8, 8)) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).random((n, *shape), dtype=np.float32))


def read_idx(name: str) -> np.ndarray:
    """A gzipped IDX file of the shared Fashion-MNIST copy (images N,28,28 or labels N)."""
    return read_idx_array(FMNIST / name)


@pytest.fixture(scope="module")
def fmnist() -> dict[str, np.ndarray]:
    if not (FMNIST / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"Fashion-MNIST not found at {FMNIST} (the shared benchmark data)")
    return {
        "train_x": read_idx("train-images-idx3-ubyte.gz"),
        "train_y": read_idx("train-labels-idx1-ubyte.gz"),
        "test_x": read_idx("t10k-images-idx3-ubyte.gz"),
        "test_y": read_idx("t10k-labels-idx1-ubyte.gz"),
    }


def as_float(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images[:, None].astype(np.float32) / 255.0)


# ---- parity on random data ------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_parity_random(name: str) -> None:
    train, test = random_images(400, 0), random_images(300, 1)
    kw = {"components": 20} if name == "ocsvm" else {}
    ours = build(name, train, **kw).score(test).image_score.numpy()
    ref = sklearn_scores(name, train, test, **kw)
    tol = 1e-5 if name == "ocsvm" else 1e-6
    np.testing.assert_allclose(ours, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize(
    ("n_train", "max_features", "max_samples"),
    [(100, 1.0, "auto"), (300, 0.25, "auto"), (300, 7, 64), (300, 1.0, 0.5), (1, 1.0, "auto")],
)
def test_iforest_parity_feature_and_sample_subsets(
    n_train: int, max_features: float, max_samples: object
) -> None:
    """Feature subsets (trees index a subset of pixels) and sample sizes, incl. one sample."""
    train, test = random_images(n_train, 2, (3, 4, 4)), random_images(200, 3, (3, 4, 4))
    kw = {"max_features": max_features, "max_samples": max_samples}
    ours = build("iforest", train, **kw).score(test).image_score.numpy()
    np.testing.assert_allclose(ours, sklearn_scores("iforest", train, test, **kw), atol=1e-6)


def test_average_path_length_matches_sklearn() -> None:
    from sklearn.ensemble._iforest import _average_path_length

    n = np.array([0, 1, 2, 3, 5, 17, 256, 10_000])
    ours = average_path_length(torch.from_numpy(n)).numpy()
    np.testing.assert_allclose(ours, _average_path_length(n), rtol=1e-12, atol=0)


# ---- parity on real data ----------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_parity_fashion_mnist(name: str, fmnist: dict[str, np.ndarray]) -> None:
    train = as_float(fmnist["train_x"][fmnist["train_y"] == 0][:600])
    test = as_float(fmnist["test_x"][:1000])
    ours = build(name, train).score(test).image_score.numpy()
    ref = sklearn_scores(name, train, test)
    tol = 1e-5 if name == "ocsvm" else 1e-6
    np.testing.assert_allclose(ours, ref, rtol=tol, atol=tol)


@pytest.mark.slow
def test_auroc_trouser_vs_others(fmnist: dict[str, np.ndarray]) -> None:
    """Trained on trousers, each baseline must rank other garments as more anomalous."""
    train = as_float(fmnist["train_x"][fmnist["train_y"] == 1][:600])
    keep = np.isin(fmnist["test_y"], [1, 0, 5, 7, 9])
    test = as_float(fmnist["test_x"][keep][:2000])
    anomalous = fmnist["test_y"][keep][:2000] != 1
    for name in NAMES:
        scores = build(name, train).score(test).image_score.numpy()
        auroc = roc_auc_score(anomalous, scores)
        assert auroc > 0.85, f"{name}: AUROC {auroc:.3f} on trouser vs others"


# ---- contract: shapes, saving, bad input ------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_safetensors_round_trip(name: str, tmp_path: Path) -> None:
    train, test = random_images(150, 4, (3, 5, 5)), random_images(40, 5, (3, 5, 5))
    kw = {"max_features": 0.5} if name == "iforest" else {}
    fitted = build(name, train, **kw)
    save_file(fitted.state_dict(), tmp_path / "model.safetensors")

    cls = get_method(name)
    fresh = cls(cls.make_config(**kw), 3, (5, 5))
    fresh.assign_state(load_file(tmp_path / "model.safetensors"))
    before, after = fitted.score(test), fresh.score(test)
    assert torch.equal(before.image_score, after.image_score)
    assert (after.anomaly_map is None) == (not cls.produces_maps)
    for key, value in before.extras.items():
        assert torch.equal(value, after.extras[key])


def test_pca_map_and_reconstruction() -> None:
    train, test = random_images(200, 6, (3, 6, 5)), random_images(10, 7, (3, 6, 5))
    out = build("pca", train).score(test)
    assert out.anomaly_map.shape == (10, 1, 6, 5)
    assert out.image_score.shape == (10,)
    rec = out.extras["reconstruction"]
    assert rec.shape == (10, 3, 6, 5) and rec.min() >= 0 and rec.max() <= 1
    sums = out.anomaly_map.double().sum((1, 2, 3))
    torch.testing.assert_close(sums, out.image_score, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_bad_input(name: str) -> None:
    cls = get_method(name)
    with pytest.raises(RuntimeError, match="not fitted"):
        cls(cls.make_config(), 1, (8, 8)).score(random_images(2, 0))
    method = build(name, random_images(100, 8), **({"components": 8} if name == "ocsvm" else {}))
    with pytest.raises(ValueError, match="expected images"):
        method.score(random_images(2, 0, (1, 8, 9)))
    bad = random_images(2, 0)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        method.score(bad)
    with pytest.raises(ValueError, match="float"):
        method.score((random_images(2, 0) * 255).to(torch.uint8))
