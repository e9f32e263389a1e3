"""boneframe: blurring-kernel estimation and TV super-resolution for bone CT."""

__version__ = "0.1.0"
