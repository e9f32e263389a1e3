"""Parameters of the rigid registration and of the resampling that follows it.

One pydantic model: it validates the API's keywords, the pipeline spec's
``registration.params`` and the CLI's options, and gives their JSON Schema.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["RegistrationParams"]


class RegistrationParams(BaseModel):
    """Parameters of :func:`~boneframe.registration.register` and of the resampling after it.

    The defaults reached < 0.1° and < 10 µm on synthetic and real trabecular
    structure with a non-linear grey-level map, noise and shading, from starts
    up to 15° and 600 µm away (see ``tests/test_registration_accuracy.py``).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    init: str = Field(
        "geometry",
        description="starting transform: 'geometry' (image centres), 'moments' "
        "(intensity centroids) or the path of an ITK .tfm file (fixed -> moving)",
    )
    moving_fwhm_um: float = Field(
        140.0,
        ge=0,
        description="FWHM (µm) of the Gaussian that brings the micro-CT to the "
        "HR-pQCT's resolution before the optimisation (0: none)",
    )
    highpass_sigma_mm: float = Field(
        0.5,
        ge=0,
        description="σ (mm) of the Gaussian subtracted from both images to remove "
        "shading (0: no high-pass)",
    )
    bins: int = Field(32, ge=4, le=512, description="histogram bins of Mattes mutual information")
    sampling: float = Field(
        0.25, gt=0, le=1, description="share of the fixed voxels sampled (random) per level"
    )
    min_samples: int = Field(
        100_000,
        ge=0,
        description="lower bound on the metric's samples per level (all voxels when a "
        "level has fewer): with too few samples MI is too noisy on small scans",
    )
    max_samples: int = Field(
        1_000_000, ge=1000, description="upper bound on the metric's samples per level"
    )
    seed: int = Field(
        0,
        ge=0,
        lt=2**31 - 1,
        description="seed of the random sampling (the same seed gives the same transform; "
        "ITK reads 0 as 'clock', so ITK is given seed + 1)",
    )
    threads: int = Field(
        1,
        ge=0,
        description="threads of the optimisation; 1 (default) makes the transform "
        "bitwise reproducible, 0 uses all cores (results then differ in the last bits "
        "from run to run, ~1e-13 µm)",
    )
    learning_rate: float = Field(
        0.1,
        gt=0,
        description="first step of the gradient descent, in mm of the largest voxel "
        "displacement (physical-shift scales); larger steps jump across trabeculae",
    )
    min_step: float = Field(1e-4, gt=0, description="step (mm) at which a level stops")
    relaxation: float = Field(
        0.5, gt=0, lt=1, description="step reduction factor when the gradient turns back"
    )
    iterations: int = Field(200, ge=1, description="most iterations per resolution level")
    shrink_factors: tuple[int, ...] = Field(
        (2, 1, 1), description="image shrink factor per resolution level (coarse to fine)"
    )
    smoothing_sigmas_mm: tuple[float, ...] = Field(
        (0.3, 0.15, 0.0), description="Gaussian σ (mm) per resolution level (coarse to fine)"
    )
    p: int = Field(2, ge=1, le=8, description="fine-grid factor: output spacing = HR-pQCT / p")
    pad: int = Field(0, ge=0, description="HR-pQCT voxels added on every side of the output grid")
    interp: Literal["linear", "bspline"] = Field(
        "linear", description="interpolation of the micro-CT onto the fine grid"
    )
    min_overlap: float = Field(
        0.9,
        ge=0,
        le=1,
        description="least share of HR-pQCT voxels that must map inside the micro-CT",
    )

    @model_validator(mode="after")
    def _check_samples(self) -> RegistrationParams:
        if self.min_samples > self.max_samples:
            raise ValueError(
                f"min_samples ({self.min_samples}) exceeds max_samples ({self.max_samples})"
            )
        return self

    @field_validator("init")
    @classmethod
    def _check_init(cls, v: str) -> str:
        if v not in ("geometry", "moments") and not v.lower().endswith((".tfm", ".txt", ".h5")):
            raise ValueError(f"init must be 'geometry', 'moments' or a .tfm file, got {v!r}")
        return v

    @field_validator("shrink_factors")
    @classmethod
    def _check_shrink(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or min(v) < 1:
            raise ValueError("shrink factors must be at least one integer >= 1")
        return v

    @field_validator("smoothing_sigmas_mm")
    @classmethod
    def _check_sigmas(cls, v: tuple[float, ...], info: Any) -> tuple[float, ...]:
        shrink = info.data.get("shrink_factors")
        if shrink is not None and len(v) != len(shrink):
            raise ValueError(
                f"one smoothing sigma per level is needed: {len(shrink)} shrink factors, "
                f"{len(v)} sigmas"
            )
        if min(v, default=0) < 0:
            raise ValueError("smoothing sigmas must be >= 0")
        return v
