"""Large volumes: dask arrays over zarr chunks, reduced or solved block by block.

Every function here gives the same numbers as its in-memory counterpart (the
tests say to what tolerance) while holding only a few chunks in memory at a
time; with a ``dask.distributed`` client active (:mod:`boneframe.chunked.cluster`)
the same code runs on a cluster.

* :mod:`~boneframe.chunked.operators`: forward model (halo convolution, decimation);
* :mod:`~boneframe.chunked.kernel`: kernel estimation reduced over boxes
  (:func:`boneframe.kernel.estimate_kernel` dispatches dask input here);
* :mod:`~boneframe.chunked.metrics`: PSNR, Otsu, DICE, BV/TV, Euler, Betti, Conn.D;
* :mod:`~boneframe.chunked.thickness`: local thickness with a measured halo;
* :mod:`~boneframe.chunked.superres`: block-wise super-resolution;
* :mod:`~boneframe.chunked.phantom`: phantoms written chunk by chunk;
* :mod:`~boneframe.chunked.cluster`: ``use_scheduler(address)``.

The submodules import dask on use; import them directly.
"""
