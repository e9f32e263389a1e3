"""Exceptions that carry a message meant for the user.

A :class:`BoneframeError` is a *user* error (bad input, unreadable file, unknown
plugin): the CLI prints its message on one line and exits with code 2, without
a traceback. Anything else is a bug and is reported as such.
"""

from __future__ import annotations


class BoneframeError(Exception):
    """An error caused by the user's input, reported without a traceback."""


class InputError(BoneframeError, ValueError):
    """Invalid array, shape, parameter or option."""


class VolumeIOError(BoneframeError, OSError):
    """A volume file that cannot be read or written."""


class PluginError(BoneframeError, LookupError):
    """An unknown, broken or conflicting plugin strategy."""


class DataWarning(UserWarning):
    """Data that is read but deserves the user's attention (e.g. absent zarr chunks
    read as the fill value); the CLI prints it as one ``warning:`` line."""
