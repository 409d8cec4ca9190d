"""The Numba CPU backend: one fused pass over the pixels, integer stencils, no temporaries.

Loaded only when the backend is asked for: importing it compiles nothing, the first call of
each input dtype compiles (and caches on disk) the kernel for it.

Why the kernel reads the way it does
------------------------------------
* Numba widens every integer operation to 64 bits, which would leave LLVM four lanes per
  vector. The stencils of a uint8 frame fit in int16 and their squares in int32, so the
  arithmetic goes through `_add`/`_sub`/`_mul`, which keep the operands' own width: the
  loop then vectorises on 16-bit lanes (and squares map to ``vpmaddwd``).
* Per-row sums are kept in that narrow width over blocks of `BLOCK` columns, short enough
  that they cannot overflow, and then added into int64 totals: every sum but the gradient
  magnitudes is exact.
* Rows are slices of one flat contiguous array (`_frame.flat_rows`), so a padded plane or a
  crop keeps unit stride and no index needs a wrap-around check.
"""

from __future__ import annotations

import math
import os

import numba
import numpy as np
from numba import njit, prange
from numba.core import types
from numba.extending import intrinsic

from ._backend import FusedBackend
from ._frame import flat_rows
from ._scores import RawSums

#: Columns per block of narrow sums. A uint8 frame's largest per-pixel term is
#: gx**2 + gy**2 <= 2 * 1020**2; 1024 of them stay below 2**31.
BLOCK = 1024

_FASTMATH = {"reassoc", "nsz", "contract"}  # lets the float sum vectorise; no finite-math
_JIT = dict(nogil=True, cache=True, fastmath=_FASTMATH, error_model="numpy", boundscheck=False)

# Work types per input dtype: (stencil type, sum type). uint16 stencils need int32 and
# their squares int64.
_WORK_TYPES = {
    np.dtype(np.uint8): (np.int16, np.int32),
    np.dtype(np.uint16): (np.int32, np.int64),
}
_INT_SUMS = 7  # sum_g, sum_g2, sum_lap, sum_lap2, sum_grad2, sum_haar4, unused
_MAX_TERM = {np.dtype(np.uint8): 2 * 1020**2, np.dtype(np.uint16): 2 * 262140**2}


def _same_width_op(op_name: str):
    @intrinsic
    def op(typingctx, a, b):
        if not (isinstance(a, types.Integer) and a == b):
            return None

        def codegen(context, builder, sig, args):
            return getattr(builder, op_name)(args[0], args[1])

        return a(a, b), codegen

    return op


_add = _same_width_op("add")
_sub = _same_width_op("sub")
_mul = _same_width_op("mul")


@intrinsic
def _as(typingctx, value, like):
    """``value`` converted to the type of ``like`` (a compile-time choice of width)."""

    def codegen(context, builder, sig, args):
        return context.cast(builder, args[0], sig.args[0], sig.args[1])

    return like(value, like), codegen


@njit(inline="always", **_JIT)
def _stencil_block(u0, u1, u2, m0, m1, m2, d0, d1, d2, n, nz, wz):
    """Sums over ``n`` pixels whose 3x3 neighbourhoods are the nine given row slices.

    ``u*``, ``m*``, ``d*`` are the rows above, at and below the pixels, shifted left,
    centred and shifted right. ``nz``/``wz`` are zeros of the stencil and sum types.
    Returns (sum g, sum g^2, sum lap, sum lap^2, sum gx^2+gy^2, sum sqrt(gx^2+gy^2)).
    """
    sg = wz
    sg2 = wz
    sl = wz
    sl2 = wz
    st = wz
    sq = 0.0
    two = _as(2, nz)
    four = _as(4, nz)
    for j in range(n):
        a = _as(u0[j], nz)
        b = _as(u1[j], nz)
        c = _as(u2[j], nz)
        d = _as(m0[j], nz)
        e = _as(m1[j], nz)
        f = _as(m2[j], nz)
        g = _as(d0[j], nz)
        h = _as(d1[j], nz)
        k = _as(d2[j], nz)
        lap = _sub(_add(_add(b, h), _add(d, f)), _mul(four, e))
        gx = _add(_add(_sub(c, a), _mul(two, _sub(f, d))), _sub(k, g))
        gy = _sub(_add(_add(g, _mul(two, h)), k), _add(_add(a, _mul(two, b)), c))
        ew = _as(e, wz)
        lw = _as(lap, wz)
        xw = _as(gx, wz)
        yw = _as(gy, wz)
        grad2 = _add(_mul(xw, xw), _mul(yw, yw))
        sg = _add(sg, ew)
        sg2 = _add(sg2, _mul(ew, ew))
        sl = _add(sl, lw)
        sl2 = _add(sl2, _mul(lw, lw))
        st = _add(st, grad2)
        sq += math.sqrt(np.float64(grad2))
    return sg, sg2, sl, sl2, st, sq


@njit(inline="always", **_JIT)
def _haar_block(top, bottom, n, nz, wz):
    """4 x the Haar detail energy of ``n`` 2x2 blocks: top[2k:2k+2] over bottom[2k:2k+2]."""
    s = wz
    for k in range(n):
        a = _as(top[2 * k], nz)
        b = _as(top[2 * k + 1], nz)
        c = _as(bottom[2 * k], nz)
        d = _as(bottom[2 * k + 1], nz)
        p = _as(_sub(_add(a, b), _add(c, d)), wz)
        q = _as(_sub(_add(a, c), _add(b, d)), wz)
        r = _as(_sub(_add(a, d), _add(b, c)), wz)
        s = _add(s, _add(_add(_mul(p, p), _mul(q, q)), _mul(r, r)))
    return s


@njit(**_JIT)
def _column_segments(w):
    """Runs of columns scored together: (left, centre, right, count) start columns.

    The two border columns come first, each alone (BORDER_REFLECT_101: the left neighbour
    of column 0 is column 1, the right one of column w-1 is w-2); then the interior in
    blocks of at most `BLOCK`.
    """
    n_blocks = (w - 2 + BLOCK - 1) // BLOCK
    segments = np.empty((2 + n_blocks, 4), np.int64)
    segments[0, 0], segments[0, 1], segments[0, 2], segments[0, 3] = 1, 0, 1, 1
    segments[1, 0], segments[1, 1], segments[1, 2], segments[1, 3] = w - 2, w - 1, w - 2, 1
    for b in range(n_blocks):
        j0 = 1 + b * BLOCK
        segments[2 + b, 0], segments[2 + b, 1], segments[2 + b, 2] = j0 - 1, j0, j0 + 1
        segments[2 + b, 3] = min(BLOCK, w - 1 - j0)
    return segments


@njit(**_JIT)
def fused_sums(flat, h, w, rs, r0, r1, nz, wz, out_i, out_f):
    """Accumulate the raw sums of rows ``r0 <= i < r1`` of an (h, w) frame into ``out_*``.

    ``flat[i * rs : i * rs + w]`` is row i. ``r0`` is even, so Haar row pairs never straddle
    two calls. ``out_i`` gets the int64 sums in `RawSums` order (sum_g, sum_g2, sum_lap,
    sum_lap2, sum_grad2, sum_haar4) and ``out_f[0]`` the sum of gradient magnitudes.
    """
    tg = np.int64(0)
    tg2 = np.int64(0)
    tl = np.int64(0)
    tl2 = np.int64(0)
    tt = np.int64(0)
    th = np.int64(0)
    tq = 0.0
    segments = _column_segments(w)
    for i in range(r0, r1):
        up = flat[(i - 1 if i > 0 else 1) * rs :][:w]  # BORDER_REFLECT_101
        mid = flat[i * rs :][:w]
        down = flat[(i + 1 if i < h - 1 else h - 2) * rs :][:w]
        for s in range(segments.shape[0]):
            jl, j, jr, n = segments[s, 0], segments[s, 1], segments[s, 2], segments[s, 3]
            sg, sg2, sl, sl2, st, sq = _stencil_block(
                up[jl:], up[j:], up[jr:], mid[jl:], mid[j:], mid[jr:],
                down[jl:], down[j:], down[jr:], n, nz, wz,
            )  # fmt: skip
            tg += sg
            tg2 += sg2
            tl += sl
            tl2 += sl2
            tt += st
            tq += sq
        if i % 2 == 0:
            below = flat[(i + 1 if i + 1 < h else i) * rs :][:w]  # odd height: repeat the row
            pairs = w // 2
            for k0 in range(0, pairs, BLOCK):
                k1 = min(k0 + BLOCK, pairs)
                th += _haar_block(mid[2 * k0 :], below[2 * k0 :], k1 - k0, nz, wz)
            if w % 2:  # odd width: the last column pairs with itself, so only p survives
                p = np.int64(mid[w - 1]) - np.int64(below[w - 1])
                th += 4 * p * p  # (2a - 2c)^2 in the p term; q = r = 0
    out_i[0] = tg
    out_i[1] = tg2
    out_i[2] = tl
    out_i[3] = tl2
    out_i[4] = tt
    out_i[5] = th
    out_f[0] = tq


@njit(parallel=True, **_JIT)
def fused_sums_parallel(flat, h, w, rs, bands, nz, wz, out_i, out_f):
    """`fused_sums` of each row band ``bands[b] = (r0, r1)`` on Numba's thread pool."""
    for b in prange(bands.shape[0]):
        fused_sums(flat, h, w, rs, bands[b, 0], bands[b, 1], nz, wz, out_i[b], out_f[b])


def _bands(h: int, w: int, dtype: np.dtype, parts: int) -> list[tuple[int, int]]:
    """Split rows into ``parts`` bands starting at even rows, each small enough that its
    int64 sums cannot overflow (only reachable by huge 16-bit frames)."""
    max_rows = max(2, (2**62 // (w * _MAX_TERM[dtype])) // 2 * 2)
    step = max(2, -(-h // parts))
    step = min(step + step % 2, max_rows)
    return [(r, min(r + step, h)) for r in range(0, h, step)]


class NumbaCpuBackend(FusedBackend):
    """Fused Numba kernel on the CPU.

    Parameters
    ----------
    threads : int
        Row bands scored in parallel on Numba's thread pool (at most the number of cores
        Numba sees). In a decode pipeline on a small machine, 1 leaves the other core to
        the decoder.
    """

    name = "numba-cpu"

    def __init__(self, threads: int = 1) -> None:
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"`threads` must be an integer >= 1, got {threads!r}")
        self.threads = min(threads, numba.config.NUMBA_NUM_THREADS)

    def raw_sums(self, view: np.ndarray) -> RawSums:
        h, w = view.shape
        flat, rs = flat_rows(view)
        nz, wz = (t(0) for t in _WORK_TYPES[view.dtype])
        bands = _bands(h, w, view.dtype, self.threads)
        out_i = np.zeros((len(bands), _INT_SUMS), np.int64)
        out_f = np.zeros((len(bands), 1), np.float64)

        if self.threads == 1 or len(bands) == 1:
            for b, (r0, r1) in enumerate(bands):
                fused_sums(flat, h, w, rs, r0, r1, nz, wz, out_i[b], out_f[b])
        else:
            numba.set_num_threads(self.threads)  # thread-local: other threads keep theirs
            bounds = np.array(bands, np.int64)
            fused_sums_parallel(flat, h, w, rs, bounds, nz, wz, out_i, out_f)
        ints = [sum(int(v) for v in out_i[:, k]) for k in range(6)]
        return RawSums.of_kernel(view.shape, ints, float(out_f[:, 0].sum()))


def unavailable_reason() -> str | None:
    """Why this backend cannot run here, or None."""
    if os.environ.get("NUMBA_DISABLE_JIT") == "1":
        return "Numba's JIT is disabled (NUMBA_DISABLE_JIT=1)"
    return None
