"""The abstract strategies every plugin implements.

Seven kinds, each registered through the ``boneframe`` entry-point group
(:mod:`boneframe.hookspecs`): :class:`Similarity`, :class:`Regularizer`,
:class:`Solver`, :class:`Metric`, :class:`VolumeFormat`, :class:`Segmentation`
and :class:`Contouring`. A strategy is a
class with a unique ``name`` within its kind, a one-line ``description`` and a
pydantic ``Params`` model for its parameters; instances hold validated params.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict

from boneframe.compute import add

if TYPE_CHECKING:
    from boneframe.volume import Triple, Volume


class NoParams(BaseModel):
    """A strategy without parameters."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Strategy(ABC):  # noqa: B024 (abstract through its subclasses)
    """Base of every pluggable strategy.

    Parameters
    ----------
    params : pydantic model, mapping or None
        Parameters, validated against ``Params``; keyword arguments override.
    """

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams
    #: The validated parameters, an instance of ``Params`` (a subclass with its own
    #: ``Params`` narrows this annotation to it: ``params: MyParams``).
    params: BaseModel

    def __init__(self, params: BaseModel | Mapping[str, Any] | None = None, **overrides: Any):
        if isinstance(params, BaseModel):
            values = params.model_dump()
        else:
            values = dict(params or {})
        values.update(overrides)
        self.params = self.Params.model_validate(values)
        for key, value in self.params.model_dump().items():
            if isinstance(value, float) and not math.isfinite(value):
                from boneframe.errors import InputError

                raise InputError(f"{self.kind} {self.name!r}: {key} must be finite, got {value}")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())
        return f"{type(self).__name__}({args})"


class Similarity(Strategy):
    """A data term ``D(u, g)`` between a predicted volume ``u`` and observed ``g``.

    Lower is better (a loss): ``L2`` is ``||u - g||²``, ``mi`` is ``-MI(u, g)``.
    """

    kind: ClassVar[str] = "similarity"
    #: The loss is a quadratic function of ``u`` (allows exact linear solves).
    quadratic: ClassVar[bool] = False
    #: The loss changes when ``u`` is scaled or shifted (so it can identify the
    #: kernel's gain and the offset ``c``); ``False`` for mutual information.
    scale_sensitive: ClassVar[bool] = True
    #: Kernel-regularisation weight used when none is given, for a scale-free
    #: similarity (unit-sum kernels: one weight suits all data, but it depends on
    #: the loss's own curvature); ``None``: ``kernel.unit_alpha(N)``.
    default_alpha: ClassVar[float | None] = None

    @abstractmethod
    def __call__(self, u: np.ndarray, g: np.ndarray) -> float:
        """Value of the loss."""

    @abstractmethod
    def grad(self, u: np.ndarray, g: np.ndarray) -> np.ndarray:
        """Gradient of the loss with respect to every voxel of ``u``."""

    def value_and_grad(self, u: np.ndarray, g: np.ndarray) -> tuple[float, np.ndarray]:
        """Value and gradient together (override when sharing work pays)."""
        return self(u, g), self.grad(u, g)


class Regularizer(Strategy):
    r"""A penalty :math:`R(x) = \varphi(D x)`: a function of the forward differences of ``x``.

    A regulariser is its penalty :math:`\varphi` on a difference field ``v`` (shape
    ``(3, *x.shape)``) and the difference operator :math:`D`
    (:meth:`difference`: :class:`~boneframe.operators.Gradient` with Neumann
    boundaries). Subclasses implement :meth:`penalty` and, where defined, its
    gradient :meth:`penalty_grad` (smooth penalties: gradient descent on kernels)
    and its proximal step :meth:`prox_penalty` (ADMM's v-step in
    super-resolution, whose problem applies :math:`\varphi` to its own periodic
    differences). The value and gradient of ``R`` follow:
    :math:`\nabla R(x) = D^\top \nabla\varphi(D x)`.
    """

    kind: ClassVar[str] = "regularizer"
    #: :meth:`penalty_grad` (hence :meth:`grad`) is defined.
    smooth: ClassVar[bool] = True

    @abstractmethod
    def penalty(self, v: np.ndarray) -> float:
        r""":math:`\varphi(v)` of a difference field ``v`` of shape ``(3, ...)``."""

    def penalty_grad(self, v: np.ndarray) -> np.ndarray:
        r""":math:`\nabla\varphi(v)` (smooth penalties only)."""
        raise NotImplementedError(f"regularizer {self.name!r} is not differentiable")

    def prox_penalty(self, v: np.ndarray, tau: float) -> np.ndarray:
        r"""Proximal step of :math:`\tau\varphi`:
        :math:`\arg\min_z \varphi(z) + \|z - v\|^2 / (2\tau)`."""
        raise NotImplementedError(f"regularizer {self.name!r} has no proximal step")

    def difference(self, shape: Sequence[int]) -> Any:
        """The difference operator ``D`` on arrays of ``shape`` (Neumann boundaries)."""
        from boneframe.operators import Gradient

        return Gradient(tuple(shape), "neumann")

    def __call__(self, x: np.ndarray) -> float:
        """``R(x) = phi(D x)``."""
        return self.penalty(self.difference(np.shape(x)).matvec(np.asarray(x)))

    def grad(self, x: np.ndarray) -> np.ndarray:
        """``D^T grad phi(D x)`` (smooth regularisers only)."""
        if not self.smooth:
            raise NotImplementedError(f"regularizer {self.name!r} is not differentiable")
        d = self.difference(np.shape(x))
        return d.rmatvec(self.penalty_grad(d.matvec(np.asarray(x))))


@dataclass
class SolverResult:
    """What a solver returns: the solution and how it got there."""

    x: Any
    iterations: int
    converged: bool
    message: str = ""
    history: list[dict[str, float]] = field(default_factory=list)


#: Called after every iteration with ``(iteration, x, record)``; returning
#: ``True`` stops the solver early.
Callback = Callable[[int, Any, dict[str, float]], bool | None]


class Solver(Strategy):
    """An optimisation algorithm for one shape of problem (:attr:`accepts`)."""

    kind: ClassVar[str] = "solver"
    #: The problem shape the solver accepts: a runtime-checkable ``Protocol``
    #: whose docstring says what a problem provides (``GradientProblem``,
    #: ``QuadraticProblem``, ``SplitProblem`` for the built-ins).
    accepts: ClassVar[type] = object

    @abstractmethod
    def solve(self, problem: Any, x0: Any, callback: Callback | None = None) -> SolverResult:
        """Minimise ``problem`` starting from ``x0``."""

    def check_problem(self, problem: Any, what: str = "this problem") -> None:
        """Refuse a problem that is not of the shape :attr:`accepts` names.

        Raises
        ------
        InputError
            Naming the solver, the shape it needs (with its members) and what was given.
        """
        if not isinstance(problem, self.accepts):
            from boneframe.errors import InputError

            shape = self.accepts
            members = sorted(
                {n for n in getattr(shape, "__annotations__", {}) if not n.startswith("_")}
                | {n for n, v in vars(shape).items() if callable(v) and not n.startswith("_")}
            )
            raise InputError(
                f"solver {self.name!r} solves a {shape.__name__} ({', '.join(members)}); "
                f"{what} is not one ({type(problem).__name__})"
            )


# -- metrics ---------------------------------------------------------------------------
#: ``(at_low, at_high)`` per axis: which faces of a block lie on the volume's border.
Border = tuple[tuple[bool, bool], ...]


@dataclass(frozen=True)
class MetricContext:
    """What a whole measurement knows: shared by every block and every ``finish``.

    Attributes
    ----------
    shape : three ints
        The volume's shape.
    threshold : float
        Bone is ``volume > threshold``.
    voxel_size : three floats or None
        Voxel size (µm).
    reference_threshold : float or None
        The reference's threshold, when there is a reference.
    otsu : float or None
        Otsu's threshold of the volume, when it was computed.
    value_range, reference_range : (float, float) or None
        ``(min, max)`` of the volume and of the reference, when they were
        computed (for Otsu's histograms).
    masked : bool
        A mask restricts the measurement (see ``Metric.uses_mask``).
    values : mapping
        The :class:`Quantity` values computed so far, read as ``context[quantity]``
        (empty while the blocks run).
    """

    shape: tuple[int, ...]
    threshold: float
    voxel_size: Triple | None = None
    reference_threshold: float | None = None
    otsu: float | None = None
    value_range: tuple[float, float] | None = None
    reference_range: tuple[float, float] | None = None
    masked: bool = False
    values: Mapping[Quantity, Any] = field(default_factory=dict)

    def __getitem__(self, quantity: Quantity) -> Any:
        try:
            return self.values[quantity]
        except KeyError:
            msg = f"{quantity!r} was not computed: list it in the metric's requires"
            raise KeyError(msg) from None

    def require_voxel_size(self) -> Triple:
        """The voxel size (µm), or an :class:`~boneframe.errors.InputError` saying it is unknown."""
        if self.voxel_size is None:
            from boneframe.errors import InputError

            raise InputError("the voxel size is unknown: give it in µm (--voxel-size)")
        return self.voxel_size

    @property
    def voxel_volume_mm3(self) -> float:
        """Volume of one voxel in mm³ (1 mm³ = 10⁹ µm³)."""
        return float(np.prod(self.require_voxel_size())) * 1e-9

    @property
    def volume_mm3(self) -> float:
        """Volume of the whole box in mm³."""
        return float(np.prod(self.shape, dtype=float)) * self.voxel_volume_mm3


@dataclass(frozen=True)
class MetricBlock:
    """One block of a measured volume: the whole volume in memory, one chunk of a dask volume.

    Attributes
    ----------
    volume : numpy.ndarray
        Grey values of the block's voxels.
    grown : numpy.ndarray of bool or None
        Bone (``volume > threshold``) of the block grown by ``grown_by`` voxels of
        its neighbours on every side, cut at the volume's border (None without a
        threshold).
    context : MetricContext
        Thresholds, voxel size and shape of the whole measurement.
    reference : numpy.ndarray or None
        The reference's values over the block's voxels.
    mask : numpy.ndarray of bool or None
        The mask over the block's voxels (``True`` inside); None: no mask.
    index, grid : three ints
        The block's place in the grid of blocks, and the grid's shape.
    start : three ints
        Index of the block's first voxel in the volume.
    halo : int
        Voxels of neighbours the block's reader declared (``Metric.halo``).
    grown_by : int
        Voxels of neighbours held in ``grown`` (at least ``halo`` where the volume has them).
    """

    volume: np.ndarray
    grown: np.ndarray | None
    context: MetricContext
    reference: np.ndarray | None = None
    mask: np.ndarray | None = None
    index: tuple[int, ...] = (0, 0, 0)
    grid: tuple[int, ...] = (1, 1, 1)
    start: tuple[int, ...] = (0, 0, 0)
    halo: int = 0
    grown_by: int = 0

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the block's own voxels."""
        return tuple(self.volume.shape)

    @property
    def whole(self) -> bool:
        """The block is the whole volume (in memory)."""
        return all(n == 1 for n in self.grid)

    @property
    def border(self) -> Border:
        """``(at_low, at_high)`` per axis: the block's faces on the volume's border."""
        return tuple((i == 0, i == n - 1) for i, n in zip(self.index, self.grid, strict=True))

    @property
    def bone(self) -> np.ndarray:
        """Bone of the block's own voxels (``volume > threshold``)."""
        return self.neighbourhood(0)[0]

    @property
    def reference_bone(self) -> np.ndarray | None:
        """Bone of the reference over the block's voxels (``> reference_threshold``)."""
        if self.reference is None or self.context.reference_threshold is None:
            return None
        return self.reference > self.context.reference_threshold

    def neighbourhood(
        self, halo: int | None = None, *, pad: bool = False
    ) -> tuple[np.ndarray, tuple[slice, ...]]:
        """Bone of the block and ``halo`` voxels of its neighbours on every side.

        Parameters
        ----------
        halo : int, optional
            Default: the block's ``halo``.
        pad : bool
            Beyond the volume's border, ``False`` voxels (as
            ``dask.array.map_overlap(..., boundary=0)`` gives); otherwise the
            neighbourhood is cut there.

        Returns
        -------
        (numpy.ndarray of bool, tuple of slice)
            The neighbourhood and where the block's own voxels lie in it.
        """
        if self.grown is None:
            from boneframe.errors import InputError

            raise InputError("the volume has no threshold, so no bone: give one (or use measure)")
        h = self.halo if halo is None else int(halo)
        index, core, widths = [], [], []
        for a, (n, size, s) in enumerate(
            zip(self.context.shape, self.shape, self.start, strict=True)
        ):
            have_lo, have_hi = min(self.grown_by, s), min(self.grown_by, n - s - size)
            lo, hi = min(h, s), min(h, n - s - size)
            if lo > have_lo or hi > have_hi:
                msg = f"block {self.index} holds {self.grown_by} voxels of halo, not {h}"
                raise ValueError(msg)
            index.append(slice(have_lo - lo, self.grown.shape[a] - (have_hi - hi)))
            core.append(slice(lo, lo + size))
            widths.append((h - lo, h - hi))
        out = self.grown[tuple(index)]
        if pad and any(w != (0, 0) for w in widths):
            out = np.pad(out, widths)
            core = [slice(h, h + size) for size in self.shape]
        return out, tuple(core)

    def with_halo(self, halo: int) -> MetricBlock:
        """The same block, read by a member that declared ``halo``."""
        return self if halo == self.halo else replace(self, halo=int(halo))


class Blocks(Protocol):
    """The blocks of a measurement, as :meth:`Quantity.block_halo` may read them first."""

    @property
    def shape(self) -> tuple[int, ...]:
        """The volume's shape."""

    def map_reduce(
        self,
        fn: Callable[..., Any],
        *shared: Any,
        halo: int = 0,
        combine: Callable[[Any, Any], Any] = ...,
        select: Any = None,
    ) -> Any:
        """``combine`` over the blocks (those in ``select``, or all) of ``fn(block, *shared)``."""

    def coarsened(self, halo: int) -> Blocks:
        """Blocks fit for a pass with ``halo`` (merged where a block is thinner than it)."""


class BlockForm:
    """A measurement that adds up over the blocks of a volume: block -> combine -> finish.

    ``block`` maps one :class:`MetricBlock` to a partial result, ``combine``
    (associative) merges two partials, ``finish`` turns the total into the value.
    In memory the volume is one block; on dask input every chunk is one, run as
    dask tasks by :func:`boneframe.compute.map_reduce`, so both give the same
    numbers. Whatever is not a block form implements ``__call__`` on a
    :class:`MetricInput` instead (the volume in memory).
    """

    #: Voxels of neighbours a block needs (``MetricBlock.neighbourhood``): χ's
    #: 2x2x2 windows need 1.
    halo: ClassVar[int] = 0
    #: The shared :class:`Quantity` values ``finish`` (or ``__call__``) reads.
    requires: ClassVar[tuple[Quantity, ...]] = ()

    def quantities(self) -> tuple[Quantity, ...]:
        """The quantities this one reads (default ``requires``; may depend on parameters)."""
        return tuple(self.requires)

    def block(self, b: MetricBlock) -> Any:
        """Partial result of one block."""
        raise NotImplementedError(f"{type(self).__name__} has no block form")

    def combine(self, x: Any, y: Any) -> Any:
        """Two partials merged (default: elementwise sums of numbers, arrays, dicts, tuples)."""
        return add(x, y)

    def finish(self, total: Any, context: MetricContext) -> Any:
        """The value from the combined partials (and ``context[q]`` of ``quantities()``)."""
        return total

    @classmethod
    def has_own_block(cls) -> bool:
        """``block`` is defined (else a block form reads only ``quantities()``)."""
        return cls.block is not BlockForm.block

    @classmethod
    def has_block_form(cls) -> bool:
        """The value comes from block -> combine -> finish (else from ``__call__``)."""
        return cls.has_own_block()

    def __call__(self, data: MetricInput) -> Any:
        """The value on a volume in memory: the block form with the volume as one block."""
        if not self.has_block_form():
            raise NotImplementedError(f"{type(self).__name__} defines neither block nor __call__")
        context = data.context(self.quantities())
        total = self.block(data.block(self.halo, context)) if self.has_own_block() else None
        return self.finish(total, context)


class Quantity(BlockForm, ABC):
    """An intermediate several metrics share, computed once per measurement.

    As scikit-image's ``regionprops`` shares a labelling between properties: a
    quantity (a labelling count, a thickness map's statistics, a fabric tensor)
    is a value object, a frozen dataclass whose fields are its parameters, so two
    equal quantities are one computation and the quantity is the typed key of
    its value (``context[quantity]``). Its form is a metric's: block -> combine
    -> finish, or ``__call__`` on the volume in memory.
    """

    def block_halo(self, blocks: Blocks, context: MetricContext) -> int:
        """The halo this quantity's blocks need (default ``halo``), asked only when
        there is more than one block.

        A quantity whose reach depends on the data (local thickness) measures
        it here first, reading ``blocks``; an :class:`~boneframe.errors.InputError`
        skips the quantity and the metrics that read it.
        """
        return self.halo


@dataclass
class MetricInput:
    """A volume in memory, as a metric without a block form (``__call__``) reads it.

    Parameters
    ----------
    volume : array or Volume
        The volume measured (a dask array is loaded into memory).
    reference : array or Volume, optional
        The ground truth, for metrics that compare.
    voxel_size : three floats, optional
        Voxel size in µm (default: the volume's, for a Volume).
    threshold, reference_threshold : float, optional
        Binarisation thresholds (``boneframe.metrics.measure`` finds Otsu's when
        not given; here they must be given for ``bone``).
    mask : array, optional
        Non-zero inside the region measured.
    bone, reference_bone : numpy.ndarray of bool, optional
        ``volume > threshold`` and ``reference > reference_threshold``;
        computed from the thresholds when not given.
    values : dict
        :class:`Quantity` values already known, by quantity (``data[quantity]``
        computes and keeps the others).
    """

    volume: Any
    reference: Any = None
    voxel_size: Triple | None = None
    threshold: float | None = None
    reference_threshold: float | None = None
    mask: Any = None
    bone: np.ndarray | None = None
    reference_bone: np.ndarray | None = None
    values: dict[Quantity, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.voxel_size is None:
            self.voxel_size = getattr(self.volume, "voxel_size", None)
        self.volume = _in_memory(self.volume)
        self.reference = None if self.reference is None else _in_memory(self.reference)
        self.mask = None if self.mask is None else _in_memory(self.mask) != 0
        if self.bone is None and self.threshold is not None:
            self.bone = self.volume > self.threshold
        if self.reference_bone is None and self.reference_threshold is not None:
            if self.reference is not None:
                self.reference_bone = self.reference > self.reference_threshold

    def context(self, quantities: tuple[Quantity, ...] = ()) -> MetricContext:
        """The :class:`MetricContext` of this volume, with ``quantities`` computed."""
        for q in quantities:
            self[q]
        return MetricContext(
            shape=tuple(self.volume.shape),
            threshold=float("nan") if self.threshold is None else float(self.threshold),
            voxel_size=self.voxel_size,
            reference_threshold=self.reference_threshold,
            masked=self.mask is not None,
            values=self.values,
        )

    def block(self, halo: int = 0, context: MetricContext | None = None) -> MetricBlock:
        """The whole volume as one :class:`MetricBlock`."""
        return MetricBlock(
            volume=self.volume,
            grown=self.bone,
            context=self.context() if context is None else context,
            reference=self.reference,
            mask=self.mask,
            halo=halo,
        )

    def __getitem__(self, quantity: Quantity) -> Any:
        if quantity not in self.values:
            self.values[quantity] = quantity(self)
        return self.values[quantity]


def _in_memory(x: Any) -> np.ndarray:
    return np.asarray(getattr(x, "data", x) if hasattr(x, "voxel_size") else x)


class Metric(BlockForm, Strategy):
    """A number measured on a volume (optionally against a reference, inside a mask).

    A metric declares what it needs (class attributes below) and computes its
    value either as a block form (``block`` -> ``combine`` -> ``finish``; see
    :class:`BlockForm`), which runs on a volume in memory as one block and on a
    dask volume chunk by chunk, or only in memory (``__call__``; a dask volume
    is then loaded whole). :func:`boneframe.metrics.measure` runs them all.

    Examples
    --------
    A lab's metric, registered by its package's ``boneframe_metrics`` hook::

        class MeanBoneGrey(Metric):
            name = "mean_bone_grey"
            description = "mean grey value of the bone"

            def block(self, b):  # sums over one block: they add up
                return float(b.volume[b.bone].sum()), int(b.bone.sum())

            def finish(self, total, context):
                grey, voxels = total
                return grey / voxels

    A metric with no block form defines ``__call__(self, data)`` instead
    (``data.volume``, ``data.bone``: numpy arrays); one that reads a shared
    quantity lists it in ``requires`` and reads ``context[quantity]`` in
    ``finish``.
    """

    kind: ClassVar[str] = "metric"
    #: The metric compares against a reference volume.
    needs_reference: ClassVar[bool] = False
    #: The metric is in physical units: it needs the voxel size.
    needs_voxel_size: ClassVar[bool] = False
    #: The metric is defined when a mask is given (it measures inside the mask,
    #: or does not depend on it); otherwise it is skipped then.
    uses_mask: ClassVar[bool] = False
    #: Unit of the value: "µm", "1/mm", "1/mm³", "mm³", "dB", "" when dimensionless.
    unit: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name and not cls.has_block_form() and cls.__call__ is Metric.__call__:
            raise TypeError(f"metric {cls.name!r} defines neither block/finish nor __call__")

    @classmethod
    def has_block_form(cls) -> bool:
        return cls.has_own_block() or cls.finish is not Metric.finish

    def finish(self, total: Any, context: MetricContext) -> float:
        """The metric's value from the combined partials (default ``float(total)``)."""
        return float(total)

    def __call__(self, data: MetricInput) -> float:
        """The metric's value on a volume in memory."""
        return float(BlockForm.__call__(self, data))


class VolumeFormat(Strategy):
    """A file format for volumes, chosen by file extension."""

    kind: ClassVar[str] = "format"
    #: Lower-case extensions including the dot, e.g. ``(".nii", ".nii.gz")``.
    extensions: ClassVar[tuple[str, ...]] = ()
    #: The path is a directory (zarr, DICOM series) rather than a file.
    is_directory: ClassVar[bool] = False
    #: The format keeps ``Volume.metadata`` inside the volume (zarr attributes);
    #: otherwise metadata goes to a JSON sidecar.
    holds_metadata: ClassVar[bool] = False
    #: The format keeps a scan's density calibration in the file itself (AIM's
    #: processing log); otherwise it goes to the sidecar with the geometry.
    holds_calibration: ClassVar[bool] = False
    #: ``read`` takes its geometry and metadata from the sidecar itself (npy);
    #: otherwise :func:`boneframe.io.read_volume` adds the sidecar's metadata.
    reads_sidecar: ClassVar[bool] = False

    @abstractmethod
    def read(self, path: Path) -> Volume:
        """Read the volume at ``path``."""

    def write(self, volume: Volume, path: Path) -> None:
        """Write ``volume`` to ``path`` (the caller handles atomicity)."""
        raise NotImplementedError(f"format {self.name!r} cannot be written")

    def sidecar(self, volume: Volume) -> dict[str, Any] | None:
        """Metadata this format cannot hold itself, written to ``<stem>.json``."""
        return None

    @classmethod
    def can_write(cls) -> bool:
        """True when this format implements ``write``."""
        return cls.write is not VolumeFormat.write


class Segmentation(Strategy):
    """How bone is told from the rest of a volume (Otsu's threshold, a fixed density
    threshold after smoothing, ...)."""

    kind: ClassVar[str] = "segmentation"

    @abstractmethod
    def segment(self, volume: Volume, mask: Any = None) -> Any:
        """Boolean bone mask of ``volume`` (same shape; numpy, or dask for a dask
        volume), looking only inside ``mask`` when one is given."""


#: The compartments a :class:`Contouring` returns, in this order.
COMPARTMENTS: tuple[str, ...] = ("periosteal", "trabecular", "cortical")


class Contouring(Strategy):
    """How a scan is split into its bone compartments (periosteal, trabecular, cortical)."""

    kind: ClassVar[str] = "contour"

    @abstractmethod
    def compartments(self, volume: Volume) -> dict[str, Volume]:
        """The masks of :data:`COMPARTMENTS` (uint8 volumes with ``volume``'s geometry):
        ``periosteal`` (the whole bone), ``trabecular`` and ``cortical`` (a partition of
        it)."""
