"""The block passes of a measurement: every member in one pass, the blocks short of halo again.

A *view* is a :class:`~boneframe.metrics.blocks.VolumeBlocks` and the block
forms measured on it (the bone measured; inside a mask, also the marrow in the
mask). Each view runs in one pass over its blocks: per block, one task for
each heavy member (local thickness), the light ones (χ, the labellings, sums)
with the first, and the partials are combined by a tree of tasks. On dask
input the passes of all the views are one graph, so each chunk of the volume,
the reference and the mask is read once for all of them. In memory the volume
is one block and its members run side by side on threads.

A member whose halo depends on the data (local thickness) is
:class:`Resumable`: it runs first on the block in the middle of the grid, from
a first guess; the other blocks start from the halo that block needed, grow it
as far as the halo the pass holds, and say how much more they need if that is
not enough; only those blocks run again, with the halo they asked for.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from boneframe.compute import compute
from boneframe.errors import InputError
from boneframe.interfaces import BlockForm, MetricBlock
from boneframe.metrics.blocks import VolumeBlocks, _least_chunk

#: ``(key, form, halo)``: what a view measures, under which key, with the halo it declared.
Member = tuple[Any, BlockForm, int]
#: Block index -> halo: the blocks a member runs again, and the halo each asked for.
Redo = Mapping[tuple[int, ...], int]

#: With a resumable member (local thickness), chunks thinner than this many times the
#: largest halo declared, or than :data:`BLOCK_VOXELS`, are merged for the pass: a
#: block a few halos thick spends more work on its halo than on itself (an inner one,
#: 8 halos thick, still transforms ``(1 + 2/8)³ ≈ 2`` times its voxels).
HALOS_PER_BLOCK = 8
#: The thickness (voxels) merged blocks aim at, at most: a task's memory against its
#: halo's share of the work. Local thickness takes 20-30 bytes per voxel, so a block of
#: 192³ and its halo holds some 250 MB; at 128³ the halos of 256³ in a ball cost 1.6x
#: the in-memory time, at 192³ 1.45x (``benchmarks/bench_chunked_metrics.py``).
BLOCK_VOXELS = 192


@dataclass(frozen=True)
class Failed:
    """A partial result or value that could not be computed, and why."""

    reason: str


@dataclass(frozen=True)
class _Skipped:
    """A block a member does not run in this pass (it is done already)."""


@runtime_checkable
class Resumable(Protocol):
    """A block form whose blocks may come back short of halo.

    ``unfinished(total)`` gives the blocks to run again and the halo each needs;
    ``resumed(total, redone)`` merges the partial of those blocks into the total;
    ``guess(partial)`` is the first halo for the other blocks after one block's
    partial (None: no clue, the declared halo stands).
    """

    def unfinished(self, total: Any) -> Redo: ...

    def resumed(self, total: Any, redone: Any) -> Any: ...

    def guess(self, partial: Any) -> int | None: ...


def _partials(
    b: MetricBlock,
    members: tuple[tuple[BlockForm, int], ...],
    threads: int = 1,
    redo: tuple[Redo, ...] | None = None,
    lead: list[Any] | None = None,
) -> list[Any]:
    """The partial result of every member on one block (an InputError is kept as a reason).

    With ``redo``, only the members that run this block again, with the halo it
    asked for; with ``lead`` (the partials of a first block), the resumable
    members start from the halo it suggests.
    """

    def one(i: int) -> Any:
        form, halo = members[i]
        if redo is not None:
            if b.index not in redo[i]:
                return _Skipped()
            halo = redo[i][b.index]
        elif lead is not None and isinstance(form, Resumable) and not isinstance(lead[i], Failed):
            halo = form.guess(lead[i]) or halo
        try:
            return form.block(b.with_halo(halo))
        except InputError as exc:
            return Failed(str(exc))

    if b.whole and threads > 1 and len(members) > 1:
        # in memory, numpy's, cc3d's and the compiled loops release the GIL
        with ThreadPoolExecutor(min(threads, len(members))) as pool:
            return list(pool.map(one, range(len(members))))
    return [one(i) for i in range(len(members))]


def _combine(members: tuple[tuple[BlockForm, int], ...], x: list[Any], y: list[Any]) -> list[Any]:
    out = []
    for (form, _), a, b in zip(members, x, y, strict=True):
        if isinstance(a, Failed | _Skipped):
            out.append(b if isinstance(a, _Skipped) else a)
        elif isinstance(b, Failed | _Skipped):
            out.append(a if isinstance(b, _Skipped) else b)
        else:
            out.append(form.combine(a, b))
    return out


def _held(blocks: VolumeBlocks, forms: tuple[tuple[BlockForm, int], ...]) -> int:
    """The halo the blocks of ``forms`` hold: the largest they declare, doubled when a
    resumable one can use it (up to the thinnest block, as far as the neighbouring
    chunks reach)."""
    halo = max(h for _, h in forms)
    if blocks.single or not any(isinstance(form, Resumable) for form, _ in forms):
        return halo
    return int(max(halo, min(2 * halo, _least_chunk(blocks.chunks))))


def _groups(blocks: VolumeBlocks, forms: tuple[tuple[BlockForm, int], ...]) -> list[list[int]]:
    """The members that share a task per block: all of them in memory (one block, its
    members on threads); on dask, one task per resumable member (the heavy work:
    more, smaller tasks keep every worker busy), the light ones with the first of
    them (their GIL-bound work then overlaps the compiled loops of the others,
    instead of queueing at the end)."""
    if blocks.single:
        return [list(range(len(forms)))]
    heavy = [i for i, (form, _) in enumerate(forms) if isinstance(form, Resumable)]
    light = [i for i in range(len(forms)) if i not in heavy]
    return [g for g in (light + heavy[:1], *([i] for i in heavy[1:])) if g]


def _pilot(blocks: VolumeBlocks) -> tuple[int, ...]:
    """The block at the middle of the grid: it runs first, and the halo its resumable
    members needed is the other blocks' first guess."""
    return tuple(n // 2 for n in blocks.grid)


def _pass(
    blocks: VolumeBlocks, part: tuple[tuple[BlockForm, int], ...], halo: int, threads: int
) -> list[Any]:
    """The delayed reductions of one group's pass: one; or for resumable members on
    several blocks, the pilot block's and then the others', which wait for it."""
    run = functools.partial(blocks.map_reduce, _partials, part, threads, halo=halo, delayed=True)
    combine = functools.partial(_combine, part)
    if blocks.single or not any(isinstance(form, Resumable) for form, _ in part):
        return [run(combine=combine)]
    pilot = _pilot(blocks)
    lead = run(combine=combine, select=[pilot])
    rest = [index for index in blocks.indices() if index != pilot]
    return [lead, run(None, lead, combine=combine, select=rest)]


def run_views(views: Sequence[tuple[VolumeBlocks, Sequence[Member]]]) -> list[dict[Any, Any]]:
    """The combined partials of every member of every view, by key (one dict per view).

    One pass per view, all of them one graph on dask input; then the blocks of
    the :class:`Resumable` members that came back short of halo, again.
    """
    threads = max(1, min(4, os.cpu_count() or 1))
    plans = []
    pending: list[Any] = []
    for blocks, members in views:
        forms = tuple((form, 0 if blocks.single else int(h)) for _, form, h in members)
        halo = max((h for _, h in forms), default=0)
        heavy = tuple(f for f in forms if isinstance(f[0], Resumable))
        if heavy:
            blocks = blocks.coarsened(halo, HALOS_PER_BLOCK, BLOCK_VOXELS)
        else:
            blocks = blocks.coarsened(halo)
        groups = []
        for group in _groups(blocks, forms) if forms else []:
            part = tuple(forms[i] for i in group)
            # the resumable ones share one grown block (and its task)
            held = _held(blocks, heavy if any(f in heavy for f in part) else part)
            reductions = _pass(blocks, part, held, threads)
            groups.append((group, part, len(reductions)))
            pending.extend(reductions)
        plans.append((blocks, forms, groups))
    done = iter(compute(*pending))
    out = []
    for (blocks, forms, groups), (_, members) in zip(plans, views, strict=True):
        totals: list[Any] = [None] * len(forms)
        for group, part, count in groups:
            total = functools.reduce(
                functools.partial(_combine, part), [next(done) for _ in range(count)]
            )
            for i, t in zip(group, total, strict=True):
                totals[i] = t
        _resume(blocks, forms, totals)
        out.append({key: t for (key, _, _), t in zip(members, totals, strict=True)})
    return out


def _resume(
    blocks: VolumeBlocks, forms: tuple[tuple[BlockForm, int], ...], totals: list[Any]
) -> None:
    """Run the blocks short of halo again (one pass per round, with the largest halo
    asked for) until every resumable member is complete; ``totals`` is updated."""
    while True:
        redo = [
            (i, form, dict(form.unfinished(totals[i])))
            for i, (form, _) in enumerate(forms)
            if isinstance(form, Resumable) and not isinstance(totals[i], Failed)
        ]
        redo = [r for r in redo if r[2]]
        if not redo:
            return
        members = tuple((form, 0) for _, form, _ in redo)
        asked = tuple(todo for _, _, todo in redo)
        again = blocks.map_reduce(
            _partials,
            members,
            1,
            asked,
            halo=max(h for todo in asked for h in todo.values()),
            select=sorted({index for todo in asked for index in todo}),
            combine=functools.partial(_combine, members),
        )
        for (i, form, _), redone in zip(redo, again, strict=True):
            totals[i] = redone if isinstance(redone, Failed) else form.resumed(totals[i], redone)
