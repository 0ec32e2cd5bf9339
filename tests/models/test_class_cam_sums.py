"""``class_cam`` chunk sums (models/quality_scan.py) against a per-image NumPy pass: each
image's heatmap goes to its label's class, or to its predicted class when it has no label
(-1); the confusion matrix counts labelled images only."""

from __future__ import annotations

import numpy as np

from models.cam import make_cam
from models.quality_scan import class_cam_sums
from models.shapes_data import generate_shapes


def test_sums_follow_labels_else_predictions(shapes_model) -> None:
    data = generate_shapes(10, seed=11)
    images = np.asarray(data.images, np.float32)
    true = np.asarray(data.labels, np.int64)
    labels = true.copy()
    labels[[1, 4, 5, 8]] = -1  # unlabelled: their predicted class counts
    classes = int(shapes_model.output_shape[-1])
    cam = make_cam("gradcam", shapes_model, "conv4")

    sums = class_cam_sums(cam, images, labels, classes)

    predicted = np.argmax(shapes_model.predict(images, verbose=0), axis=1)
    target = np.where(labels >= 0, labels, predicted)
    want_sum = np.zeros((classes, 64, 64))
    want_confusion = np.zeros((classes, classes), np.int64)
    for i in range(len(images)):  # one image at a time, its target class named
        heat = cam(images[i:i + 1], class_index=[int(target[i])]).heatmaps[0]
        want_sum[target[i]] += heat
        if labels[i] >= 0:
            want_confusion[labels[i], predicted[i]] += 1
    np.testing.assert_array_equal(sums["count"], np.bincount(target, minlength=classes))
    np.testing.assert_allclose(sums["cam_sum"], want_sum, atol=1e-4)
    np.testing.assert_array_equal(sums["confusion"], want_confusion)
    assert int(sums["labelled"]) == 6 and int(sums["confusion"].sum()) == 6


def test_no_images_give_zero_sums(shapes_model) -> None:
    classes = int(shapes_model.output_shape[-1])
    sums = class_cam_sums(make_cam("gradcam", shapes_model, "conv4"),
                          np.zeros((0, 64, 64, 3), np.float32), np.zeros(0, np.int64), classes)
    assert sums["cam_sum"].shape == (classes, 64, 64) and not sums["cam_sum"].any()
    assert not sums["count"].any() and int(sums["labelled"]) == 0
