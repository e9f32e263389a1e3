r"""Similarities evaluated block by block: value and gradient from sums over voxels.

Kernel estimation evaluates a similarity :math:`D(u, g)` on the prediction
:math:`u = U(h * (f + c))` of every valid low-resolution voxel. On a large
(chunked) pair ``u`` exists only box by box, so a similarity that can be written
as sums over voxels declares so by subclassing :class:`AdditiveSimilarity` and
implementing :meth:`~AdditiveSimilarity.evaluate` against :class:`Blocks`: it asks
for as many reductions as it needs (moments, a joint histogram, ...), each a
module-level function of one block ``(u, g)`` whose results add up, and returns
its gradient as a :class:`LinearGradient`.

**Linear gradient.** Per block, :math:`\partial D / \partial u` is a linear
combination :math:`w = \sum_j c_j \varphi_j + c_1` of fields :math:`\varphi_j`
computed from the block alone, with coefficients :math:`c_j` that depend on sums
over all blocks (for mutual information placed by moments, the two sums of
:func:`~boneframe.parzen.chain_moments`). Whatever is linear in ``w``
(kernel estimation needs :math:`X^\top w` and :math:`\sum w`) is then summed over
the blocks field by field in one pass and combined at the end.

The in-memory pair is one block (:class:`ArrayBlocks`), so ``value_and_grad(u, g)``
of an additive similarity runs exactly the same formula. A similarity that is
not additive (a plugin's ``value_and_grad`` on whole arrays) still runs on
blocked input through :func:`evaluate_similarity`, which gathers ``u`` and ``g``
over the valid region (memory: three float64 arrays of the low-resolution valid
region, about 3/p³ of the high-resolution volume in float64).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from boneframe.errors import InputError

__all__ = [
    "AdditiveSimilarity",
    "ArrayBlocks",
    "Blocks",
    "GreyMoments",
    "LinearGradient",
    "evaluate_similarity",
]

T = TypeVar("T")
Index = tuple[slice, ...]


@dataclass(frozen=True)
class GreyMoments:
    """Count, mean, centred second moment and range of grey values; ``+`` merges two
    sets exactly (the parallel update of Chan, Golub & LeVeque 1979)."""

    n: int
    mean: float
    m2: float
    lo: float
    hi: float

    @classmethod
    def of(cls, x: Any) -> GreyMoments:
        """The moments of the values of ``x``."""
        flat = np.asarray(x).ravel()
        if flat.size == 0:
            return cls(0, 0.0, 0.0, np.inf, -np.inf)
        mean = float(np.mean(flat, dtype=np.float64))
        dev = np.subtract(flat, mean, dtype=np.float64)
        return cls(flat.size, mean, float(np.dot(dev, dev)), float(flat.min()), float(flat.max()))

    def __add__(self, other: GreyMoments) -> GreyMoments:
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        d = other.mean - self.mean
        return GreyMoments(
            n,
            self.mean + d * other.n / n,
            self.m2 + other.m2 + d * d * self.n * other.n / n,
            min(self.lo, other.lo),
            max(self.hi, other.hi),
        )

    @property
    def std(self) -> float:
        """Population standard deviation."""
        return float(np.sqrt(self.m2 / self.n)) if self.n else 0.0

    @property
    def total(self) -> float:
        """The sum of the values."""
        return self.n * self.mean


@dataclass(frozen=True)
class LinearGradient:
    r"""``dD/du`` block by block: :math:`w = \sum_j c_j \varphi_j + c_{\mathrm{one}}`.

    Attributes
    ----------
    fields : callable
        ``fields(u, g, index, *shared) -> (phi, sums)``: the block's fields
        (``{name: array shaped as u}``) and the scalar sums over the block the
        coefficients need. ``index`` places the block in the whole (slices).
        Module-level, so that a cluster can run it.
    shared : tuple
        Arguments of ``fields`` common to every block.
    coefficients : callable
        ``coefficients(sums) -> {name: c}`` from the sums over all blocks; the
        name ``"one"`` is the weight of the constant field 1.
    """

    fields: Callable[..., tuple[dict[str, np.ndarray], dict[str, float]]]
    shared: tuple[Any, ...]
    coefficients: Callable[[dict[str, float]], dict[str, float]]

    @staticmethod
    def combine(parts: Mapping[str, Any], one: Any, coefficients: Mapping[str, float]) -> Any:
        """``sum_j c_j parts[j] + c_one * one`` (``parts`` may be fields, their
        transforms by a linear map, or their sums)."""
        out: Any = 0.0
        for name, c in coefficients.items():
            term = one if name == "one" else parts[name]
            out = out + c * term
        return out


class Blocks(Protocol):
    """The ``(u, g)`` pairs of a problem's blocks, wherever they are computed."""

    @property
    def data(self) -> GreyMoments:
        """Moments of ``g`` over all blocks."""
        ...

    def reduce(self, fn: Callable[..., T], *shared: Any) -> T:
        """The sum (``+``) over blocks of ``fn(u, g, *shared)`` (``fn`` module-level)."""
        ...

    def gather(self) -> tuple[np.ndarray, np.ndarray]:
        """``u`` and ``g`` over all blocks as two in-memory arrays."""
        ...


class ArrayBlocks:
    """An in-memory pair as a single block.

    Parameters
    ----------
    u, g : array_like
        Prediction and data, the same shape.
    """

    def __init__(self, u: Any, g: Any):
        self.u = np.asarray(u, dtype=np.float64)
        self.g = np.asarray(g, dtype=np.float64)
        if self.u.shape != self.g.shape:
            raise InputError(
                f"u and g must have the same shape, got {self.u.shape} and {self.g.shape}"
            )
        self._data: GreyMoments | None = None

    @property
    def data(self) -> GreyMoments:
        """Moments of ``g``."""
        if self._data is None:
            self._data = GreyMoments.of(self.g)
        return self._data

    def reduce(self, fn: Callable[..., T], *shared: Any) -> T:
        """``fn(u, g, *shared)``."""
        return fn(self.u, self.g, *shared)

    def gather(self) -> tuple[np.ndarray, np.ndarray]:
        """``u`` and ``g``."""
        return self.u, self.g

    def gradient(self, lg: LinearGradient) -> np.ndarray:
        """The per-voxel gradient ``w`` of a :class:`LinearGradient`."""
        index = (slice(None),) * self.u.ndim
        fields, sums = lg.fields(self.u, self.g, index, *lg.shared)
        w = LinearGradient.combine(fields, 1.0, lg.coefficients(sums))
        return np.broadcast_to(np.asarray(w, dtype=np.float64), self.u.shape).copy()


class AdditiveSimilarity:
    """Mixin of a :class:`~boneframe.interfaces.Similarity` written as sums over voxels.

    Subclasses implement :meth:`evaluate`; ``__call__``, ``grad`` and
    ``value_and_grad`` on whole arrays follow from it (the arrays being one block).
    """

    @abstractmethod
    def evaluate(self, blocks: Blocks, gradient: bool) -> tuple[float, LinearGradient | None]:
        """The loss over all ``blocks`` and, when ``gradient``, its gradient in ``u``."""

    def __call__(self, u: np.ndarray, g: np.ndarray) -> float:
        return self.evaluate(ArrayBlocks(u, g), False)[0]

    def grad(self, u: np.ndarray, g: np.ndarray) -> np.ndarray:
        return self.value_and_grad(u, g)[1]

    def value_and_grad(self, u: np.ndarray, g: np.ndarray) -> tuple[float, np.ndarray]:
        blocks = ArrayBlocks(u, g)
        value, lg = self.evaluate(blocks, True)
        assert lg is not None
        return value, blocks.gradient(lg)


def _gathered_field(
    u: np.ndarray, g: np.ndarray, index: Index, w: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    return {"w": w[index]}, {}


def _unit(sums: dict[str, float]) -> dict[str, float]:
    return {"w": 1.0}


def evaluate_similarity(
    similarity: Any, blocks: Blocks, gradient: bool
) -> tuple[float, LinearGradient | None]:
    """Value and :class:`LinearGradient` of any similarity over ``blocks``.

    An :class:`AdditiveSimilarity` reduces block by block; any other similarity
    sees ``u`` and ``g`` gathered over all blocks (its ``value_and_grad`` on whole
    arrays), and its gradient is handed back to each block by slicing.
    """
    if isinstance(similarity, AdditiveSimilarity):
        return similarity.evaluate(blocks, gradient)
    u, g = blocks.gather()
    if not gradient:
        return float(similarity(u, g)), None
    value, w = similarity.value_and_grad(u, g)
    w = np.asarray(w, dtype=np.float64)
    if w.shape != u.shape:
        raise InputError(
            f"similarity {getattr(similarity, 'name', similarity)!r} returned a gradient of "
            f"shape {w.shape} for u of shape {u.shape}"
        )
    return float(value), LinearGradient(_gathered_field, (w,), _unit)
