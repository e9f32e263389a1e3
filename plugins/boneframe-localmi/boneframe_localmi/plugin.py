"""The ``boneframe`` entry point of this package: registers ``local-mi``."""

from __future__ import annotations

from boneframe.hookspecs import hookimpl


@hookimpl
def boneframe_similarities() -> list[type]:
    """The similarities this package provides."""
    from boneframe_localmi.local_mi import LocalMutualInformation

    return [LocalMutualInformation]
