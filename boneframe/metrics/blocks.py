"""Where a measured volume is cut into blocks: the whole volume in memory, a dask volume's chunks.

:class:`VolumeBlocks` hands each block to a function as a
:class:`~boneframe.interfaces.MetricBlock` (grey values, bone, reference, mask,
border flags, position, and as many voxels of the neighbours' bone as asked)
and reduces the results with :func:`boneframe.compute.map_reduce`: called here
on a numpy volume (one block), one dask task per chunk on a dask volume, on the
active scheduler (a ``dask.distributed`` cluster included). The reference and
the mask are cut into the volume's chunks. Each pass reads every chunk once.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from boneframe.compute import add, is_lazy, map_reduce, map_reduce_delayed
from boneframe.errors import InputError
from boneframe.interfaces import MetricBlock, MetricContext
from boneframe.metrics._arrays import check_volume_array


def _data(x: Any) -> Any:
    """The array of ``x`` (a Volume's data)."""
    return getattr(x, "data", x) if hasattr(x, "voxel_size") else x


@dataclass(frozen=True)
class _Layout:
    """What every block task shares: the grid, the voxel offsets and the context."""

    context: MetricContext
    grid: tuple[int, ...]
    starts: tuple[tuple[int, ...], ...]
    halo: int


def _block_task(
    index: tuple[int, ...],
    volume: np.ndarray,
    grown: np.ndarray,
    reference: np.ndarray | None,
    mask: np.ndarray | None,
    layout: _Layout,
    fn: Callable[..., Any],
    *shared: Any,
) -> Any:
    """``fn(block, *shared)`` for the block at ``index`` (a dask task, or a call here)."""
    volume = np.asarray(volume)
    grown = np.asarray(grown)
    block = MetricBlock(
        volume=volume.view(np.uint8) if volume.dtype == bool else volume,
        grown=grown,
        context=layout.context,
        reference=None if reference is None else np.asarray(reference),
        mask=None if mask is None else np.asarray(mask),
        index=tuple(index),
        grid=layout.grid,
        start=tuple(s[i] for s, i in zip(layout.starts, index, strict=True)),
        halo=layout.halo,
        grown_by=layout.halo,
    )
    return fn(block, *shared)


def _least_chunk(chunks: tuple[tuple[int, ...], ...]) -> float:
    """The thinnest chunk along the axes cut into several (a halo reaches no further);
    infinite when every axis is one chunk."""
    return min((min(c) for c in chunks if len(c) > 1), default=math.inf)


def _merge_runs(sizes: tuple[int, ...], least: int) -> tuple[int, ...]:
    """Consecutive ``sizes`` joined into runs of at least ``least`` (a short tail joins in)."""
    out: list[int] = []
    run = 0
    for size in sizes:
        run += size
        if run >= least:
            out.append(run)
            run = 0
    if run:
        if out:
            out[-1] += run
        else:
            out.append(run)
    return tuple(out)


def _delayed(x: Any) -> Any:
    """The chunks of a dask array as delayed values, its graph as it is: the arrays of
    one pass (the volume, its bone grown by a halo, the reference, the mask) then
    share their chunks' tasks, so a pass reads each chunk once."""
    return x.to_delayed(optimize_graph=False)


def _join(
    shape: tuple[int, ...],
    pieces: tuple[tuple[tuple[slice, ...], tuple[slice, ...]], ...],
    *chunks: np.ndarray,
) -> np.ndarray:
    """A block's grown bone: the ``pieces`` (where in it, where in the chunk) of ``chunks``."""
    out = np.empty(shape, dtype=bool)
    for (into, part), chunk in zip(pieces, chunks, strict=True):
        out[into] = np.asarray(chunk)[part]
    return out


def _values_task(volume: Any, reference: Any, fn: Callable[..., Any], *shared: Any) -> Any:
    return fn(np.asarray(volume), None if reference is None else np.asarray(reference), *shared)


@dataclass(frozen=True)
class VolumeBlocks:
    """A volume (with its reference and mask) and the blocks it is measured in.

    Build it with :meth:`of`; :meth:`map_values` runs over the grey values (the
    passes before a threshold is known), :meth:`binarised` fixes the
    thresholds, then :meth:`map_reduce` runs over :class:`MetricBlock` views.
    """

    volume: Any
    reference: Any = None
    mask: Any = None
    context: MetricContext | None = None
    #: Bone given by a segmentation (same shape and blocks), instead of a threshold.
    segmented: Any = None

    @classmethod
    def of(cls, volume: Any, reference: Any = None, mask: Any = None) -> VolumeBlocks:
        """Check the arrays and put them on the volume's blocks.

        A numpy volume is one block (a lazy reference or mask is loaded); a
        dask volume keeps its chunks, and the reference and mask are cut into
        them (a numpy one is wrapped, a dask one rechunked).

        Raises
        ------
        InputError
            If an array is not 3-D, empty or not real-valued, or the shapes differ
            (the message names both).
        """
        vol = _data(volume)
        if not is_lazy(vol):
            vol = np.asarray(vol)
        check_volume_array(vol, "volume")
        lazy = is_lazy(vol)
        out: list[Any] = []
        for what, x in (("reference", reference), ("mask", mask)):
            if x is None:
                out.append(None)
                continue
            x = _data(x)
            if not is_lazy(x):
                x = np.asarray(x)
            check_volume_array(x, what)
            if tuple(x.shape) != tuple(vol.shape):
                raise InputError(
                    f"the {what} must have the volume's shape: the volume is "
                    f"{tuple(vol.shape)}, the {what} {tuple(x.shape)}"
                )
            if lazy:
                import dask.array as da

                x = x.rechunk(vol.chunks) if is_lazy(x) else da.from_array(x, chunks=vol.chunks)
            else:
                x = np.asarray(x)
            if what == "mask":
                x = x if x.dtype == bool else x != 0
            out.append(x)
        return cls(vol, out[0], out[1])

    def kept(self, budget: int) -> VolumeBlocks:
        """These blocks, their chunks read once and kept in memory when they fit.

        On dask input whose volume, reference and mask take at most ``budget``
        bytes together, every chunk is read (and checked) once, here, and the
        passes that follow read it from memory (a volume of one chunk, one block,
        becomes a numpy array: it is measured as in memory); larger volumes stay
        lazy and each pass reads the chunks again. In memory, these blocks.
        """
        arrays = [a for a in (self.volume, self.reference, self.mask) if a is not None]
        if not self.lazy or sum(int(a.nbytes) for a in arrays) > budget:
            return self
        import dask

        one = self.single
        held = iter(dask.compute(*arrays) if one else dask.persist(*arrays))
        return replace(
            self,
            volume=next(held),
            reference=None if self.reference is None else next(held),
            mask=None if self.mask is None else next(held),
        )

    # -- the grid -------------------------------------------------------------------
    @property
    def lazy(self) -> bool:
        """The blocks run as dask tasks."""
        return is_lazy(self.volume)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.volume.shape)

    @property
    def chunks(self) -> tuple[tuple[int, ...], ...]:
        """Block sizes along each axis (one block per axis in memory)."""
        if self.lazy:
            return tuple(tuple(int(c) for c in axis) for axis in self.volume.chunks)
        return tuple((n,) for n in self.shape)

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(len(c) for c in self.chunks)

    @property
    def single(self) -> bool:
        """The volume is one block: halos are never needed."""
        return all(n == 1 for n in self.grid)

    def coarsened(self, halo: int, factor: int = 1, cap: int | None = None) -> VolumeBlocks:
        """Blocks for a pass with ``halo``: these, or merged ones where a chunk is thinner
        than ``factor * halo`` (or than ``cap`` voxels, when that is less).

        A block thinner than its halo would read it from many neighbours, and
        one a few halos thick spends most of its work on them; such chunks are
        merged (along each axis, neighbours joined until each block is at least
        that thick, and at least ``2 * halo``) for the pass; ``cap`` bounds how
        large a block the merging aims at (its memory). The results do not
        depend on the blocks, only the cost does.
        """
        least = int(halo) * max(1, int(factor))
        if cap is not None:
            least = min(least, max(int(cap), int(halo)))
        if not self.lazy or _least_chunk(self.chunks) >= least:
            return self
        merged = tuple(
            c if len(c) == 1 else _merge_runs(c, max(least, 2 * int(halo))) for c in self.chunks
        )
        return replace(
            self,
            volume=self.volume.rechunk(merged),
            reference=None if self.reference is None else self.reference.rechunk(merged),
            mask=None if self.mask is None else self.mask.rechunk(merged),
            segmented=None if self.segmented is None else self.segmented.rechunk(merged),
        )

    def indices(self) -> list[tuple[int, ...]]:
        """Block indices in C order."""
        return [tuple(int(i) for i in idx) for idx in np.ndindex(*self.grid)]

    # -- passes over the grey values -------------------------------------------------
    def map_values(
        self,
        fn: Callable[..., Any],
        *shared: Any,
        combine: Callable[[Any, Any], Any] = add,
    ) -> Any:
        """``combine`` over the blocks of ``fn(volume, reference, *shared)`` (numpy blocks)."""
        if not self.lazy:
            return map_reduce(_values_task, [(self.volume, self.reference)], fn, *shared)
        vol = _delayed(self.volume).ravel()
        ref = [None] * len(vol) if self.reference is None else _delayed(self.reference).ravel()
        parts = list(zip(vol, ref, strict=True))
        return map_reduce(_values_task, parts, fn, *shared, combine=combine)

    # -- passes over the binarised blocks ---------------------------------------------
    def binarised(self, context: MetricContext) -> VolumeBlocks:
        """The same blocks, binarised with ``context.threshold`` (and the reference's)."""
        return replace(self, context=context)

    def segmented_by(self, bone: Any) -> VolumeBlocks:
        """The same blocks, whose bone is ``bone`` (a segmentation's, of the volume's
        shape; cut into the volume's blocks) rather than ``volume > threshold``.

        Raises
        ------
        InputError
            If ``bone`` does not have the volume's shape.
        """
        if tuple(bone.shape) != self.shape:
            raise InputError(
                f"the segmentation must have the volume's shape: the volume is {self.shape}, "
                f"the segmentation {tuple(bone.shape)}"
            )
        if self.lazy:
            import dask.array as da

            bone = (
                bone.rechunk(self.volume.chunks)
                if is_lazy(bone)
                else da.from_array(np.asarray(bone), chunks=self.volume.chunks)
            )
        else:
            bone = np.asarray(bone)
        return replace(self, segmented=bone if bone.dtype == bool else bone != 0)

    @functools.cached_property
    def bone(self) -> Any:
        """The bone measured: ``volume > threshold`` (a boolean volume is its own bone,
        a segmentation's bone replaces it), inside the mask when there is one; lazy on
        dask input."""
        if self.context is None:
            raise InputError("the blocks are not binarised yet: no threshold")
        if self.segmented is not None:
            bone = self.segmented
        elif self.volume.dtype == bool:
            bone = self.volume
        else:
            bone = self.volume > self.context.threshold
        return bone if self.mask is None else bone & self.mask

    def marrow_in_mask(self) -> VolumeBlocks:
        """Blocks whose bone is the marrow inside the mask (``mask & ~bone``): its
        bone-phase thickness is the masked Tb.Sp (the marrow space limited to the mask)."""
        if self.mask is None:
            raise InputError("there is no mask: the marrow is the bone's complement")
        return VolumeBlocks(self.mask & ~self.bone, context=self.context)

    def map_reduce(
        self,
        fn: Callable[..., Any],
        *shared: Any,
        halo: int = 0,
        combine: Callable[[Any, Any], Any] = add,
        select: Iterable[tuple[int, ...]] | None = None,
        delayed: bool = False,
    ) -> Any:
        """``combine`` over the blocks of ``fn(block, *shared)``.

        Parameters
        ----------
        fn : callable
            ``fn(block: MetricBlock, *shared)``; module-level, or a bound method
            of a picklable object, for a cluster.
        *shared
            Arguments common to every block.
        halo : int
            Voxels of the neighbours' bone each block holds
            (:meth:`MetricBlock.neighbourhood`).
        combine : callable
            Associative merge of two results.
        select : iterable of block indices, optional
            Only these blocks (default: all).
        delayed : bool
            On dask blocks, return the reduction as one ``dask.delayed`` value
            instead of computing it (:func:`boneframe.compute.compute` runs
            several as one graph, each chunk read once for all of them).

        Returns
        -------
        The combined result (computed, unless ``delayed`` on dask blocks).
        """
        if self.context is None:
            raise InputError("the blocks are not binarised yet: no threshold")
        halo = int(halo)
        starts = tuple(tuple(int(s) for s in np.cumsum((0, *c[:-1]))) for c in self.chunks)
        indices = self.indices() if select is None else [tuple(i) for i in select]
        if not indices:
            raise InputError("nothing to compute: no blocks selected")
        if not self.lazy:
            layout = _Layout(self.context, self.grid, starts, 0)
            part = ((0, 0, 0), self.volume, self.bone, self.reference, self.mask)
            return map_reduce(_block_task, [part], layout, fn, *shared, combine=combine)
        grown = self._grown(halo, starts, indices)
        layout = _Layout(self.context, self.grid, starts, halo)
        vol = _delayed(self.volume)
        ref = None if self.reference is None else _delayed(self.reference)
        mask = None if self.mask is None else _delayed(self.mask)
        parts = [
            (
                idx,
                vol[idx],
                grown[idx],
                None if ref is None else ref[idx],
                None if mask is None else mask[idx],
            )
            for idx in indices
        ]
        if delayed:
            return map_reduce_delayed(_block_task, parts, layout, fn, *shared, combine=combine)
        return map_reduce(_block_task, parts, layout, fn, *shared, combine=combine)

    def _grown(
        self, halo: int, starts: tuple[tuple[int, ...], ...], indices: list[tuple[int, ...]]
    ) -> dict[tuple[int, ...], Any]:
        """Each block's bone grown by ``halo`` (cut at the volume's border), as a delayed value.

        One task per block joins the pieces of the bone's chunks that its grown
        box covers (its neighbours', more than one deep where the halo is
        thicker than they are); each bone chunk is computed once for all.
        """
        import dask

        bone = _delayed(self.bone)
        if halo == 0:
            return {idx: bone[idx] for idx in indices}
        join = dask.delayed(_join, pure=True)
        out: dict[tuple[int, ...], Any] = {}
        for idx in indices:
            box = [
                (max(s[i] - halo, 0), min(s[i] + c[i] + halo, n))
                for s, c, i, n in zip(starts, self.chunks, idx, self.shape, strict=True)
            ]
            near = [
                [k for k, (s, c) in enumerate(zip(st, ch, strict=True)) if s < hi and s + c > lo]
                for st, ch, (lo, hi) in zip(starts, self.chunks, box, strict=True)
            ]
            pieces, chunks = [], []
            for k in itertools.product(*near):
                spans = [
                    (max(lo, st[j]), min(hi, st[j] + ch[j]), lo, st[j])
                    for (lo, hi), st, ch, j in zip(box, starts, self.chunks, k, strict=True)
                ]
                pieces.append(
                    (
                        tuple(slice(a - lo, b - lo) for a, b, lo, _ in spans),
                        tuple(slice(a - s0, b - s0) for a, b, _, s0 in spans),
                    )
                )
                chunks.append(bone[k])
            shape = tuple(hi - lo for lo, hi in box)
            out[idx] = join(shape, tuple(pieces), *chunks)
        return out

    def map_blocks(
        self, fn: Callable[..., np.ndarray], *shared: Any, halo: int = 0, dtype: Any = np.float32
    ) -> Any:
        """A lazy array of ``fn(block, *shared)`` per block (each the block's shape).

        dask-image's idiom: the in-memory function run on every block with a
        halo of its neighbours. In memory, the result of ``fn`` on the one block.
        """
        if not self.lazy:
            return self.map_reduce(fn, *shared)
        import dask
        import dask.array as da

        blocks = self.coarsened(int(halo))
        starts = tuple(tuple(int(s) for s in np.cumsum((0, *c[:-1]))) for c in blocks.chunks)
        indices = blocks.indices()
        grown = blocks._grown(int(halo), starts, indices)
        layout = _Layout(blocks.context, blocks.grid, starts, int(halo))  # type: ignore[arg-type]
        vol = _delayed(blocks.volume)
        task = dask.delayed(_block_task, pure=True)
        grid: Any = np.empty(blocks.grid, dtype=object)
        for idx in indices:
            shape = tuple(c[i] for c, i in zip(blocks.chunks, idx, strict=True))
            out = task(idx, vol[idx], grown[idx], None, None, layout, fn, *shared)
            grid[idx] = da.from_delayed(out, shape=shape, dtype=dtype)
        out = da.block(grid.tolist())
        return out if blocks is self else out.rechunk(self.volume.chunks)
