"""Issue 26: zoo models whose output depends on the input, natural reference/calibration inputs.

Fast: the natural image sets (shape, determinism, distinct sets per user) and which inputs get them.
Slow: mobilenet_v1, mobilenet_v2 and resnet18 built fresh (one shared build dir per session, as in
test_models.py) answer the 8 reference inputs with >= 6 distinct top-1 classes and far-apart
outputs, and a runtime that ignored its input (every sample answered with the mean output, or with
input 0's) fails the int8 threshold through the real agreement.compare.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from lab.core.records import InputSpec
from lab.models import agreement, natural
from lab.models.quantize import default_calibration

IMAGE = InputSpec(name="x", shape=(-1, 3, 224, 224), dtype="float32", run_shape=(1, 3, 224, 224))


def _art(*inputs: InputSpec, tags: dict | None = None):
    return SimpleNamespace(inputs=list(inputs), tags=tags or {})


def test_natural_images_are_seeded_distinct_and_normalised():
    a = natural.images([1, 3, 64, 48], 6, seed=5)
    assert a.shape == (6, 1, 3, 64, 48) and a.dtype == np.float32
    assert np.array_equal(a, natural.images([1, 3, 64, 48], 6, seed=5))  # same on every machine
    flat = a.reshape(6, -1)
    assert min(np.abs(flat[i] - flat[j]).mean() for i in range(6) for j in range(i)) > 0.05
    assert -1.0 < float(a.mean()) < 1.0 and 0.3 < float(a.std()) < 3.0  # ImageNet-normalised
    gray = natural.images([2, 1, 32, 32], 2, seed=5)
    assert gray.shape == (2, 2, 1, 32, 32)


def test_which_inputs_are_images():
    assert natural.is_image((1, 3, 224, 224), "float32")
    assert natural.is_image((1, 1, 32, 32), "float32")
    assert not natural.is_image((1, 1, 8, 8), "float32")  # digits: its own data set
    assert not natural.is_image((1, 128), "int64") and not natural.is_image((1, 64), "float32")
    assert not natural.is_image((1, 3, 224, 224), "int8")


def test_reference_and_calibration_are_different_natural_images():
    ref, source = agreement.reference_inputs(_art(IMAGE))
    assert source.startswith("natural images") and ref["x"].shape == (8, 1, 3, 224, 224)
    calib, csource = default_calibration(_art(IMAGE), 4)
    assert csource.startswith("natural images") and calib["x"].shape == (4, 1, 3, 224, 224)
    assert not any(np.array_equal(c, r) for c in calib["x"] for r in ref["x"])


def test_non_image_inputs_keep_seeded_random_data():
    tokens = InputSpec(name="tokens", shape=(-1, -1), dtype="int64", run_shape=(1, 16))
    ref, source = agreement.reference_inputs(_art(tokens))
    assert source.startswith("seeded random") and ref["tokens"].dtype == np.int64
    _, csource = default_calibration(_art(InputSpec("x", (-1, 64), "float32", (1, 64))), 2)
    assert csource.startswith("seeded random")


# ---------------------------------------------------------------------- slow: real builds
@pytest.fixture(scope="session")
def zoo_root(tmp_path_factory) -> Path:
    """The build dir test_models.py shares (the build cache makes a second build free)."""
    return tmp_path_factory.getbasetemp() / "hwlab-zoo"


def _top1_and_cosines(outputs) -> tuple[int, float]:
    out = np.asarray(outputs[0], dtype="float64").reshape(agreement.REFERENCE_SET_SIZE, -1)
    unit = out / np.linalg.norm(out, axis=1, keepdims=True)
    cos = unit @ unit.T
    return len(set(out.argmax(axis=1))), float(np.median(cos[np.triu_indices(len(out), 1)]))


@pytest.mark.slow
@pytest.mark.parametrize("model_id", ["mobilenet_v1", "mobilenet_v2", "resnet18"])
def test_zoo_model_output_depends_on_its_input(zoo_root, model_id):
    from lab.models.build import build
    art = build(model_id, zoo_root)
    ref = agreement.load_reference(art)
    assert ref["meta"]["source"].startswith("natural images")
    outputs = ref["outputs"]
    spread = float(np.asarray(outputs[0]).std())
    assert 1e-2 < spread < 1e3, spread  # healthy logits, not 1e-16
    distinct, median_cos = _top1_and_cosines(outputs)
    assert distinct >= 6, distinct
    assert median_cos < 0.9, median_cos
    n = agreement.REFERENCE_SET_SIZE
    mean = agreement.compact_all([np.asarray(o, dtype="float64").mean(axis=0, keepdims=True)
                                  for o in outputs])[0]
    compact = ref["compact"]
    for wrong in ([mean] * n, [compact[0]] * n):
        a = agreement.compare(compact, wrong, "int8")
        assert not a.passed and a.agree_cosine_min < agreement.THRESHOLDS["int8"]["cosine"], a
