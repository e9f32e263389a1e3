"""Parameters of the dual-threshold contouring, with the defaults' sources.

Sources named in the descriptions:

- *Buie 2007*: Buie HR, Campbell GM, Klinck RJ, MacNeil JA, Boyd SK. Automatic
  segmentation of cortical and trabecular compartments based on a dual threshold
  technique for in vivo micro-CT bone analysis. Bone 41 (2007) 505–515. The
  method: a periosteal mask from a low threshold closed over the cortex's gaps,
  an endosteal one from a higher (cortical) threshold, cleaned by opening and
  closing.
- *IPL/ORMIR_XCT*: the parameter values of Scanco's IPL autocontour scripts as
  ORMIR_XCT's ``AutocontourKnee`` transcribes them (thresholds in mg HA/cm³,
  radii in voxels of 61–82 µm scans).
- *boneframe*: choices of this implementation (tested on
  :func:`boneframe.phantom_radius.radius_section`).
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from boneframe.compartments.bones import Keep
from boneframe.compartments.smoothing import Units

# bounds: thresholds span densities (mg HA/cm³) and native values; radii are voxels
_T_LO, _T_HI = -2000.0, 100000.0
_R_HI = 200


class DualThresholdParams(BaseModel):
    """Parameters of :class:`~boneframe.compartments.dual_threshold.DualThreshold`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    units: Units = Field(
        "density",
        description="Units of the thresholds: 'density' (mg HA/cm³, through the scan's "
        "calibration; an uncalibrated scan is refused) or 'native' (the scan's own stored "
        "values, for an uncalibrated scan; the defaults are then meaningless). [boneframe]",
    )
    bones: Keep = Field(
        "largest",
        description="Bones kept: 'largest' (the radius, or tibia, of a standard distal scan: "
        "the ulna or fibula is left out, as the standard evaluation does) or 'all' (every "
        "bone with at least min_bone_fraction of the largest one's voxels). "
        "[IPL/ORMIR_XCT: largest component]",
    )
    min_bone_fraction: float = Field(
        0.1,
        gt=0.0,
        le=1.0,
        description="With bones='all', the smallest bone kept, as a fraction of the largest "
        "one's voxels (smaller components are specks). [boneframe]",
    )
    peri_sigma: float = Field(
        1.5,
        gt=0.0,
        le=10.0,
        description="Standard deviation (voxels) of the Gaussian before the periosteal "
        "thresholds. [IPL/ORMIR_XCT peri sigma 1.5]",
    )
    peri_support: int = Field(
        1,
        ge=0,
        le=10,
        description="Half-width (voxels) of that Gaussian's kernel; 0: no smoothing. "
        "[IPL/ORMIR_XCT peri support 1]",
    )
    peri_low: float = Field(
        250.0,
        ge=_T_LO,
        le=_T_HI,
        description="Low periosteal threshold: the bone, thin and porous cortex included, "
        "whose components are the bones. [IPL/ORMIR_XCT peri step 2: 250 mg HA/cm³]",
    )
    peri_high: float = Field(
        350.0,
        ge=_T_LO,
        le=_T_HI,
        description="High periosteal threshold: where the periosteal surface lies. "
        "[IPL/ORMIR_XCT peri steps 1 and 3: 350 mg HA/cm³]",
    )
    peri_close_low: int = Field(
        10,
        ge=0,
        le=_R_HI,
        description="Radius (voxels) of the filling closing of the low-threshold mask: "
        "closes cortical gaps up to twice as wide. [IPL/ORMIR_XCT peri step 2: 10]",
    )
    peri_close_high: int = Field(
        5,
        ge=0,
        le=_R_HI,
        description="Same for the high-threshold mask. [IPL/ORMIR_XCT peri step 3: 5]",
    )
    peri_open: int = Field(
        8,
        ge=0,
        le=_R_HI,
        description="Radius (voxels) of the opening of the band between the two masks; what "
        "survives (bone too thin or porous for the high threshold) is added. "
        "[IPL/ORMIR_XCT peri step 4: 8]",
    )
    peri_close: int = Field(
        16,
        ge=0,
        le=_R_HI,
        description="Radius (voxels) of the final smoothing closing of the periosteal mask. "
        "[IPL/ORMIR_XCT peri step 4: 16]",
    )
    endo_sigma: float = Field(
        2.0,
        gt=0.0,
        le=10.0,
        description="Standard deviation (voxels) of the Gaussian before the cortical "
        "threshold. [IPL/ORMIR_XCT endo sigma 2]",
    )
    endo_support: int = Field(
        3,
        ge=0,
        le=10,
        description="Half-width (voxels) of that Gaussian's kernel. [IPL/ORMIR_XCT endo support 3]",
    )
    endo_threshold: float = Field(
        550.0,
        ge=_T_LO,
        le=_T_HI,
        description="Cortical threshold: the second of the dual thresholds, above which "
        "smoothed bone is cortex. [IPL/ORMIR_XCT endo lower: 550 mg HA/cm³]",
    )
    min_cortical_thickness: int = Field(
        4,
        ge=0,
        le=_R_HI,
        description="The cortex is at least this thick (voxels): the trabecular mask stays "
        "inside the periosteal one eroded by it; 0: no minimum. A cortex thinner than this "
        "is reported this thick. [IPL/ORMIR_XCT endo min cort th: 4]",
    )
    endo_open: int = Field(
        3,
        ge=0,
        le=_R_HI,
        description="Radius (voxels) of the opening, with the largest component kept between "
        "erosion and dilation, that cuts pores joined to the marrow by a neck off the "
        "trabecular mask. [IPL/ORMIR_XCT endo open radius: 3]",
    )
    endo_smooth: int = Field(
        15,
        ge=0,
        le=_R_HI,
        description="Radius (voxels) of the closing, then of the opening, that smooth the "
        "trabecular mask: trabeculae joined to the endosteal surface are not cortex. "
        "[IPL/ORMIR_XCT endo open-close radius: 15]",
    )
    corner_radius: int = Field(
        3,
        ge=0,
        le=_R_HI,
        description="Radius (voxels) of the opening of the corners (what the smoothing "
        "opening removed) before the large ones are given back. [IPL/ORMIR_XCT: 3]",
    )
    corner_min_voxels: int = Field(
        300,
        ge=1,
        description="Smallest corner (pixels of one slice) given back to the trabecular mask. "
        "[boneframe; IPL/ORMIR_XCT count 3-D voxels: 1000 on a knee]",
    )
    endo_close: int = Field(
        50,
        ge=0,
        le=_R_HI,
        description="Radius (voxels) of the final closing of the trabecular mask. "
        "[IPL/ORMIR_XCT endo close radius: 50]",
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.peri_low > self.peri_high:
            msg = f"peri_low ({self.peri_low}) must not exceed peri_high ({self.peri_high})"
            raise ValueError(msg)
        return self

    def margin(self) -> int:
        """In-plane margin (voxels) around a bone that its largest dilation needs."""
        radii = (
            self.peri_close_low,
            self.peri_close_high,
            self.peri_open,
            self.peri_close,
            self.endo_smooth,
            self.endo_close,
            self.min_cortical_thickness,
        )
        return max(radii) + 2
