"""The abstract strategies every plugin implements.

Five kinds, each registered through the ``boneframe`` entry-point group
(:mod:`boneframe.hookspecs`): :class:`Similarity`, :class:`Regularizer`,
:class:`Solver`, :class:`Metric` and :class:`VolumeFormat`. A strategy is a
class with a unique ``name`` within its kind, a one-line ``description`` and a
pydantic ``Params`` model for its parameters; instances hold validated params.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from boneframe.volume import Triple, Volume


class NoParams(BaseModel):
    """A strategy without parameters."""

    model_config = ConfigDict(extra="forbid")


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

    def __init__(self, params: BaseModel | Mapping[str, Any] | None = None, **overrides: Any):
        if isinstance(params, BaseModel):
            values = params.model_dump()
        else:
            values = dict(params or {})
        values.update(overrides)
        self.params = self.Params.model_validate(values)

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
    """A penalty ``R(x)`` on an unknown (a kernel or a volume)."""

    kind: ClassVar[str] = "regularizer"
    #: ``grad`` is defined (otherwise use ``prox``).
    smooth: ClassVar[bool] = True

    @abstractmethod
    def __call__(self, x: np.ndarray) -> float:
        """Value of the penalty."""

    def grad(self, x: np.ndarray) -> np.ndarray:
        """Gradient of the penalty (smooth regularisers only)."""
        raise NotImplementedError(f"regularizer {self.name!r} is not differentiable")

    def prox(self, x: np.ndarray, tau: float) -> np.ndarray:
        """Proximal step ``argmin_z R(z) + ||z - x||² / (2 tau)``."""
        raise NotImplementedError(f"regularizer {self.name!r} has no proximal step")

    def prox_split(self, v: np.ndarray, tau: float) -> np.ndarray:
        """Proximal step of ``tau * phi`` where ``R(x) = phi(D x)`` (ADMM's v-step).

        ``v`` is a gradient field of shape ``(3, *x.shape)`` and ``D`` the
        forward-difference gradient of :mod:`boneframe.differences`.
        """
        raise NotImplementedError(f"regularizer {self.name!r} cannot be split as phi(D x)")

    def split_value(self, v: np.ndarray) -> float:
        """Value of ``phi`` at a gradient field ``v`` (so that ``R(x) = phi(D x)``)."""
        raise NotImplementedError(f"regularizer {self.name!r} cannot be split as phi(D x)")


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
    """An optimisation algorithm; each solver documents the problem shape it accepts."""

    kind: ClassVar[str] = "solver"

    @abstractmethod
    def solve(self, problem: Any, x0: Any, callback: Callback | None = None) -> SolverResult:
        """Minimise ``problem`` starting from ``x0``."""


@dataclass
class MetricInput:
    """The volumes a metric looks at, with a cache shared between metrics.

    Parameters
    ----------
    volume : array
        The volume measured (e.g. a super-resolved estimate).
    reference : array or None
        The ground truth (e.g. the micro-CT), for metrics that compare.
    voxel_size : tuple of float or None
        Voxel size in µm, for metrics in physical units.
    threshold, reference_threshold : float or None
        Binarisation thresholds; ``None`` means Otsu's threshold of each volume.
    cache : dict
        Intermediate results (thresholds, binary volumes) shared by metrics.
    """

    volume: Any
    reference: Any = None
    voxel_size: Triple | None = None
    threshold: float | None = None
    reference_threshold: float | None = None
    cache: dict[str, Any] = field(default_factory=dict)


class Metric(Strategy):
    """A number measured on a volume (optionally against a reference)."""

    kind: ClassVar[str] = "metric"
    #: The metric compares against ``MetricInput.reference``.
    needs_reference: ClassVar[bool] = False
    #: Unit of the value, for tables and plots ("" when dimensionless).
    unit: ClassVar[str] = ""

    @abstractmethod
    def __call__(self, data: MetricInput) -> float:
        """The metric's value."""


class VolumeFormat(Strategy):
    """A file format for volumes, chosen by file extension."""

    kind: ClassVar[str] = "format"
    #: Lower-case extensions including the dot, e.g. ``(".nii", ".nii.gz")``.
    extensions: ClassVar[tuple[str, ...]] = ()
    #: The path is a directory (zarr, DICOM series) rather than a file.
    is_directory: ClassVar[bool] = False

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
