r"""Trabecular thickness Tb.Th, separation Tb.Sp and number Tb.N, from local thickness.

Tb.Th is the mean of the local thickness map over the bone phase (with its SD,
``ddof=1`` as ImageJ's statistics, and max); Tb.Sp the same on the marrow
phase (:mod:`boneframe.metrics.thickness`), all in µm. Each phase's map is
computed once per measurement (the quantities :data:`BONE_THICKNESS` and
:data:`MARROW_THICKNESS`): in memory on the whole volume, on a dask volume
chunk by chunk, each chunk with the halo its own distances ask for
(:mod:`boneframe.metrics.thickness_window`), with the same numbers.

Tb.N is reported (1/mm) as :math:`1 / (\mathrm{Tb.Th} + \mathrm{Tb.Sp})`, the
number of bone-plus-marrow periods per unit length. It is neither Scanco's
direct Tb.N (the inverse mean distance between the mid-axes of the trabeculae)
nor Parfitt's plate model :math:`\mathrm{BV/TV} / \mathrm{Tb.Th}` [1]_, which
``tb_n`` offers with ``model="plate"``; the three agree for parallel plates
and differ on real bone.

**Inside a mask** (BoneJ's convention for a region of interest: the image is
cleared outside the region before *Thickness* runs, as Scanco's IPL masks the
segmented image by the VOI): Tb.Th is the local thickness of the bone inside
the mask, ``bone & mask``, whose spheres fit in that bone; Tb.Sp is the local
thickness of the marrow inside the mask, ``~bone & mask``, whose spheres fit in
the marrow *and* the mask, so the marrow space ends at the mask's boundary;
Tb.N's plate model takes BV/TV over the mask. Outside the mask is neither
phase; the volume's border is still not a phase boundary.

References
----------
.. [1] Parfitt A. M. et al. (1983). Relationships between surface, volume,
   and thickness of iliac trabecular bone in aging and in osteoporosis.
   J. Clin. Invest. 72, 1396–1409. https://doi.org/10.1172/JCI111096
.. [2] Doube M. et al. (2010). BoneJ: free and extensible bone image analysis
   in ImageJ. Bone 47, 1076–1079. https://doi.org/10.1016/j.bone.2010.08.023
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from boneframe.errors import InputError
from boneframe.interfaces import Blocks, Metric, MetricBlock, MetricContext, Quantity
from boneframe.metrics.thickness import (
    Phase,
    ThicknessSummary,
    isotropic_voxel_size,
    thickness_of_block,
    trabecular_number,
)
from boneframe.metrics.thickness_window import block_thickness

#: First halo (voxels) of each phase on dask input, a guess at twice the largest
#: distance plus 3: the block in the middle of the grid starts from it, the others
#: from the halo that block needed plus :data:`GUESS_SLACK`, and each grows it as
#: its own distances ask (:func:`~boneframe.metrics.thickness_window.block_thickness`).
#: The guesses change the cost, never the map.
FIRST_HALO: dict[str, int] = {"bone": 12, "marrow": 24}

#: Voxels added to the halo the first block needed, as the other blocks' first guess:
#: a neighbourhood a little deeper elsewhere then costs no second distance transform.
GUESS_SLACK = 3

#: Block index -> the halo a block short of it needs.
Short = tuple[tuple[tuple[int, ...], int], ...]


@dataclass(frozen=True)
class ThicknessPartial:
    """The :class:`~boneframe.metrics.thickness.ThicknessSummary` of the blocks done,
    the largest halo they needed, and the blocks whose halo was too small, with the
    halo each needs."""

    summary: ThicknessSummary = ThicknessSummary()
    short: Short = ()
    halo: int = 0


@dataclass(frozen=True)
class PhaseThickness(Quantity):
    """The :class:`~boneframe.metrics.thickness.ThicknessSummary` (µm) of a phase's map.

    In memory, :func:`~boneframe.metrics.thickness.thickness_of_block` of the
    whole volume; on dask input each block finds the halo that makes its map
    exact (:func:`~boneframe.metrics.thickness_window.block_thickness`) in the
    one pass of the measurement, and the few blocks that need more than the pass
    holds run again with it (``unfinished``, ``resumed``).
    """

    phase: Phase = "bone"
    #: The phase whose :data:`FIRST_HALO` the blocks start from (default ``phase``;
    #: the marrow in a mask is measured as the bone of ``mask & ~bone``).
    like: Phase | None = field(default=None, compare=False)

    def block_halo(self, blocks: Blocks, context: MetricContext) -> int:
        isotropic_voxel_size(context.require_voxel_size())  # before a pass, not after it
        return FIRST_HALO[self.like or self.phase]

    def block(self, b: MetricBlock) -> ThicknessPartial:
        from boneframe.parallel import num_threads

        side = isotropic_voxel_size(b.context.require_voxel_size())
        # every thread for the distance transform, even with blocks side by side:
        # it holds the GIL, so two blocks' transforms cannot overlap anyway; the
        # compiled loops of a block, one thread (dask runs the blocks side by side)
        threads = num_threads()
        if not b.whole:
            tmap, halo = block_thickness(b, self.phase, side, threads, loops=1)
            if tmap is None:
                return ThicknessPartial(short=((b.index, halo),))
            return ThicknessPartial(ThicknessSummary.of(tmap), halo=halo)
        grown, core = b.neighbourhood()
        inside = grown if self.phase == "bone" else ~grown
        tmap = thickness_of_block(inside, core, b.halo, side, threads)
        return ThicknessPartial(ThicknessSummary.of(tmap))

    def combine(self, x: ThicknessPartial, y: ThicknessPartial) -> ThicknessPartial:
        return ThicknessPartial(x.summary.merge(y.summary), x.short + y.short, max(x.halo, y.halo))

    def unfinished(self, total: ThicknessPartial) -> dict[tuple[int, ...], int]:
        """The blocks short of halo, and the halo each needs."""
        return dict(total.short)

    def resumed(self, total: ThicknessPartial, redone: ThicknessPartial) -> ThicknessPartial:
        """``total`` with the blocks run again (``redone``) in place of their shortfall."""
        done = ThicknessPartial(total.summary, (), total.halo)
        return self.combine(done, redone)

    def guess(self, partial: ThicknessPartial) -> int | None:
        """A first halo for the other blocks, from one block's partial (None: no clue)."""
        if partial.short:
            return max(h for _, h in partial.short)
        return partial.halo + GUESS_SLACK if partial.halo else None

    def finish(self, total: ThicknessPartial, context: MetricContext) -> ThicknessSummary:
        if total.short:
            raise InputError(f"{len(total.short)} blocks of the {self.phase} are short of halo")
        return total.summary


@dataclass(frozen=True)
class BoneFraction(Quantity):
    """BV/TV of the volume, or inside the mask (for Tb.N's plate model)."""

    def block(self, b: MetricBlock) -> tuple[int, int]:
        voxels = b.bone.size if b.mask is None else int(np.count_nonzero(b.mask))
        return int(np.count_nonzero(b.bone)), voxels

    def finish(self, total: tuple[int, int], context: MetricContext) -> float:
        if total[1] == 0:
            raise InputError("the mask is empty: BV/TV has no voxels to count")
        return total[0] / total[1]


BONE_THICKNESS = PhaseThickness("bone")
MARROW_THICKNESS = PhaseThickness("marrow")
BONE_FRACTION = BoneFraction()


def _summary(context: MetricContext, quantity: PhaseThickness) -> ThicknessSummary:
    s = context[quantity]
    if s.count == 0:
        raise InputError(
            f"no {quantity.phase} voxel has a local thickness: the {quantity.phase} is empty "
            "or fills the volume"
        )
    return s


class _PhaseStatistic(Metric):
    """A statistic (µm) of a phase's local thickness map."""

    needs_voxel_size: ClassVar[bool] = True
    uses_mask: ClassVar[bool] = True  # the phase inside the mask (see the module's notes)
    unit: ClassVar[str] = "µm"
    thickness: ClassVar[PhaseThickness] = BONE_THICKNESS
    statistic: ClassVar[str] = "mean"

    def quantities(self) -> tuple[Quantity, ...]:
        return (self.thickness,)

    def finish(self, total: None, context: MetricContext) -> float:
        return float(getattr(_summary(context, self.thickness), self.statistic))


class TrabecularThickness(_PhaseStatistic):
    """Tb.Th: mean local thickness of the bone (µm), as BoneJ2's Thickness."""

    name: ClassVar[str] = "tb_th"
    description: ClassVar[str] = "Trabecular thickness Tb.Th: mean local thickness of bone (µm)"


class TrabecularThicknessSD(_PhaseStatistic):
    """Standard deviation (``ddof=1``) of the bone's local thickness (µm)."""

    name: ClassVar[str] = "tb_th_sd"
    description: ClassVar[str] = "SD of the local thickness of bone (µm)"
    statistic: ClassVar[str] = "sd"


class TrabecularThicknessMax(_PhaseStatistic):
    """Largest local thickness of the bone (µm)."""

    name: ClassVar[str] = "tb_th_max"
    description: ClassVar[str] = "largest local thickness of bone (µm)"
    statistic: ClassVar[str] = "max"


class TrabecularSeparation(_PhaseStatistic):
    """Tb.Sp: mean local thickness of the marrow (µm), as BoneJ2's Thickness."""

    name: ClassVar[str] = "tb_sp"
    description: ClassVar[str] = "Trabecular separation Tb.Sp: mean local thickness of marrow (µm)"
    thickness: ClassVar[PhaseThickness] = MARROW_THICKNESS


class TrabecularSeparationSD(_PhaseStatistic):
    """Standard deviation (``ddof=1``) of the marrow's local thickness (µm)."""

    name: ClassVar[str] = "tb_sp_sd"
    description: ClassVar[str] = "SD of the local thickness of marrow (µm)"
    thickness: ClassVar[PhaseThickness] = MARROW_THICKNESS
    statistic: ClassVar[str] = "sd"


class TrabecularSeparationMax(_PhaseStatistic):
    """Largest local thickness of the marrow (µm)."""

    name: ClassVar[str] = "tb_sp_max"
    description: ClassVar[str] = "largest local thickness of marrow (µm)"
    thickness: ClassVar[PhaseThickness] = MARROW_THICKNESS
    statistic: ClassVar[str] = "max"


class TrabecularNumber(Metric):
    r"""Tb.N (1/mm): :math:`1/(\mathrm{Tb.Th} + \mathrm{Tb.Sp})`, or the plate model."""

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
        model: Literal["inverse_sum", "plate"] = Field(
            "inverse_sum",
            description="'inverse_sum': 1/(Tb.Th + Tb.Sp); 'plate': Parfitt's BV/TV / Tb.Th",
        )

    params: Params

    name: ClassVar[str] = "tb_n"
    description: ClassVar[str] = "Trabecular number Tb.N = 1/(Tb.Th + Tb.Sp) (1/mm)"
    needs_voxel_size: ClassVar[bool] = True
    uses_mask: ClassVar[bool] = True
    unit: ClassVar[str] = "1/mm"

    def quantities(self) -> tuple[Quantity, ...]:
        if self.params.model == "plate":
            return (BONE_THICKNESS, BONE_FRACTION)
        return (BONE_THICKNESS, MARROW_THICKNESS)

    def finish(self, total: Any, context: MetricContext) -> float:
        tb_th_mm = _summary(context, BONE_THICKNESS).mean / 1000.0
        if self.params.model == "plate":
            return trabecular_number(tb_th_mm, 0.0, context[BONE_FRACTION], "plate")
        tb_sp_mm = _summary(context, MARROW_THICKNESS).mean / 1000.0
        return trabecular_number(tb_th_mm, tb_sp_mm, 0.0, "inverse_sum")
