"""Large volumes: dask arrays over zarr chunks, reduced or solved block by block.

Every function here gives the same numbers as its in-memory counterpart (the
tests say to what tolerance) while holding only a few chunks in memory at a
time; with a ``dask.distributed`` client active (:mod:`boneframe.chunked.cluster`)
the same code runs on a cluster.
"""
