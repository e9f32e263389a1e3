"""Micro-CT → HR-pQCT rigid registration and resampling onto the ×p grid.

The data path, one concept per module:

* :mod:`~boneframe.registration.params`: :class:`RegistrationParams`;
* :mod:`~boneframe.registration.optimise`: :func:`estimate_transform` (Mattes MI,
  SimpleITK), :class:`RegistrationResult`;
* :mod:`~boneframe.registration.resample`: the fine grid (:func:`fine_grid`) and
  :func:`resample_to_fine_grid`;
* :mod:`~boneframe.registration.workflow`: :func:`register` (Volume in, Volume
  out), :func:`register_and_resample`, :func:`run_registration` (files);
* :mod:`~boneframe.registration.sitk`: Volume ↔ SimpleITK image, :class:`RigidTransform`
  and its ``.tfm`` files;
* :mod:`~boneframe.registration.phantom`: an unregistered pair with its truth.

SimpleITK is imported only inside the functions that need it.

Examples
--------
>>> from boneframe.registration import register
>>> result, f = register(micro_ct, hr_pqct, p=2)   # doctest: +SKIP
"""

from boneframe.registration.optimise import (
    RegistrationError,
    RegistrationResult,
    check_pair,
    estimate_transform,
    library_versions,
    prepare_images,
)
from boneframe.registration.params import RegistrationParams
from boneframe.registration.resample import (
    FineGrid,
    fine_grid,
    overlap_fraction,
    resample_to_fine_grid,
    smooth_and_shrink,
)
from boneframe.registration.sitk import (
    RigidTransform,
    from_sitk,
    read_transform,
    to_sitk,
    transform_difference,
    write_transform,
)
from boneframe.registration.workflow import register, register_and_resample, run_registration

__all__ = [
    "FineGrid",
    "RegistrationError",
    "RegistrationParams",
    "RegistrationResult",
    "RigidTransform",
    "check_pair",
    "estimate_transform",
    "fine_grid",
    "from_sitk",
    "library_versions",
    "overlap_fraction",
    "prepare_images",
    "read_transform",
    "register",
    "register_and_resample",
    "resample_to_fine_grid",
    "run_registration",
    "smooth_and_shrink",
    "to_sitk",
    "transform_difference",
    "write_transform",
]
