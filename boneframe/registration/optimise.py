"""The rigid registration itself: micro-CT (moving) onto HR-pQCT (fixed).

The HR-pQCT scan is fixed, the micro-CT moving; the transform maps fixed points to
moving points (ITK's convention). The optimisation (SimpleITK: ``Euler3DTransform``,
Mattes mutual information, regular-step gradient descent, multi-resolution) runs on
two images made alike first:

1. the micro-CT is Gaussian-smoothed to the HR-pQCT's resolution (FWHM ≈ 140 µm)
   and reduced to about the HR-pQCT's spacing, so both see the same structure and
   the optimisation costs what the HR-pQCT's size costs;
2. both are high-pass filtered (minus a Gaussian of σ = 0.5 mm), which removes
   the scanners' shading; mutual information takes care of the different,
   non-linear grey-level maps.

References
----------
Mattes, Haynor, Vesselle, Lewellen & Eubank (2003), "PET-CT image registration in
the chest using free-form deformations", IEEE TMI 22(1):120–128.
Yaniv, Lowekamp, Johnson & Beare (2018), "SimpleITK image-analysis notebooks",
J Digit Imaging 31:290–303.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import boneframe
from boneframe.errors import BoneframeError, InputError
from boneframe.registration.params import RegistrationParams
from boneframe.registration.resample import overlap_fraction, smooth_and_shrink
from boneframe.registration.sitk import (
    RigidTransform,
    import_sitk,
    innermost_transform,
    read_transform,
    to_sitk,
)
from boneframe.volume import Volume

__all__ = [
    "RegistrationError",
    "RegistrationResult",
    "check_pair",
    "estimate_transform",
    "library_versions",
    "prepare_images",
]


class RegistrationError(BoneframeError):
    """A registration that did not succeed (no improvement, too little overlap)."""


@dataclass
class RegistrationResult:
    """What :func:`estimate_transform` found and how.

    Attributes
    ----------
    transform : RigidTransform
        Fixed (HR-pQCT) → moving (micro-CT) point map.
    initial_transform : RigidTransform
        Where the optimisation started.
    metric_initial, metric_final : float
        Mattes mutual information (ITK's sign: lower is better) at the start and
        the end, on the full-resolution level with the same samples.
    iterations : list of int
        Optimiser iterations per resolution level.
    stop_reason : str
        The optimiser's stop condition on the last level.
    overlap : float
        Share of HR-pQCT voxels mapped inside the micro-CT.
    times_s, cpu_s : dict
        Wall and CPU times (all threads) of the stages (s).
    params : RegistrationParams
    versions : dict
        Library versions.
    history : list of (level, iteration, metric)
    """

    transform: RigidTransform
    initial_transform: RigidTransform
    metric_initial: float
    metric_final: float
    iterations: list[int]
    stop_reason: str
    overlap: float
    times_s: dict[str, float]
    cpu_s: dict[str, float]
    params: RegistrationParams
    versions: dict[str, str]
    history: list[tuple[int, int, float]] = field(default_factory=list)

    @property
    def rotation_angle_deg(self) -> float:
        """Angle of the found rotation (degrees)."""
        return self.transform.rotation_angle_deg

    @property
    def euler_angles_deg(self) -> tuple[float, float, float]:
        """ITK Euler angles (X, Y, Z) of the found rotation (degrees)."""
        return self.transform.euler_angles_deg()

    @property
    def improved(self) -> bool:
        """True when the final metric is better (lower) than the initial one."""
        return self.metric_final < self.metric_initial

    def to_json(self) -> dict[str, Any]:
        """Every parameter and figure as plain JSON values."""
        return {
            "params": self.params.model_dump(mode="json"),
            "rotation_angle_deg": self.rotation_angle_deg,
            "euler_angles_deg": list(self.euler_angles_deg),
            "translation_um": list(self.transform.translation_um),
            "transform": self.transform.to_json(),
            "initial_transform": self.initial_transform.to_json(),
            "metric": "Mattes mutual information (ITK sign: lower is better)",
            "metric_initial": self.metric_initial,
            "metric_final": self.metric_final,
            "iterations": self.iterations,
            "iterations_total": int(sum(self.iterations)),
            "stop_reason": self.stop_reason,
            "overlap": self.overlap,
            "times_s": self.times_s,
            "cpu_s": self.cpu_s,
            "versions": self.versions,
            "history": [list(h) for h in self.history],
        }


def library_versions() -> dict[str, str]:
    """Versions of the libraries a registration result depends on."""
    import scipy

    sitk = import_sitk()
    return {
        "boneframe": boneframe.__version__,
        "SimpleITK": sitk.Version_VersionString(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "python": platform.python_version(),
    }


def check_pair(moving: Volume, fixed: Volume) -> None:
    """Refuse a pair that a rigid registration cannot handle.

    Raises
    ------
    InputError
        Unknown voxel size, a volume too small, or a reflection between the scans
        (determinants of the directions of opposite sign: no rotation undoes a
        mirror, so it must be fixed in the scans' headers or arrays first).
    """
    for name, vol in (("micro-CT (moving)", moving), ("HR-pQCT (fixed)", fixed)):
        if vol.voxel_size is None:
            raise InputError(f"the voxel size of the {name} scan is unknown: give it (µm)")
        if min(vol.shape) < 4:
            raise InputError(f"the {name} scan is too small to register: shape {vol.shape}")
        if abs(np.linalg.det(vol.direction)) < 1e-6:
            raise InputError(f"the direction matrix of the {name} scan is singular")
    dm, df = np.linalg.det(moving.direction), np.linalg.det(fixed.direction)
    if np.sign(dm) != np.sign(df):
        raise InputError(
            "the scans are mirror images of each other: det(direction) is "
            f"{dm:+.3f} for the micro-CT and {df:+.3f} for the HR-pQCT; a rigid "
            "registration cannot undo a reflection. Reverse one array axis (and its "
            "direction column) of one scan, or fix its header, and run again"
        )


def _highpass(image: Any, sigma_mm: float) -> Any:
    sitk = import_sitk()
    image = sitk.Cast(image, sitk.sitkFloat32)
    if sigma_mm <= 0:
        return image
    return image - sitk.SmoothingRecursiveGaussian(image, sigma_mm)


def _initial(params: RegistrationParams, fixed: Any, moving: Any) -> RigidTransform:
    sitk = import_sitk()
    if params.init in ("geometry", "moments"):
        mode = (
            sitk.CenteredTransformInitializerFilter.GEOMETRY
            if params.init == "geometry"
            else sitk.CenteredTransformInitializerFilter.MOMENTS
        )
        tx = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(), mode)
        return RigidTransform.from_sitk(tx)
    return read_transform(params.init)


def _sampling(params: RegistrationParams, fixed_size: int) -> list[float]:
    """Sampling share per level, capped at ``max_samples`` samples."""
    out = []
    for s in params.shrink_factors:
        n = max(fixed_size / s**3, 1.0)
        share = min(max(params.sampling, params.min_samples / n), params.max_samples / n)
        out.append(float(min(share, 1.0)))
    return out


def _method(params: RegistrationParams, fixed_size: int, multires: bool = True) -> Any:
    sitk = import_sitk()
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=params.bins)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    shares = _sampling(params, fixed_size)
    if multires:
        reg.SetMetricSamplingPercentagePerLevel(shares, params.seed + 1)
        reg.SetShrinkFactorsPerLevel(list(params.shrink_factors))
        reg.SetSmoothingSigmasPerLevel(list(params.smoothing_sigmas_mm))
    else:
        reg.SetMetricSamplingPercentage(shares[-1], params.seed + 1)
        reg.SetShrinkFactorsPerLevel([1])
        reg.SetSmoothingSigmasPerLevel([0.0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetMetricUseFixedImageGradientFilter(False)
    reg.SetMetricUseMovingImageGradientFilter(False)
    reg.SetInterpolator(sitk.sitkLinear)
    return reg


@contextmanager
def _itk_threads(n: int) -> Iterator[None]:
    """ITK's default thread count set to ``n`` (0: unchanged) for the block.

    The metric's threads add up their histograms in varying order, and only the
    global default reaches the metric inside the registration method.
    """
    sitk = import_sitk()
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    if n:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


def _metric(params: RegistrationParams, fixed: Any, moving: Any, tx: RigidTransform) -> float:
    """Mattes MI of the pair under ``tx``, on the finest level's samples."""
    reg = _method(params, fixed.GetNumberOfPixels(), multires=False)
    reg.SetInitialTransform(tx.to_sitk(), inPlace=False)
    with _itk_errors("evaluating the metric"), _itk_threads(params.threads):
        return float(reg.MetricEvaluate(fixed, moving))


@contextmanager
def _itk_errors(what: str) -> Iterator[None]:
    """ITK's exceptions (many lines, C++ file names) as one-line registration errors."""
    try:
        yield
    except RuntimeError as exc:
        text = " ".join(str(exc).split())
        reason = text.split("ITK ERROR:", 1)[-1].split("): ", 1)[-1] if text else "unknown"
        raise RegistrationError(
            f"registration failed while {what}: {reason} Check that the scans overlap and "
            "show the same bone; try --init moments or a starting .tfm"
        ) from exc


def prepare_images(
    moving: Volume, fixed: Volume, params: RegistrationParams
) -> tuple[Any, Any, Any, Any]:
    """The images the optimisation compares.

    Returns
    -------
    (fixed_hp, moving_hp, fixed_raw, moving_low) : tuple of SimpleITK images
        High-passed HR-pQCT and reduced, high-passed micro-CT; and the two
        before the high-pass (for the moments initialiser).
    """
    fixed_raw = to_sitk(fixed, np.asarray(fixed.data, dtype=np.float32))
    target = min(fixed.require_voxel_size())
    low, low_vs = smooth_and_shrink(moving, target, params.moving_fwhm_um)
    moving_low = to_sitk(Volume(low, low_vs, moving.origin, moving.direction), low)
    return (
        _highpass(fixed_raw, params.highpass_sigma_mm),
        _highpass(moving_low, params.highpass_sigma_mm),
        fixed_raw,
        moving_low,
    )


def estimate_transform(
    moving: Volume, fixed: Volume, params: RegistrationParams | None = None
) -> RegistrationResult:
    """Rigidly register a micro-CT scan (moving) to an HR-pQCT scan (fixed).

    Parameters
    ----------
    moving : Volume
        Micro-CT at its own resolution (any voxel size; numpy or dask).
    fixed : Volume
        HR-pQCT scan.
    params : RegistrationParams, optional
        Defaults work on HR-pQCT (≈ 60–82 µm) / micro-CT (≈ 10–40 µm) pairs.

    Returns
    -------
    RegistrationResult
        The transform (fixed → moving points), metric values, iterations, stop
        reason, overlap, times and library versions. It does *not* check that
        the registration succeeded: :func:`~boneframe.registration.register` does.

    Examples
    --------
    >>> result = estimate_transform(micro_ct, hr_pqct)                  # doctest: +SKIP
    >>> f = resample_to_fine_grid(micro_ct, hr_pqct, result.transform)  # doctest: +SKIP
    """
    sitk = import_sitk()
    params = params or RegistrationParams()
    check_pair(moving, fixed)
    t0, c0 = time.perf_counter(), time.process_time()
    fixed_hp, moving_hp, fixed_raw, moving_low = prepare_images(moving, fixed, params)
    t1, c1 = time.perf_counter(), time.process_time()
    start = _initial(params, fixed_raw, moving_low)
    del fixed_raw, moving_low

    reg = _method(params, fixed_hp.GetNumberOfPixels())
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=params.learning_rate,
        minStep=params.min_step,
        numberOfIterations=params.iterations,
        relaxationFactor=params.relaxation,
        gradientMagnitudeTolerance=1e-8,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetInitialTransform(start.to_sitk(), inPlace=False)
    history: list[tuple[int, int, float]] = []
    reg.AddCommand(
        sitk.sitkIterationEvent,
        lambda: history.append(
            (int(reg.GetCurrentLevel()), int(reg.GetOptimizerIteration()), reg.GetMetricValue())
        ),
    )
    with _itk_errors("optimising"), _itk_threads(params.threads):
        final_tx = reg.Execute(fixed_hp, moving_hp)
    t2, c2 = time.perf_counter(), time.process_time()
    result_tx = RigidTransform.from_sitk(innermost_transform(final_tx))
    levels = len(params.shrink_factors)
    iterations = [sum(1 for h in history if h[0] == lv) for lv in range(levels)]
    m0 = _metric(params, fixed_hp, moving_hp, start)
    m1 = _metric(params, fixed_hp, moving_hp, result_tx)
    overlap = overlap_fraction(moving, fixed, result_tx)
    t3, c3 = time.perf_counter(), time.process_time()
    return RegistrationResult(
        transform=result_tx,
        initial_transform=start,
        metric_initial=m0,
        metric_final=m1,
        iterations=iterations,
        stop_reason=reg.GetOptimizerStopConditionDescription(),
        overlap=overlap,
        times_s={"prepare": t1 - t0, "optimise": t2 - t1, "evaluate": t3 - t2},
        cpu_s={"prepare": c1 - c0, "optimise": c2 - c1, "evaluate": c3 - c2},
        params=params,
        versions=library_versions(),
        history=history,
    )
