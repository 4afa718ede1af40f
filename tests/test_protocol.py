"""The one-class protocol: splits, held-out normals, class selections."""

from __future__ import annotations

import numpy as np
import pytest

from reconad.data.imageset import DataError, ImageSet
from reconad.data.protocol import holdout_split, one_class_split, parse_classes


def _set(labels) -> ImageSet:
    labels = np.asarray(labels)
    imgs = np.arange(len(labels), dtype=np.uint8).reshape(-1, 1, 1, 1).repeat(4, 2).repeat(4, 3)
    return ImageSet(imgs, labels, [str(i) for i in range(10)])


def test_one_class_split_uses_only_the_normal_class_for_training():
    train = _set([0, 1, 2] * 20)
    test = _set([0, 1, 2, 0])
    s = one_class_split(train, test, 1, val_fraction=0.1, seed=0)
    assert (s.train.labels == 1).all() and (s.val.labels == 1).all()
    assert len(s.train) == 18 and len(s.val) == 2
    # Train and held-out normals are disjoint (images carry their index as pixel value).
    assert not set(s.train.images[:, 0, 0, 0]) & set(s.val.images[:, 0, 0, 0])
    np.testing.assert_array_equal(s.test_anomalous, [True, False, True, True])
    assert len(s.test) == 4  # the whole test split


def test_several_normal_classes():
    s = one_class_split(_set([0, 1, 2] * 10), _set([0, 1, 2]), [0, 2], val_fraction=0.0)
    np.testing.assert_array_equal(s.test_anomalous, [False, True, False])
    assert len(s.train) == 20 and len(s.val) == 0


def test_holdout_is_seeded():
    data = _set(list(range(10)) * 5)
    a, _ = holdout_split(data, 0.2, seed=1)
    b, _ = holdout_split(data, 0.2, seed=1)
    c, _ = holdout_split(data, 0.2, seed=2)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)


@pytest.mark.parametrize("fraction", [-0.1, 1.0])
def test_holdout_fraction_must_leave_training_images(fraction):
    with pytest.raises(DataError, match="fraction"):
        holdout_split(_set([0] * 10), fraction)


def test_single_image_cannot_be_split():
    with pytest.raises(DataError, match="nothing to train"):
        holdout_split(_set([0]), 0.9)


def test_protocol_errors():
    with pytest.raises(DataError, match="no training images"):
        one_class_split(_set([0, 1]), _set([0, 1]), 5)
    with pytest.raises(DataError, match="no anomalous"):
        one_class_split(_set([0, 1]), _set([0, 0]), 0)
    with pytest.raises(DataError, match="no normal"):
        one_class_split(_set([0, 1]), _set([1, 1]), 0)
    with pytest.raises(DataError, match="labelled"):
        one_class_split(ImageSet(np.zeros((2, 1, 4, 4), np.uint8)), _set([0]), 0)


def test_parse_classes():
    assert parse_classes("0-9", 10) == list(range(10))
    assert parse_classes("all", 3) == [0, 1, 2]
    assert parse_classes("0,2,5-7", 10) == [0, 2, 5, 6, 7]
    with pytest.raises(ValueError, match="outside"):
        parse_classes("10", 10)
    with pytest.raises(ValueError, match="cannot read"):
        parse_classes("a-b", 10)
