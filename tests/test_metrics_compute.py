"""The Metric protocol: registered metrics, their declared needs and units, deprecated aliases."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
from pydantic import ValidationError

from boneframe.interfaces import Metric, MetricInput
from boneframe.metrics import (
    BUILTIN_METRICS,
    PSNR,
    BoneVolumeFraction,
    Dice,
    EulerCharacteristic,
    TrabecularThickness,
    measure,
)
from boneframe.registry import Registry

ALL = ["betti0", "betti1", "betti2", "bmd", "bv_tv", "conn_d", "conn_d_bonej", "da", "dice",
       "euler", "mil_ratio", "otsu", "psnr", "tb_n", "tb_sp", "tb_sp_max", "tb_sp_sd", "tb_th",
       "tb_th_max", "tb_th_sd", "tv_mm3"]  # fmt: skip
UNITS = {"", "µm", "1/mm", "1/mm³", "mm³", "dB", "mg HA/cm³"}


def grey_bone(rng: np.random.Generator) -> np.ndarray:
    from scipy import ndimage

    return ndimage.gaussian_filter(rng.standard_normal((20, 18, 16)), 2)


def test_registered_metrics() -> None:
    registry = Registry()
    assert registry.names("metric") == ALL
    for cls in BUILTIN_METRICS:
        assert cls.description and "\n" not in cls.description
        assert cls.unit in UNITS, cls.name
        with pytest.raises(ValidationError):
            cls(unknown=1)  # parameters are validated, extra ones refused
    assert {c.name for c in BUILTIN_METRICS if c.needs_reference} == {"psnr", "dice"}
    # every metric but BoneJ's edge-corrected Conn.D (the box's faces) measures inside a mask
    assert {c.name for c in BUILTIN_METRICS if not c.uses_mask} == {"conn_d_bonej"}
    in_memory = {c.name for c in BUILTIN_METRICS if not c.has_block_form()}
    assert in_memory == {"da", "mil_ratio"}  # every other one runs chunk by chunk


def test_a_metric_needs_a_block_form_or_a_call() -> None:
    with pytest.raises(TypeError, match="neither"):

        class Nothing(Metric):  # noqa: F841 (defining it is the test)
            name: ClassVar[str] = "nothing"

    class Half(Metric):
        """Half the bone voxels: a block form with the default combine (a sum)."""

        name: ClassVar[str] = "half"

        def block(self, b):
            return np.count_nonzero(b.bone) / 2

    assert Half.has_block_form() and Half().combine(1.5, 2.0) == 3.5


def test_metrics_are_callable_on_a_volume_in_memory(rng: np.random.Generator) -> None:
    # a block form run on MetricInput (the whole volume as one block) gives measure's value
    reference = grey_bone(rng)
    estimate = reference + 0.1 * rng.standard_normal(reference.shape)
    m = measure(
        estimate, reference, voxel_size=50.0, names=["psnr", "dice", "bv_tv", "euler", "tb_th"]
    )
    data = MetricInput(
        estimate, reference, voxel_size=(50.0,) * 3, threshold=m["threshold"],
        reference_threshold=m["reference_threshold"],
    )  # fmt: skip
    assert PSNR()(data) == m["psnr"] and Dice()(data) == m["dice"]
    assert BoneVolumeFraction()(data) == m["bv_tv"] and EulerCharacteristic()(data) == m["euler"]
    assert TrabecularThickness()(data) == pytest.approx(m["tb_th"], rel=1e-12)
    assert len(data.values) == 2  # χ and the bone's thickness, computed once and kept
