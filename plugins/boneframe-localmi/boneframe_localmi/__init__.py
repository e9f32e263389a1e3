"""boneframe-localmi: local mutual information for boneframe's kernel estimation.

Provides the ``local-mi`` similarity (:class:`LocalMutualInformation`), registered
through the ``boneframe`` entry-point group by :mod:`boneframe_localmi.plugin`.
"""

from __future__ import annotations

from boneframe_localmi.local_mi import LocalMutualInformation, LocalMutualInformationParams

__version__ = "0.1.0"

__all__ = ["LocalMutualInformation", "LocalMutualInformationParams", "__version__"]
