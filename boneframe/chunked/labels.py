r"""Connected components of a chunked binary volume, counted exactly.

Each chunk is labelled on its own (cc3d); the labels of one chunk's faces are
kept, and for every pair of neighbouring chunks (across a face, and for
26-connectivity also across an edge or a corner) the pairs of labels whose
voxels touch across the interface are collected. A union–find over those
equivalences (:func:`scipy.sparse.csgraph.connected_components` on the label
graph) then gives the components of the whole volume: the count is the same as
labelling the volume in memory, whatever the chunking.

Only the six face planes of each chunk's labelling outlive its task, so memory
stays bounded by a few chunks plus the face planes and the label graph.

Used for the Betti numbers :math:`\beta_0` (bone components, 26-connected) and
:math:`\beta_2` (marrow components, 6-connected, that do not touch the volume's
border) of :func:`boneframe.metrics.morphometry.count_components` and
:func:`~boneframe.metrics.morphometry.count_cavities`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from boneframe.errors import InputError

#: ``(at_low, at_high)`` per axis: which faces of a chunk lie on the volume's border.
Border = tuple[tuple[bool, bool], ...]


@dataclass(frozen=True)
class BlockLabels:
    """What the merge needs of one chunk's labelling.

    Attributes
    ----------
    n : int
        Number of components inside the chunk (labels ``1..n``).
    faces : tuple of numpy.ndarray
        The label planes on the chunk's faces, in the order axis 0 low, axis 0
        high, axis 1 low, ..., axis 2 high (the narrowest unsigned integer
        type that holds ``n``; 0 is background).
    border_labels : numpy.ndarray
        The distinct labels (uint32) on the chunk's faces that lie on the
        volume's border.
    """

    n: int
    faces: tuple[np.ndarray, ...]
    border_labels: np.ndarray


def _check_connectivity(connectivity: int) -> int:
    if connectivity not in (6, 26):
        raise InputError(f"connectivity must be 6 or 26, got {connectivity}")
    return int(connectivity)


def label_block(
    mask: np.ndarray, connectivity: int, border: Border, *, invert: bool = False
) -> BlockLabels:
    """Label one chunk and keep its face planes.

    Parameters
    ----------
    mask : numpy.ndarray, 3-D
        The chunk's voxels (no halo); non-zero is foreground.
    connectivity : {6, 26}
        Voxel connectivity of the foreground.
    border : three ``(at_low, at_high)`` pairs
        Which faces of the chunk lie on the volume's border.
    invert : bool
        Label the background (``mask == 0``) instead.

    Returns
    -------
    BlockLabels
    """
    import cc3d

    fg = np.asarray(mask)
    fg = fg == 0 if invert else (fg if fg.dtype == bool else fg != 0)
    conn = _check_connectivity(connectivity)
    if min(fg.shape) == 1:  # one voxel thick: cc3d 4.1's 26-connected labelling can fail there
        from scipy import ndimage

        structure = ndimage.generate_binary_structure(3, 1 if conn == 6 else 3)
        labels, n = ndimage.label(fg, structure, output=np.uint32)
    else:
        labels, n = cc3d.connected_components(
            np.ascontiguousarray(fg), connectivity=conn, return_N=True, out_dtype=np.uint32
        )
    small = np.min_scalar_type(n)  # the planes outlive the task: keep them narrow
    faces = tuple(
        np.take(labels, index, axis=axis).astype(small) for axis in range(3) for index in (0, -1)
    )
    on_border = [
        faces[2 * axis + side] for axis in range(3) for side in (0, 1) if border[axis][side]
    ]
    if on_border and n:
        found = np.unique(np.concatenate([f.ravel() for f in on_border]))
        border_labels = found[found != 0].astype(np.uint32)
    else:
        border_labels = np.zeros(0, dtype=np.uint32)
    return BlockLabels(int(n), faces, border_labels)


def neighbour_offsets(connectivity: int) -> list[tuple[int, int, int]]:
    """Chunk-grid offsets to the neighbours whose interfaces must be merged.

    One of each pair ``±o`` (the lexicographically positive one): the six
    face neighbours halved for 6-connectivity; faces, edges and corners (13)
    for 26-connectivity.
    """
    conn = _check_connectivity(connectivity)
    out = []
    for o in itertools.product((-1, 0, 1), repeat=3):
        if o <= (0, 0, 0):
            continue
        if conn == 6 and sum(map(abs, o)) != 1:
            continue
        out.append(o)
    return out


def _contact(faces: tuple[np.ndarray, ...], offset: Sequence[int], toward: bool) -> np.ndarray:
    """Labels of a chunk's voxels on the side facing its neighbour at ``offset``.

    ``toward`` is true for the chunk the offset starts from (its high side where
    the offset is +1), false for the neighbour (its low side there). The result
    is indexed by the axes where the offset is 0 (2-D for a face, 1-D for an
    edge, 0-D for a corner).
    """
    fixed = [a for a in range(3) if offset[a] != 0]
    first = fixed[0]
    high = (offset[first] > 0) == toward
    plane = faces[2 * first + int(high)]
    index: list[int | slice] = []
    for a in range(3):
        if a == first:
            continue
        if offset[a] == 0:
            index.append(slice(None))
        else:
            index.append(-1 if (offset[a] > 0) == toward else 0)
    return plane[tuple(index)]


def interface_pairs(
    a: BlockLabels, b: BlockLabels, offset: Sequence[int], connectivity: int
) -> np.ndarray:
    """Distinct label pairs ``(label in a, label in b)`` touching across an interface.

    Parameters
    ----------
    a, b : BlockLabels
        Two chunks, ``b`` at chunk-grid ``offset`` (entries in -1, 0, 1) from ``a``.
    offset : three ints
    connectivity : {6, 26}

    Returns
    -------
    numpy.ndarray of uint32, shape ``(k, 2)``

    Notes
    -----
    Along the axes where the offset is non-zero the voxels must lie on the two
    chunks' facing layers; along the others, 26-connected voxels may be shifted
    by -1, 0 or 1 (6-connected ones face each other exactly).
    """
    conn = _check_connectivity(connectivity)
    if a.n == 0 or b.n == 0:
        return np.zeros((0, 2), dtype=np.uint32)
    sa = _contact(a.faces, offset, toward=True)
    sb = _contact(b.faces, offset, toward=False)
    free = sa.ndim
    shifts = itertools.product((-1, 0, 1), repeat=free) if conn == 26 else [(0,) * free]
    found = []
    for shift in shifts:
        ia = tuple(slice(max(0, -d), n - max(0, d)) for d, n in zip(shift, sa.shape, strict=True))
        ib = tuple(slice(max(0, d), n - max(0, -d)) for d, n in zip(shift, sa.shape, strict=True))
        la, lb = np.ravel(sa[ia]), np.ravel(sb[ib])
        keep = (la != 0) & (lb != 0)
        if np.any(keep):
            found.append(la[keep].astype(np.uint64) << np.uint64(32) | lb[keep].astype(np.uint64))
    if not found:
        return np.zeros((0, 2), dtype=np.uint32)
    codes = np.unique(np.concatenate(found))
    return np.stack([codes >> np.uint64(32), codes & np.uint64(0xFFFFFFFF)], axis=1).astype(
        np.uint32
    )


def merge_components(
    counts: Sequence[int],
    pairs: Sequence[tuple[int, int, np.ndarray]],
    border_labels: Sequence[np.ndarray],
) -> tuple[int, int]:
    """Components of the whole volume from the chunks' labels and equivalences.

    Parameters
    ----------
    counts : sequence of int
        Number of labels of each chunk (in a fixed chunk order).
    pairs : sequence of ``(chunk a, chunk b, label pairs)``
        Chunk indices into ``counts`` and the :func:`interface_pairs` between them.
    border_labels : sequence of numpy.ndarray
        Each chunk's labels on the volume's border.

    Returns
    -------
    (int, int)
        The number of components and how many of them touch the volume's border.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    offsets = np.concatenate([[0], np.cumsum(np.asarray(counts, dtype=np.int64))])
    total = int(offsets[-1])
    if total == 0:
        return 0, 0
    rows = [offsets[ia] + p[:, 0].astype(np.int64) - 1 for ia, _, p in pairs if len(p)]
    cols = [offsets[ib] + p[:, 1].astype(np.int64) - 1 for _, ib, p in pairs if len(p)]
    if rows:
        r, c = np.concatenate(rows), np.concatenate(cols)
        graph = coo_matrix((np.ones(r.size, dtype=np.int8), (r, c)), shape=(total, total))
        n, component = connected_components(graph.tocsr(), directed=False)
    else:
        n, component = total, np.arange(total)
    ids = [offsets[i] + lab.astype(np.int64) - 1 for i, lab in enumerate(border_labels) if len(lab)]
    touching = np.unique(component[np.concatenate(ids)]).size if ids else 0
    return int(n), int(touching)


def block_borders(numblocks: Sequence[int]) -> dict[tuple[int, ...], Border]:
    """The :data:`Border` flags of every chunk of a chunk grid, by chunk index."""
    return {
        idx: tuple((i == 0, i == nb - 1) for i, nb in zip(idx, numblocks, strict=True))
        for idx in np.ndindex(*numblocks)
    }


def components_delayed(mask: Any, connectivity: int, *, invert: bool = False) -> Any:
    """A dask ``Delayed`` of ``(components, components touching the border)``.

    Parameters
    ----------
    mask : dask.array.Array, 3-D
        The binary volume (non-zero is foreground), any chunking.
    connectivity : {6, 26}
    invert : bool
        Count the background's components instead.

    Returns
    -------
    dask.delayed.Delayed
        Compute it (alone or with other collections, in one ``dask.compute``)
        to get the pair of ints.

    Notes
    -----
    The graph is written out directly (one labelling task per chunk, one
    summary of it, one task per interface and one merge), which builds in
    milliseconds for thousands of chunks where ``dask.delayed`` calls would not.
    """
    from dask.base import tokenize
    from dask.delayed import Delayed
    from dask.highlevelgraph import HighLevelGraph

    conn = _check_connectivity(connectivity)
    if mask.ndim != 3:
        raise InputError(f"the mask must be 3-D, got shape {mask.shape}")
    grid = tuple(mask.numblocks)
    borders = block_borders(grid)
    order = {idx: k for k, idx in enumerate(np.ndindex(*grid))}
    token = tokenize(mask.name, conn, invert)
    lab, summary, pair, merge = (f"{p}-{token}" for p in ("cc-label", "cc-sum", "cc-pair", "cc"))
    dsk: dict[Any, Any] = {}
    for idx in order:
        dsk[(lab, *idx)] = (_label_task, (mask.name, *idx), conn, borders[idx], invert)
        dsk[(summary, *idx)] = (_summary, (lab, *idx))
    index = []
    for idx in order:
        for off in neighbour_offsets(conn):
            other = tuple(i + o for i, o in zip(idx, off, strict=True))
            if other in order:
                dsk[(pair, len(index))] = (interface_pairs, (lab, *idx), (lab, *other), off, conn)
                index.append((order[idx], order[other]))
    dsk[merge] = (
        _merge_task,
        [(summary, *idx) for idx in order],
        [(pair, k) for k in range(len(index))],
        np.asarray(index, dtype=np.int64).reshape(-1, 2),
    )
    graph = HighLevelGraph.from_collections(merge, dsk, dependencies=[mask])
    return Delayed(merge, graph)


def _label_task(mask: np.ndarray, connectivity: int, border: Border, invert: bool) -> BlockLabels:
    return label_block(mask, connectivity, border, invert=invert)


def _summary(labels: BlockLabels) -> tuple[int, np.ndarray]:
    return labels.n, labels.border_labels


def _merge_task(
    summaries: Sequence[tuple[int, np.ndarray]], pairs: Sequence[np.ndarray], index: np.ndarray
) -> tuple[int, int]:
    return merge_components(
        [n for n, _ in summaries],
        [(int(a), int(b), p) for (a, b), p in zip(index, pairs, strict=True)],
        [border for _, border in summaries],
    )


def count_components_chunked(mask: Any, connectivity: int = 26) -> int:
    r"""Number of connected foreground components of a chunked binary volume.

    Equals :func:`boneframe.metrics.morphometry.count_components` (for
    ``connectivity=26``) of the volume in memory.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> m = np.zeros((8, 8, 8), bool); m[3, 3, 3] = m[4, 4, 4] = True
    >>> count_components_chunked(da.from_array(m, chunks=4))  # across a chunk corner
    1
    >>> count_components_chunked(da.from_array(m, chunks=4), connectivity=6)
    2
    """
    import dask

    (result,) = dask.compute(components_delayed(_as_dask(mask), connectivity))
    return int(result[0])


def count_cavities_chunked(mask: Any) -> int:
    r"""Enclosed marrow cavities of a chunked bone mask: :math:`\beta_2`.

    Marrow (zero) components, 6-connected, that do not touch the volume's
    border; equals :func:`boneframe.metrics.morphometry.count_cavities`.
    """
    import dask

    (result,) = dask.compute(components_delayed(_as_dask(mask), 6, invert=True))
    return int(result[0] - result[1])


def _as_dask(mask: Any) -> Any:
    import dask.array as da

    data = getattr(mask, "data", mask) if hasattr(mask, "voxel_size") else mask
    if isinstance(data, da.Array):
        return data
    arr = np.asarray(data)
    return da.from_array(arr, chunks=tuple(min(64, n) for n in arr.shape))
