"""Classical baselines on raw pixels: PCA reconstruction error, Isolation Forest, OC-SVM.

The contract of all three (they share the input handling of ``_Classical``, and have no
network: what they learn is plain buffers); the card is ``README.md``.

Each is fitted with scikit-learn inside ``fit_closed_form`` and the estimator is then thrown
away: what it learned is copied into buffers (float64, so scores match scikit-learn to
rounding), and ``score`` recomputes scikit-learn's numbers in torch from those buffers. So the
state dict holds the whole model, safetensors can store it (no pickles), and scoring needs
neither scikit-learn nor a particular version of it.

Images are flattened channel-major to ``C*H*W`` pixel vectors in [0, 1]. Image scores are
float64, higher = more anomalous.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from reconad.methods.base import Method, ScoreOutput, register

_EULER_GAMMA = 0.5772156649015329  # np.euler_gamma, as scikit-learn's iforest uses

# Per-node arrays of a fitted isolation tree (sklearn.tree._tree.Tree), with their dtype.
_NODE_ARRAYS = {
    "children_left": np.int64,  # index local to its tree; -1 at leaves
    "children_right": np.int64,
    "feature": np.int64,  # pixel index into the full flattened image; -2 at leaves
    "threshold": np.float64,  # go left when x[feature] <= threshold
    "n_node_samples": np.int64,  # training samples reaching the node
    "node_depth": np.int64,  # root = 1, as Tree.compute_node_depths
}


def _tensor(array: np.ndarray, dtype: type = np.float64) -> Tensor:
    """A C-contiguous copy (safetensors refuses strided tensors; sklearn arrays may be F-order)."""
    return torch.from_numpy(np.ascontiguousarray(array, dtype=dtype))


class _Classical(Method):
    """Shared input handling: flatten, validate, and refuse to score before fitting."""

    produces_maps = False

    def _empty(self, name: str, dtype: torch.dtype = torch.float64) -> None:
        """Register an empty buffer; ``fit_closed_form`` or ``assign_state`` fills it."""
        self.register_buffer(name, torch.empty(0, dtype=dtype))

    def _flat(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` float images in [0, 1] -> ``(B, C*H*W)`` float64.

        Raises:
            ValueError: for non-float input, a shape the model was not built for, or
                non-finite pixels (a NaN would silently take one branch of every split).
        """
        expected = (self.channels, *self.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"{self.name}: expected images (B, {expected}); got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"{self.name}: expected float images in [0, 1]; got {x.dtype}")
        if not torch.isfinite(x).all():
            raise ValueError(f"{self.name}: images contain NaN or infinite pixels")
        return x.reshape(x.shape[0], -1).double()

    def _train_array(self, images: Tensor) -> np.ndarray:
        """Training images as a float64 ``(N, C*H*W)`` array for scikit-learn."""
        return self._flat(images).cpu().numpy()

    def _check_fitted(self, buffer: Tensor) -> None:
        if buffer.numel() == 0:
            raise RuntimeError(f"{self.name} is not fitted: call fit_closed_form first")


@register
class PCAReconstruction(_Classical):
    """PCA keeping a share of the variance; anomaly = squared reconstruction error."""

    name = "pca"
    summary = "PCA on raw pixels (90% variance); score = squared reconstruction error"
    provenance = "classical baseline (scikit-learn PCA); defaults as measured in METHODS.md"
    produces_maps = True

    @dataclass
    class Config:
        """Hyper-parameters.

        Attributes:
            variance: share of the training variance the kept components explain.
        """

        variance: float = 0.9

    def __init__(self, config: Config, channels: int, image_size: tuple[int, int]) -> None:
        super().__init__(config, channels, image_size)
        self._empty("mean")  # (D,)
        self._empty("components")  # (K, D), orthonormal rows

    def fit_closed_form(self, images: Tensor) -> None:
        """Fit PCA (full SVD, so the result is deterministic) on the training pixels."""
        from sklearn.decomposition import PCA

        pca = PCA(n_components=self.config.variance, svd_solver="full")
        pca.fit(self._train_array(images))
        self.mean = _tensor(pca.mean_)
        self.components = _tensor(pca.components_)

    @torch.no_grad()
    def score(self, x: Tensor) -> ScoreOutput:
        """Sum of squared pixel errors of the projection onto the kept components.

        The map and score use the unclipped reconstruction (as scikit-learn's
        ``inverse_transform``), so the map sums to the score; the reconstruction shown in
        ``extras`` is clipped to [0, 1] for display.
        """
        flat, rec = self._project(x)
        err = (flat - rec).square()
        shape = (x.shape[0], self.channels, *self.image_size)
        anomaly_map = err.reshape(shape).sum(1, keepdim=True).float()
        reconstruction = rec.reshape(shape).clamp(0.0, 1.0).float()
        return ScoreOutput(err.sum(1), anomaly_map, {"reconstruction": reconstruction})

    def _project(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The flattened pixels and their (unclipped) projection onto the kept components."""
        self._check_fitted(self.components)
        flat = self._flat(x).to(self.mean.device)
        return flat, (flat - self.mean) @ self.components.T @ self.components + self.mean

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """The projection as an image, clipped to [0, 1] (for multi-view scoring)."""
        rec = self._project(x)[1].reshape(x.shape[0], self.channels, *self.image_size)
        return rec.clamp(0.0, 1.0).float()


def average_path_length(n: Tensor) -> Tensor:
    """Average path length c(n) of an unsuccessful search in a BST of ``n`` nodes.

    The same function as scikit-learn's ``_average_path_length``: 0 for n <= 1, 1 for n = 2,
    else ``2 (ln(n - 1) + Euler's gamma) - 2 (n - 1) / n``. It estimates how much deeper an
    isolation tree would have grown below a leaf holding ``n`` training samples.
    """
    n = n.double()
    value = 2.0 * (torch.log(n - 1.0) + _EULER_GAMMA) - 2.0 * (n - 1.0) / n
    value = torch.where(n == 2, torch.ones_like(n), value)
    return torch.where(n <= 1, torch.zeros_like(n), value)


@register
class IsolationForestMethod(_Classical):
    """Isolation Forest whose trees are stored as flat node arrays and walked in torch."""

    name = "iforest"
    summary = "Isolation Forest on raw pixels (200 trees); score = anomaly score of Liu et al."
    provenance = "classical baseline (scikit-learn IsolationForest); defaults as in METHODS.md"

    @dataclass
    class Config:
        """Hyper-parameters (scikit-learn's names and defaults, except the tree count).

        Attributes:
            n_estimators: number of trees.
            max_samples: samples drawn per tree; "auto" = min(256, N).
            max_features: share (float) or number (int) of pixels each tree may split on.
            random_state: the forest's seed (fixed, as in our reference measurement, so
                the forest does not change with the Detector's seed).
        """

        n_estimators: int = 200
        max_samples: int | float | str = "auto"
        max_features: int | float = 1.0
        random_state: int = 0

    def __init__(self, config: Config, channels: int, image_size: tuple[int, int]) -> None:
        super().__init__(config, channels, image_size)
        # Nodes of all trees, concatenated; tree t owns rows tree_offsets[t]:tree_offsets[t+1].
        for key, dtype in _NODE_ARRAYS.items():
            self._empty(key, torch.float64 if dtype is np.float64 else torch.int64)
        self._empty("tree_offsets", torch.int64)  # (T + 1,)
        self._empty("max_samples", torch.int64)  # (1,) samples per tree, for c(max_samples)

    def fit_closed_form(self, images: Tensor) -> None:
        """Grow the forest with scikit-learn and copy every tree's arrays into buffers."""
        from sklearn.ensemble import IsolationForest

        cfg = self.config
        forest = IsolationForest(
            n_estimators=cfg.n_estimators,
            max_samples=cfg.max_samples,
            max_features=cfg.max_features,
            random_state=cfg.random_state,
        ).fit(self._train_array(images).astype(np.float32))
        # scikit-learn trains (and scores) each tree on X[:, features] only when the forest
        # subsamples features; otherwise on X itself, whatever estimators_features_ holds.
        subsample = forest._max_features != forest.n_features_in_
        parts: dict[str, list[np.ndarray]] = {key: [] for key in _NODE_ARRAYS}
        offsets = [0]
        for est, features in zip(forest.estimators_, forest.estimators_features_, strict=True):
            tree = est.tree_
            feature = tree.feature.astype(np.int64)
            if subsample:
                split = feature >= 0
                feature[split] = np.asarray(features, dtype=np.int64)[feature[split]]
            parts["children_left"].append(tree.children_left)
            parts["children_right"].append(tree.children_right)
            parts["feature"].append(feature)
            parts["threshold"].append(tree.threshold)
            parts["n_node_samples"].append(tree.n_node_samples)
            parts["node_depth"].append(tree.compute_node_depths())
            offsets.append(offsets[-1] + tree.node_count)
        for key, arrays in parts.items():
            setattr(self, key, _tensor(np.concatenate(arrays), _NODE_ARRAYS[key]))
        self.tree_offsets = torch.tensor(offsets, dtype=torch.int64)
        self.max_samples = torch.tensor([forest.max_samples_], dtype=torch.int64)

    @torch.no_grad()
    def score(self, x: Tensor) -> ScoreOutput:
        """``-IsolationForest.score_samples``: ``2 ** (-mean path length / c(max_samples))``.

        All samples descend all trees at once, one level per step. Pixels are rounded to
        float32 first, as scikit-learn validates its input to float32 before comparing with
        the float64 thresholds.
        """
        self._check_fitted(self.tree_offsets)
        flat = self._flat(x).to(self.threshold.device).float().double()
        n_nodes = self.threshold.shape[0]
        start = self.tree_offsets[:-1]
        n_trees = start.shape[0]
        tree_of_node = torch.repeat_interleave(  # nodes per tree (not diff(): ONNX has none)
            torch.arange(n_trees, device=start.device), self.tree_offsets[1:] - start
        )
        base = start[tree_of_node]
        leaf = self.children_left < 0
        own = torch.arange(n_nodes, device=base.device)
        left = torch.where(leaf, own, self.children_left + base)  # leaves point to themselves
        right = torch.where(leaf, own, self.children_right + base)
        feature = torch.where(leaf, torch.zeros_like(self.feature), self.feature)
        # path length ending at each node: edges from the root + c(samples left unsplit)
        path = (self.node_depth.double() + average_path_length(self.n_node_samples)) - 1.0

        node = start.expand(flat.shape[0], n_trees)
        for _ in range(int(self.node_depth.max()) - 1):
            value = flat.gather(1, feature[node])
            node = torch.where(value <= self.threshold[node], left[node], right[node])
        depths = path[node].sum(1)
        denominator = n_trees * average_path_length(self.max_samples.double())[0]
        if denominator == 0:  # one training sample: scikit-learn sets depth/denominator to 1
            return ScoreOutput(torch.full_like(depths, 0.5))
        return ScoreOutput(torch.pow(2.0, -depths / denominator))


@register
class OneClassSVMMethod(_Classical):
    """RBF One-Class SVM on the leading PCA components of the pixels."""

    name = "ocsvm"
    signed_score = True  # minus a decision function
    summary = "One-Class SVM (RBF, nu=0.1) on 64 PCA components of raw pixels"
    provenance = "classical baseline (scikit-learn PCA + OneClassSVM); defaults as in METHODS.md"

    @dataclass
    class Config:
        """Hyper-parameters.

        Attributes:
            components: PCA components the SVM sees (fewer if the data has fewer).
            nu: upper bound on the share of training outliers, lower bound on support vectors.
            gamma: RBF width: "scale" = 1 / (components * var(projections)), "auto" =
                1 / components, or a number. Resolved to a number at fit time.
        """

        components: int = 64
        nu: float = 0.1
        gamma: str | float = "scale"

    def __init__(self, config: Config, channels: int, image_size: tuple[int, int]) -> None:
        super().__init__(config, channels, image_size)
        self._empty("pca_mean")  # (D,)
        self._empty("pca_components")  # (K, D)
        self._empty("support_vectors")  # (S, K)
        self._empty("dual_coef")  # (S,)
        self._empty("intercept")  # (1,) scikit-learn's intercept_ (= -rho = -offset_)
        self._empty("gamma")  # (1,)

    def fit_closed_form(self, images: Tensor) -> None:
        """Fit PCA on the training pixels, then the One-Class SVM on their projections."""
        from sklearn.decomposition import PCA
        from sklearn.svm import OneClassSVM

        cfg = self.config
        pixels = self._train_array(images)
        k = min(cfg.components, *pixels.shape)
        pca = PCA(n_components=k, svd_solver="full").fit(pixels)
        z = pca.transform(pixels)
        gamma = resolve_gamma(cfg.gamma, z)
        svm = OneClassSVM(kernel="rbf", gamma=gamma, nu=cfg.nu).fit(z)
        self.pca_mean = _tensor(pca.mean_)
        self.pca_components = _tensor(pca.components_)
        self.support_vectors = _tensor(svm.support_vectors_)
        self.dual_coef = _tensor(svm.dual_coef_[0])
        self.intercept = _tensor(svm.intercept_)
        self.gamma = torch.tensor([gamma], dtype=torch.float64)

    @torch.no_grad()
    def score(self, x: Tensor) -> ScoreOutput:
        """``-OneClassSVM.decision_function``, i.e. ``-(sum_i a_i exp(-g |s_i - z|^2) + b)``."""
        self._check_fitted(self.support_vectors)
        flat = self._flat(x).to(self.pca_mean.device)
        z = (flat - self.pca_mean) @ self.pca_components.T
        sv = self.support_vectors
        sq = z.square().sum(1, keepdim=True) + sv.square().sum(1) - 2.0 * z @ sv.T
        kernel = torch.exp(-self.gamma * sq.clamp_min(0.0))
        return ScoreOutput(-(kernel @ self.dual_coef + self.intercept))


def resolve_gamma(gamma: str | float, z: np.ndarray) -> float:
    """The numeric RBF gamma scikit-learn's SVMs derive from ``gamma`` and the data ``z``.

    Raises:
        ValueError: for a string other than "scale" or "auto".
    """
    if gamma == "scale":
        var = float(np.asarray(z, dtype=np.float64).var())
        return 1.0 / (z.shape[1] * var) if var != 0 else 1.0
    if gamma == "auto":
        return 1.0 / z.shape[1]
    if isinstance(gamma, str):
        raise ValueError(f"gamma must be 'scale', 'auto' or a number; got {gamma!r}")
    return float(gamma)
