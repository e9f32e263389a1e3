r"""Connected components of a binary volume, counted block by block and merged across block faces.

One formula for every input: each block is labelled on its own (cc3d); a
partial count keeps the label planes of the faces its block shares with blocks
not merged in yet, and :meth:`Components.combine` joins two partial counts by
the label pairs that touch across their shared faces (and, for
26-connectivity, edges and corners): a union–find over those equivalences
(:func:`scipy.sparse.csgraph.connected_components`). The count of the whole
volume is the same as labelling it in memory, whatever the blocks; a volume in
memory is one block, and nothing is merged.

Faces that no block outside the merged region will touch are dropped at every
merge, so memory stays bounded by a few blocks plus the label planes on the
region's surface.

Used for the Betti numbers :math:`\beta_0` (bone components, 26-connected) and
:math:`\beta_2` (marrow components, 6-connected, that do not touch the volume's
border).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from boneframe.errors import InputError
from boneframe.interfaces import MetricBlock, MetricContext, Quantity

Phase = Literal["bone", "marrow"]

#: Component ids: ``block number << 32 | label``, unique over the volume.
_ID_SHIFT = 32


def _check_connectivity(connectivity: int) -> Literal[6, 26]:
    if connectivity == 6:
        return 6
    if connectivity == 26:
        return 26
    raise InputError(f"connectivity must be 6 or 26, got {connectivity}")


def label(foreground: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    """Labels ``1..n`` of the components of ``foreground`` (``0`` elsewhere) and ``n``."""
    import cc3d

    conn = _check_connectivity(connectivity)
    fg = np.asarray(foreground, dtype=bool)
    if min(fg.shape) == 1:  # one voxel thick: cc3d 4.1's 26-connected labelling can fail there
        from scipy import ndimage

        structure = ndimage.generate_binary_structure(3, 1 if conn == 6 else 3)
        # scipy-stubs allow only an int32/int64 array or None as output; scipy takes a dtype
        labels, n = ndimage.label(fg, structure, output=np.uint32)  # type: ignore[call-overload]
        return labels, int(n)
    labels, n = cc3d.connected_components(
        np.ascontiguousarray(fg), connectivity=conn, return_N=True, out_dtype=np.uint32
    )
    return labels, int(n)


def neighbour_offsets(connectivity: int) -> list[tuple[int, int, int]]:
    """Block-grid offsets to the neighbours a block's voxels can touch.

    The 6 face neighbours for 6-connectivity; faces, edges and corners (26)
    for 26-connectivity.
    """
    conn = _check_connectivity(connectivity)
    return [
        o
        for o in itertools.product((-1, 0, 1), (-1, 0, 1), (-1, 0, 1))
        if o != (0, 0, 0) and (conn == 26 or sum(map(abs, o)) == 1)
    ]


def _face_toward(offset: Sequence[int]) -> tuple[int, int]:
    """The face ``(axis, side)`` whose label plane holds the contact toward ``offset``."""
    axis = next(a for a in range(3) if offset[a] != 0)
    return axis, int(offset[axis] > 0)


def _contact(plane: np.ndarray, offset: Sequence[int], toward: bool) -> np.ndarray:
    """Labels of a block's voxels on the side facing its neighbour at ``offset``.

    ``plane`` is the face of :func:`_face_toward` (of ``offset`` for the block
    the offset starts from, ``toward``; of ``-offset`` for the neighbour). The
    result is indexed by the axes where the offset is 0 (2-D for a face, 1-D
    for an edge, 0-D for a corner).
    """
    first = _face_toward(offset)[0]
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
    plane_a: np.ndarray, plane_b: np.ndarray, offset: Sequence[int], connectivity: int
) -> np.ndarray:
    """Distinct label pairs ``(label in a, label in b)`` touching across an interface.

    Parameters
    ----------
    plane_a, plane_b : numpy.ndarray, 2-D
        The label planes of block ``a`` toward ``offset`` and of block ``b``
        toward ``-offset`` (see :func:`_face_toward`).
    offset : three ints
        Where ``b`` lies from ``a`` in the block grid (entries -1, 0, 1).
    connectivity : {6, 26}

    Returns
    -------
    numpy.ndarray of int64, shape ``(k, 2)``

    Notes
    -----
    Along the axes where the offset is non-zero the voxels must lie on the two
    blocks' facing layers; along the others, 26-connected voxels may be shifted
    by -1, 0 or 1 (6-connected ones face each other exactly).
    """
    conn = _check_connectivity(connectivity)
    sa = _contact(plane_a, offset, toward=True)
    sb = _contact(plane_b, offset, toward=False)
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
        return np.zeros((0, 2), dtype=np.int64)
    codes = np.unique(np.concatenate(found))
    return np.stack([codes >> np.uint64(32), codes & np.uint64(0xFFFFFFFF)], axis=1).astype(
        np.int64
    )


@dataclass(frozen=True)
class _OpenBlock:
    """A merged block that still borders blocks not merged in.

    ``faces`` maps ``(axis, side)`` to the label plane on that face (kept while
    a block outside the region touches it) and ``labels`` to the distinct
    labels on it; ``ids`` maps each label to its component's id (``ids[0]``
    unused).
    """

    faces: dict[tuple[int, int], np.ndarray]
    labels: dict[tuple[int, int], np.ndarray]
    ids: np.ndarray


@dataclass
class ComponentPartial:
    """Components counted over a region of blocks, with what later merges need.

    Attributes
    ----------
    count : int
        Components in the region (joined across the region's inner faces).
    touching : int
        How many of them touch the volume's border.
    region : frozenset of block indices
        The blocks merged in.
    open : dict
        The region's blocks that border blocks not merged in, by index.
    touch_ids : numpy.ndarray of int64
        Ids (sorted) of the components on open faces that touch the border.
    """

    grid: tuple[int, ...]
    connectivity: int
    count: int
    touching: int
    region: frozenset[tuple[int, ...]]
    open: dict[tuple[int, ...], _OpenBlock] = field(default_factory=dict)
    touch_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


@dataclass(frozen=True)
class ComponentCount:
    """Connected components of a phase over the whole volume.

    Attributes
    ----------
    count : int
        The number of components.
    touching : int
        How many touch the volume's border.
    """

    count: int
    touching: int

    @property
    def enclosed(self) -> int:
        """Components that do not touch the border (for the marrow: cavities, :math:`\\beta_2`)."""
        return self.count - self.touching


def _in_grid(index: Sequence[int], grid: Sequence[int]) -> bool:
    return all(0 <= i < n for i, n in zip(index, grid, strict=True))


def _shift(index: Sequence[int], offset: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(i + o) for i, o in zip(index, offset, strict=True))


def _needed_faces(
    index: tuple[int, ...], partial: ComponentPartial, offsets: list[tuple[int, int, int]]
) -> set[tuple[int, int]]:
    """Faces of a block that a block outside the region (inside the grid) still touches."""
    return {
        _face_toward(o)
        for o in offsets
        if _in_grid(other := _shift(index, o), partial.grid) and other not in partial.region
    }


def _prune(partial: ComponentPartial, border_ids: np.ndarray) -> ComponentPartial:
    """Drop faces (and blocks) no block outside the region touches; keep the live touch ids."""
    offsets = neighbour_offsets(partial.connectivity)
    live: list[np.ndarray] = []
    for index in list(partial.open):
        blk = partial.open[index]
        needed = _needed_faces(index, partial, offsets)
        if not needed:
            del partial.open[index]
            continue
        if needed != set(blk.faces):
            blk = _OpenBlock(
                {f: blk.faces[f] for f in needed},
                {f: blk.labels[f] for f in needed},
                blk.ids,
            )
            partial.open[index] = blk
        live.extend(blk.ids[lab] for lab in blk.labels.values())
    if live and border_ids.size:
        partial.touch_ids = np.intersect1d(border_ids, np.concatenate(live))
    else:
        partial.touch_ids = np.zeros(0, np.int64)
    return partial


def block_components(
    foreground: np.ndarray,
    connectivity: int,
    index: tuple[int, ...] = (0, 0, 0),
    grid: tuple[int, ...] = (1, 1, 1),
) -> ComponentPartial:
    """The :class:`ComponentPartial` of one block (the whole volume by default).

    Parameters
    ----------
    foreground : numpy.ndarray of bool, 3-D
        The block's voxels (no halo).
    connectivity : {6, 26}
    index, grid : three ints
        The block's place in the grid of blocks, and the grid's shape.
    """
    conn = _check_connectivity(connectivity)
    labels, n = label(foreground, conn)
    number = int(np.ravel_multi_index(index, grid))
    ids = (np.int64(number) << np.int64(_ID_SHIFT)) + np.arange(n + 1, dtype=np.int64)
    small = np.min_scalar_type(n)  # the planes outlive the task: keep them narrow
    faces, present, on_border = {}, {}, []
    for axis in range(3):
        for side in (0, 1):
            plane = np.take(labels, -side, axis=axis).astype(small)
            neighbour = index[axis] + (1 if side else -1)
            if 0 <= neighbour < grid[axis]:
                faces[(axis, side)] = plane
                found = np.unique(plane)
                present[(axis, side)] = found[found != 0]
            else:
                on_border.append(plane.ravel())
    if on_border and n:
        found = np.unique(np.concatenate(on_border))
        border_labels = found[found != 0]
    else:
        border_labels = np.zeros(0, dtype=np.int64)
    partial = ComponentPartial(
        grid=tuple(grid),
        connectivity=conn,
        count=n,
        touching=int(border_labels.size),
        region=frozenset({tuple(index)}),
        open={tuple(index): _OpenBlock(faces, present, ids)} if faces else {},
    )
    return _prune(partial, ids[border_labels])


def merge_components(x: ComponentPartial, y: ComponentPartial) -> ComponentPartial:
    """Two partial counts of disjoint regions joined: the count of their union.

    Associative and commutative, so blocks may be merged in any order (a tree
    of dask tasks).
    """
    offsets = neighbour_offsets(x.connectivity)
    small, large = (x, y) if len(x.open) <= len(y.open) else (y, x)
    edges = []
    for index, blk in small.open.items():
        for o in offsets:
            other = large.open.get(_shift(index, o))
            if other is None:
                continue
            pairs = interface_pairs(
                blk.faces[_face_toward(o)],
                other.faces[_face_toward(tuple(-v for v in o))],
                o,
                x.connectivity,
            )
            if len(pairs):
                edges.append(np.stack([blk.ids[pairs[:, 0]], other.ids[pairs[:, 1]]], axis=1))
    touch = np.union1d(x.touch_ids, y.touch_ids)
    count, touching = x.count + y.count, x.touching + y.touching
    merged = ComponentPartial(
        grid=x.grid,
        connectivity=x.connectivity,
        count=count,
        touching=touching,
        region=x.region | y.region,
        open={**x.open, **y.open},
    )
    if edges:
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        nodes, inverse = np.unique(np.concatenate(edges), return_inverse=True)
        pairs = inverse.reshape(-1, 2)
        graph = coo_matrix(
            (np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])),
            shape=(nodes.size, nodes.size),
        )
        n_comp, comp = connected_components(graph.tocsr(), directed=False)
        root = np.full(n_comp, np.iinfo(np.int64).max)
        np.minimum.at(root, comp, nodes)
        touches = np.isin(nodes, touch)
        per_comp = np.bincount(comp, weights=touches, minlength=n_comp)
        merged.count -= nodes.size - n_comp
        merged.touching -= int(np.sum(per_comp - (per_comp > 0)))
        new_id = root[comp]
        for index, blk in merged.open.items():  # the partials' blocks are not changed
            at = np.clip(np.searchsorted(nodes, blk.ids), 0, nodes.size - 1)
            hit = nodes[at] == blk.ids
            if np.any(hit):
                ids = blk.ids.copy()
                ids[hit] = new_id[at[hit]]
                merged.open[index] = _OpenBlock(blk.faces, blk.labels, ids)
        touch = np.union1d(touch[~np.isin(touch, nodes)], new_id[touches])
    return _prune(merged, touch)


@dataclass(frozen=True)
class Components(Quantity):
    """The connected components of the bone or the marrow: a :class:`ComponentCount`.

    Parameters
    ----------
    phase : {"bone", "marrow"}
    connectivity : {6, 26}
        26 for the bone (voxels are closed cubes), 6 for the marrow.
    """

    halo: ClassVar[int] = 0
    phase: Phase = "bone"
    connectivity: int = 26

    def block(self, b: MetricBlock) -> ComponentPartial:
        fg = b.bone if self.phase == "bone" else ~b.bone
        return block_components(fg, self.connectivity, b.index, b.grid)

    def combine(self, x: ComponentPartial, y: ComponentPartial) -> ComponentPartial:
        return merge_components(x, y)

    def finish(self, total: ComponentPartial, context: MetricContext) -> ComponentCount:
        return ComponentCount(total.count, total.touching)


#: β0: bone components, 26-connected.
BONE_COMPONENTS = Components("bone", 26)
#: The marrow's components, 6-connected; those off the border are the cavities (β2).
MARROW_COMPONENTS = Components("marrow", 6)


def count_components_of(mask: Any, connectivity: int = 26, *, invert: bool = False) -> Any:
    """:class:`ComponentCount` of a binary volume (numpy: one block; dask: its chunks).

    Parameters
    ----------
    mask : array, dask array or Volume
        Non-zero is foreground.
    connectivity : {6, 26}
    invert : bool
        Count the background's components instead.
    """
    from boneframe.metrics.blocks import VolumeBlocks

    blocks = VolumeBlocks.of(_as_bool(mask))
    blocks = blocks.binarised(MetricContext(shape=blocks.shape, threshold=0.5))
    q = Components("marrow" if invert else "bone", _check_connectivity(connectivity))
    return q.finish(blocks.map_reduce(q.block, combine=q.combine), blocks.context)  # type: ignore[arg-type]


def _as_bool(mask: Any) -> Any:
    data = getattr(mask, "data", mask) if hasattr(mask, "voxel_size") else mask
    if not hasattr(data, "dtype"):
        data = np.asarray(data)
    if data.ndim != 3:
        raise InputError(f"the bone mask must be a 3D array, got shape {data.shape}")
    return data if data.dtype == bool else data != 0
