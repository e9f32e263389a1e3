"""Phantoms too large for memory, written chunk by chunk.

Nothing else is chunk-specific: the forward model (the operators of
:mod:`boneframe.operators` take dask arrays: halo convolution, chunk-aligned
decimation), kernel estimation (:mod:`boneframe.kernel` sums over boxes of dask
input), super-resolution (:mod:`boneframe.superres` solves dask input block by
block) and the metrics (:func:`boneframe.metrics.measure` reduces chunks) run
the same code on dask and numpy arrays, on the active dask scheduler
(:func:`boneframe.compute.use_scheduler` connects a cluster).

* :mod:`~boneframe.chunked.phantom`: phantoms and their HR-pQCT written chunk by chunk.
"""
