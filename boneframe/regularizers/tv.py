"""Total variation: ``R(x) = weight * sum_i ||(D x)_i||`` (isotropic or anisotropic)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from array_api_compat import is_array_api_obj
from pydantic import BaseModel, ConfigDict, Field

from boneframe.device import array_namespace
from boneframe.errors import InputError
from boneframe.interfaces import Regularizer


class TVParams(BaseModel):
    """Parameters of :class:`TV`."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    weight: float = Field(1.0, ge=0, description="Multiplier of the total variation.")
    anisotropic: bool = Field(
        False, description="Sum |D_a x| over axes (l1) instead of the Euclidean norm (l2,1)."
    )


class TV(Regularizer):
    r"""Total variation of a volume, the paper's TV super-resolution penalty.

    Notes
    -----
    With :math:`D` the forward-difference gradient (Neumann boundaries, as
    :func:`boneframe.operators.gradient`) and :math:`w` the weight,

    .. math::
        R(x) = w \sum_i \|(D x)_i\|_2 \quad\text{(isotropic)}, \qquad
        R(x) = w \sum_i \sum_a |(D_a x)_i| \quad\text{(anisotropic)}.

    The penalty of the differences is :math:`\varphi(v) = w \sum_i \|v_i\|_2`
    (:math:`R(x) = \varphi(D x)`); its proximal step (ADMM's v-step) on a
    difference field :math:`v` is the vectorial shrinkage (isotropic)

    .. math::
        \operatorname{prox}_{\tau\varphi}(v)_i
            = \max\!\Big(1 - \frac{\tau w}{\|v_i\|_2}, 0\Big)\, v_i

    or the component-wise soft threshold
    :math:`\operatorname{sign}(v)\max(|v| - \tau w, 0)` (anisotropic).
    ``R`` is not differentiable (``smooth = False``).

    References
    ----------
    .. [1] L. I. Rudin, S. Osher and E. Fatemi, "Nonlinear total variation based
       noise removal algorithms", Physica D 60, 259–268, 1992.
    .. [2] Y. Wang, J. Yang, W. Yin and Y. Zhang, "A new alternating minimization
       algorithm for total variation image reconstruction", SIAM J. Imaging
       Sci. 1(3), 248–272, 2008.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.zeros((4, 4, 4)); x[2:] = 1.0   # one step of height 1 over a 4 x 4 face
    >>> TV()(x)
    16.0
    """

    name: ClassVar[str] = "tv"
    description: ClassVar[str] = "weight * total variation (isotropic or anisotropic)"
    Params: ClassVar[type[BaseModel]] = TVParams
    params: TVParams
    smooth: ClassVar[bool] = False

    def penalty(self, v: Any) -> float:
        r""":math:`\phi(v)`: the penalty of a gradient field ``v`` of shape ``(3, ...)``
        (numpy or any array-API array)."""
        cached = getattr(self, "_last_prox", None)
        if cached is not None and cached[0] is v:  # known from the shrinkage that made v
            return cached[1]
        if isinstance(v, np.ndarray) or not is_array_api_obj(v):
            v = np.asarray(v)
        xp = array_namespace(v)
        terms = xp.abs(v) if self.params.anisotropic else _norms(v)
        return float(self.params.weight * _sum64(terms))

    def prox_penalty(self, v: Any, tau: float) -> Any:
        """Shrinkage of a gradient field ``v`` (shape ``(3, ...)``), threshold ``tau * weight``.

        Array-API code: ``v`` of numpy, CuPy or any array-API namespace gives an
        array of the same kind."""
        if tau < 0:
            raise InputError(f"the proximal step needs tau >= 0, got {tau}")
        t = tau * self.params.weight
        if isinstance(v, np.ndarray) or not is_array_api_obj(v):
            v = np.asarray(v)
        xp = array_namespace(v)
        if self.params.anisotropic:
            kept = xp.maximum(xp.abs(v) - t, 0.0)
            out = xp.sign(v) * kept
        else:
            norm = _norms(v)
            # max(1 - t/|v|, 0) written to stay finite where |v| = 0 (kept is 0 there);
            # |out_i| = max(|v_i| - t, 0)
            kept = xp.maximum(norm - t, 0.0)
            scale = kept / xp.where(norm > 0, norm, 1.0)
            del norm
            out = v * xp.astype(scale, v.dtype, copy=False)
        # ADMM asks for phi(out) next: it is the sum of the kept norms
        self._last_prox = (out, float(self.params.weight * _sum64(kept)))
        return out


def _sum64(a: Any) -> float:
    """The sum of a real array, accumulated in float64."""
    if isinstance(a, np.ndarray):
        return float(np.sum(a, dtype=np.float64))
    xp = array_namespace(a)
    return float(xp.sum(a, dtype=xp.float64))


def _norms(v: Any) -> Any:
    """Euclidean norm over the first axis (the gradient components)."""
    if isinstance(v, np.ndarray):  # one pass, no temporaries
        out = np.einsum("i...,i...->...", v, v)
        return np.sqrt(out, out=out)
    xp = array_namespace(v)
    out = v[0, ...] * v[0, ...]
    for a in range(1, v.shape[0]):
        out += v[a, ...] * v[a, ...]
    return xp.sqrt(out)
