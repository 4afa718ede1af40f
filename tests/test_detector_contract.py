"""The Detector facade as a scikit-learn estimator, over every registered method.

Every method (a new one the moment it registers) is fitted through ``Detector`` on real
images every machine has (scikit-learn's bundled digits, upsampled to the method's smallest
size), saved, loaded, and must give the very same scores, maps, threshold and decisions.
``get_params``/``set_params``/``clone`` follow scikit-learn's contract. Nothing here skips:
no data set needs downloading. Training is a few optimiser steps (one epoch per stage), so
the models are untrained; these tests check plumbing, not detection quality.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from sklearn.base import BaseEstimator, clone

from reconad.detector import Detector, NotFittedError
from reconad.inputs import round_up
from reconad.methods import get_method, list_methods
from tests.conftest import digit_images

METHODS = list_methods()
#: any stage length the hyper-parameters below do not set: times this (at least one epoch)
TINY_SCALE = 1e-3


def _side(name: str) -> int:
    """The method's smallest image side that is at least 16 (8x8 digits upsampled to it)."""
    cls = get_method(name)
    return round_up(16, cls.size_multiple, cls.min_size)


def _few_steps(name: str) -> dict[str, int]:
    """Every stage one epoch (or its step count 1): set by hand, an epoch is one pass over
    the 18 training images, with no floor of optimiser steps (see ``plan_stage``)."""
    fields = dataclasses.fields(get_method(name).Config)
    return {f.name: 1 for f in fields if f.name.endswith("epochs") or f.name == "steps"}


def _detector(name: str, **params) -> Detector:
    return Detector(
        name,
        image_size=_side(name),
        val_fraction=0.25,  # 6 held-out normals: what threshold and standardised scores need
        epochs_scale=TINY_SCALE,
        progress=False,
        hparams=_few_steps(name),
        **params,
    )


def _data(side: int) -> tuple[np.ndarray, np.ndarray]:
    """24 training zeros; a test set of 6 other zeros and 6 ones."""
    zeros = digit_images(side, 0)
    return zeros[:24], np.concatenate([zeros[24:30], digit_images(side, 1)[:6]])


def _same_params(a: BaseEstimator, b: BaseEstimator) -> None:
    pa, pb = a.get_params(deep=True), b.get_params(deep=True)
    assert pa.keys() == pb.keys()
    for k in pa:
        assert pa[k] == pb[k], k


def test_every_registered_method_is_covered():
    assert len(METHODS) >= 4 and {"ae", "draem"} <= set(METHODS)


def test_parameters_are_the_constructor_signature():
    det = Detector("ae", hparams={"epochs": 2}, score_views="multiview", seed=3)
    params = det.get_params()
    assert params == det.get_params(deep=False)  # no nested estimators
    assert params["method"] == "ae" and params["score_views"] == "multiview"
    assert params["hparams"] == {"epochs": 2} and params["seed"] == 3
    assert "score" not in params  # the name of scikit-learn's score() method stays free
    assert Detector(**params).get_params() == params
    assert det.set_params(seed=4, hparams={"epochs": 1}) is det
    assert det.seed == 4 and det.hparams == {"epochs": 1}
    with pytest.raises(ValueError, match="Invalid parameter"):
        det.set_params(epochs=1)
    assert repr(Detector()) == "Detector()" and "score_views='multiview'" in repr(det)


def test_keywords_outside_the_signature_say_where_they_go():
    with pytest.raises(TypeError, match=r"hparams=\{'epochs': 1, 'batch_size': 8\}"):
        Detector("ae", epochs=1, batch_size=8)
    with pytest.raises(TypeError, match=r"score_views='multiview'"):
        Detector("ae", score="multiview")


@pytest.mark.filterwarnings("ignore:.*undertrained:UserWarning")
@pytest.mark.parametrize("name", METHODS)
def test_fit_save_load_gives_identical_scores(name, tmp_path):
    train, test = _data(_side(name))
    det = _detector(name, seed=1)
    unfitted = clone(det)
    assert unfitted is not det and not hasattr(unfitted, "method_")
    _same_params(unfitted, det)

    assert det.fit(train) is det
    fitted_clone = clone(det)  # unfitted, with the same parameters
    assert not hasattr(fitted_clone, "method_")
    _same_params(fitted_clone, det)
    with pytest.raises(NotFittedError):
        fitted_clone.score_samples(test)

    scores = det.score_samples(test)
    assert scores.shape == (len(test),) and np.isfinite(scores).all()
    det.save(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["scoring"]["score"] == det.score_views  # the key older models were saved with
    back = Detector.load(tmp_path / "m")

    np.testing.assert_array_equal(back.score_samples(test), scores)
    assert back.threshold_ == det.threshold_
    np.testing.assert_array_equal(back.val_scores_, det.val_scores_)
    np.testing.assert_array_equal(back.predict(test), scores > det.threshold_)
    np.testing.assert_array_equal(back.p_values_of(scores), det.p_values_of(scores))
    if det.method_.produces_maps:
        maps = det.anomaly_maps(test)
        assert maps.shape == (len(test), *det.input_shape_[1:])
        np.testing.assert_allclose(back.anomaly_maps(test), maps, rtol=0, atol=1e-6)
    else:
        with pytest.raises(ValueError, match="no maps"):
            back.anomaly_maps(test)

    # what shaped the model and its score comes back as parameters; the method's full
    # hyper-parameters (preset resolved) are in hparams, so a clone fits the same network
    loaded = back.get_params()
    for key in ("method", "seed", "target_fpr", "epochs_scale", "score_views", "difficulty",
                "difficulty_mode", "normalize", "patch", "image_score"):  # fmt: skip
        assert loaded[key] == det.get_params()[key], key
    assert get_method(name).make_config(back.preset, **back.hparams) == det.method_.config
    _same_params(clone(back), back)
