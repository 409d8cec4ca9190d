"""The Numba CPU backend: one pass over the rows, integer stencils, no frame-sized temporaries.

Loaded only when the backend is asked for: importing it compiles nothing, the first call of
each input dtype compiles the kernel for it and keeps it on disk (`_cache_on_disk`: in the
user's cache, never inside the installed package).

Why the kernel reads the way it does
------------------------------------
* Numba widens every integer operation to 64 bits, which would leave LLVM four lanes per
  vector. The stencils of a uint8 frame fit in int16 and their squares in int32, so the
  arithmetic goes through `_add`/`_sub`/`_mul`, which keep the operands' own width.
* LLVM sizes a loop's vectors by its widest type and, on Intel CPUs, prefers 256-bit
  registers. `_prefer_512_bit_vectors` lifts that preference for this kernel (a no-op where
  AVX-512 is missing), and each row is scored in two loops so that neither is held back by
  the other's types: `_stencil_run` computes lap, gx and gy with int16 only (32 lanes), and
  `_scratch_sums` squares and sums them with int32/float32 (16 lanes). They meet in a small
  scratch of `BLOCK` columns that stays in L1.
* In the scratch, gx and gy of a pixel sit side by side, so ``gx**2 + gy**2`` is a single
  ``vpmaddwd``; lap**2 is summed the same way because nothing else reads lap: its plain sum
  telescopes (`_vertical_lap_sum`). The border columns go after the interior (a sum does not
  care about order), the interior starts 64-byte aligned, and the tail is padded with zeros,
  which add nothing, so the sums loop has no scalar remainder.
* Every sum is kept in the narrow type over at most `BLOCK` + 2 pixels, short enough that it
  cannot overflow, and then added into int64 totals: all sums but the magnitudes are exact.
* Gradient magnitudes: a float64 square root costs more than the rest of the pixel. For
  uint8, ``m = gx**2 + gy**2 < 2**24`` is exact in float32 and `_f32_magnitude` returns
  sqrt(m) in three parts that add up to it within ~4e-14 relative: an integer (exact in
  int32), an exactly summable float32 remainder, and a Newton correction from the residual
  ``m - s**2``, which an FMA gets to float32 precision. The approximate 1/sqrt comes from
  the CPU's reciprocal square root estimate, so no division or square root instruction is
  left in the loop. uint16 frames (m up to 1.4e11) keep float64.
* sum g and sum g**2 come from a plain pass over each row (`_row_moments`).
* Rows are slices of one flat contiguous array (`_frame.flat_rows`), so a padded plane or a
  crop keeps unit stride and no index needs a wrap-around check.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange
from numba.core import types
from numba.extending import intrinsic, overload

from ._backend import FusedBackend
from ._frame import flat_rows, saturation_level
from ._scores import INT_SUMS, RawSums

#: Columns per block of narrow sums. A uint8 frame's largest per-pixel term is
#: gx**2 + gy**2 <= 2 * 1020**2; a block and the two border columns (1026 terms) stay below
#: 2**31.
BLOCK = 1024
#: The scratch is zero-padded to a multiple of this many entries (the sums loop's step).
PAD = 64

_FASTMATH = {"reassoc", "nsz", "contract"}  # lets the float sum vectorise; no finite-math
_JIT = dict(nogil=True, fastmath=_FASTMATH, error_model="numpy", boundscheck=False)

# Work types per input dtype: (stencil type, sum type). uint16 stencils need int32 and
# their squares int64.
_WORK_TYPES = {
    np.dtype(np.uint8): (np.int16, np.int32),
    np.dtype(np.uint16): (np.int32, np.int64),
}
_INT_SUMS = len(INT_SUMS)  # the kernels' int64 outputs, in `INT_SUMS` order
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


@intrinsic
def _fma(typingctx, a, b, c):
    """``a * b + c`` with one rounding."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, sig, args):
        return builder.fma(*args)

    return a(a, b, c), codegen


# An instruction that carries flags is left alone by Numba's fastmath rewrite, so these
# keep exactly the approximations allowed here: 1 / sqrt may use the CPU's estimate.
_ESTIMATE = ("arcp", "afn", "ninf", "nnan", "nsz", "contract")


@intrinsic
def _rsqrt(typingctx, x):
    """``1 / sqrt(x)`` for a finite float32 ``x >= 1``, to about 1e-7 relative: LLVM uses the
    CPU's estimate (``vrsqrt14ps``) and one Newton step."""
    if x != types.float32:
        return None

    def codegen(context, builder, sig, args):
        sqrt = builder.module.declare_intrinsic("llvm.sqrt", [args[0].type])
        root = builder.call(sqrt, args, fastmath=_ESTIMATE)
        return builder.fdiv(ir.Constant(args[0].type, 1.0), root, flags=_ESTIMATE)

    return x(x), codegen


@intrinsic
def _prefer_512_bit_vectors(typingctx):
    """Let LLVM vectorise the calling function with 512-bit registers where the CPU has them.

    LLVM only reads this as the string attribute ``"prefer-vector-width"``, which llvmlite's
    attribute set does not list; it holds attribute texts, so the text goes in as is. Should
    that ever change, the kernel just keeps LLVM's default width.
    """

    def codegen(context, builder, sig, args):
        attributes = builder.function.attributes
        if isinstance(attributes, set):
            set.add(attributes, '"prefer-vector-width"="512"')
        return context.get_dummy_value()

    return types.none(), codegen


def _exact_in_float32(nz):
    """Whether gx**2 + gy**2 of stencils of type ``nz`` is an integer below 2**24."""


@overload(_exact_in_float32, inline="always")
def _exact_in_float32_impl(nz):
    small = nz.bitwidth <= 16
    return lambda nz: small


@njit(inline="always", **_JIT)
def _aligned_zeros(n, nz):
    """``n`` zeros of the type of ``nz``, starting on a 64-byte boundary (a whole vector)."""
    a = np.full(n + 64, nz)
    start = (-(a.ctypes.data // a.itemsize)) % (64 // a.itemsize)
    return a[start : start + n]


@njit(inline="always", **_JIT)
def _stencil_at(up, mid, down, jl, j, jr, nz):
    """(lap, gx, gy) of pixel ``j`` of row ``mid``, its left/right neighbours at ``jl``/``jr``."""
    a = _as(up[jl], nz)
    b = _as(up[j], nz)
    c = _as(up[jr], nz)
    d = _as(mid[jl], nz)
    e = _as(mid[j], nz)
    f = _as(mid[jr], nz)
    g = _as(down[jl], nz)
    h = _as(down[j], nz)
    k = _as(down[jr], nz)
    two = _as(2, nz)
    four = _as(4, nz)
    lap = _sub(_add(_add(b, h), _add(d, f)), _mul(four, e))
    gx = _add(_add(_sub(c, a), _mul(two, _sub(f, d))), _sub(k, g))
    gy = _sub(_add(_add(g, _mul(two, h)), k), _add(_add(a, _mul(two, b)), c))
    return lap, gx, gy


@njit(inline="always", **_JIT)
def _stencil_run(up, mid, down, n, nz, lap, gxy):
    """Stencils of pixels 1..n of the row slices into ``lap[:n]``, ``gxy[:2n]`` (gx, gy pairs)."""
    for j in range(n):
        lap[j], gxy[2 * j], gxy[2 * j + 1] = _stencil_at(up, mid, down, j, j + 1, j + 2, nz)


@njit(inline="always", **_JIT)
def _f32_magnitude(m):
    """sqrt(m) of an integer-valued float32 ``0 <= m < 2**24`` as ``hi / 1024 + r + c / 2``.

    ``s = m * y``, y the estimate of 1/sqrt(m), is within a few ulps of sqrt(m).
    ``hi = round(1024 s)`` is an int32; ``r = s - hi / 1024`` is exact, a multiple of 2**-24
    with ``|r| <= 2**-11``, so float32 sums of up to 2**11 of them (a scratch holds fewer)
    are exact too. ``c = (m - s**2) / sqrt(m)`` is the Newton
    correction: the FMA gets the residual to float32 precision (it is tiny), and the error
    left, (m - s**2)**2 / (8 s**3), is below 1e-13 s. m = 0 gives 0, 0, 0.
    """
    y = _rsqrt(max(m, np.float32(1.0)))
    s = m * y
    hi = np.int32(_fma(s, np.float32(1024.0), np.float32(0.5)))
    r = _fma(np.float32(hi), np.float32(-1.0 / 1024.0), s)
    c = _fma(-s, s, m) * y
    return hi, r, c


@njit(inline="always", **_JIT)
def _scratch_sums(lap, gxy, n, nz, wz):
    """(sum lap^2, sum gx^2+gy^2, sum sqrt(gx^2+gy^2)) over ``n`` scratch entries."""
    sl2 = wz
    st = wz
    sq = 0.0
    shi = np.int32(0)
    sr = np.float32(0.0)
    sc = np.float32(0.0)
    for j in range(n):
        lw = _as(lap[j], wz)
        xw = _as(gxy[2 * j], wz)
        yw = _as(gxy[2 * j + 1], wz)
        grad2 = _add(_mul(xw, xw), _mul(yw, yw))
        sl2 = _add(sl2, _mul(lw, lw))
        st = _add(st, grad2)
        if _exact_in_float32(nz):
            hi, r, c = _f32_magnitude(np.float32(grad2))
            shi = _add(shi, hi)
            sr += r
            sc += c
        else:
            sq += math.sqrt(np.float64(grad2))
    if _exact_in_float32(nz):
        sq = np.float64(shi) / 1024.0 + np.float64(sr) + 0.5 * np.float64(sc)
    return sl2, st, sq


@njit(inline="always", **_JIT)
def _saturated(v, n, level):
    """How many of ``v[:n]`` (n <= BLOCK) are ``>= level`` (of v's own type): a loop of
    its own, in v's width, so its compares fill whole vectors."""
    c = np.int16(0)
    one = np.int16(1)
    zero = np.int16(0)
    for j in range(n):
        c = _add(c, one if v[j] >= level else zero)
    return c


@njit(inline="always", **_JIT)
def _moments(v, n, level, wz):
    sg = wz
    sg2 = wz
    for j in range(n):
        x = _as(v[j], wz)
        sg = _add(sg, x)
        sg2 = _add(sg2, _mul(x, x))
    return sg, sg2, _saturated(v, n, level)


@njit(inline="always", **_JIT)
def _row_moments(row, w, level, wz):
    """(sum g, sum g^2, samples >= level) of a row of ``w`` pixels, in int64."""
    tg = np.int64(0)
    tg2 = np.int64(0)
    ts = np.int64(0)
    for c0 in range(0, w, BLOCK):
        sg, sg2, sat = _moments(row[c0:], min(BLOCK, w - c0), level, wz)
        tg += sg
        tg2 += sg2
        ts += sat
    return tg, tg2, ts


@njit(inline="always", **_JIT)
def _vertical_lap_sum(flat, h, rs, r0, r1, c0, c1, wz):
    """Sum over rows ``r0 <= i < r1``, columns ``c0 <= j < c1`` of the vertical part of lap
    (up + down - 2 centre).

    It telescopes to ``R(up(r0)) - R(r0) + R(down(r1 - 1)) - R(r1 - 1)``, R the sum of a
    row's columns c0..c1. The horizontal part, summed along those columns with reflected
    ends, telescopes to ``g[c0 - 1] - g[c0] + g[c1] - g[c1 - 1]`` (see `fused_sums`). So
    the plain sum of lap needs no pass of its own, and the sums loop only squares lap.
    """
    n = c1 - c0
    i_up = r0 - 1 if r0 > 0 else 1
    i_down = r1 if r1 < h else h - 2
    r_up = _row_sum(flat[i_up * rs + c0 :], n, wz)
    r_first = _row_sum(flat[r0 * rs + c0 :], n, wz)
    r_down = _row_sum(flat[i_down * rs + c0 :], n, wz)
    r_last = _row_sum(flat[(r1 - 1) * rs + c0 :], n, wz)
    return r_up - r_first + r_down - r_last


@njit(inline="always", **_JIT)
def _row_sum(row, w, wz):
    """The sum of a row of ``w`` samples, in int64."""
    t = np.int64(0)
    for c0 in range(0, w, BLOCK):
        s = wz
        for j in range(min(BLOCK, w - c0)):
            s = _add(s, _as(row[c0 + j], wz))
        t += s
    return t


@njit(inline="always", **_JIT)
def _haar_terms(top, bottom, k, nz, wz):
    """(p, q, r) of 2x2 block k, top[2k:2k+2] over bottom[2k:2k+2]: 2 dy, 2 dx and the
    diagonal term, in the sum type."""
    a = _as(top[2 * k], nz)
    b = _as(top[2 * k + 1], nz)
    c = _as(bottom[2 * k], nz)
    d = _as(bottom[2 * k + 1], nz)
    p = _as(_sub(_add(a, b), _add(c, d)), wz)
    q = _as(_sub(_add(a, c), _add(b, d)), wz)
    r = _as(_sub(_add(a, d), _add(b, c)), wz)
    return p, q, r


@njit(inline="always", **_JIT)
def _haar_block(top, bottom, n, nz, wz):
    """Over ``n`` 2x2 blocks: 4 x the Haar detail energy, and its direction terms
    sum q^2 (4 dx^2), sum p^2 (4 dy^2), sum p q (4 dx dy)."""
    s = wz
    sx = wz
    sy = wz
    sxy = wz
    for k in range(n):
        p, q, r = _haar_terms(top, bottom, k, nz, wz)
        pp = _mul(p, p)
        qq = _mul(q, q)
        s = _add(s, _add(_add(pp, qq), _mul(r, r)))
        sx = _add(sx, qq)
        sy = _add(sy, pp)
        sxy = _add(sxy, _mul(p, q))
    return s, sx, sy, sxy


@njit(inline="always", **_JIT)
def _masked_moments(v, n, run, level, wz):
    """`_moments` of ``v[:n]``, read as ``run >= n`` samples of which those from n on
    count as 0 (which is below any level): a whole number of vectors, no scalar
    remainder."""
    sg = wz
    sg2 = wz
    zero = _as(0, wz)
    for j in range(run):
        x = _as(v[j], wz) if j < n else zero
        sg = _add(sg, x)
        sg2 = _add(sg2, _mul(x, x))
    return sg, sg2, _saturated(v, n, level)


@njit(inline="always", **_JIT)
def _segment_moments(row, n, room, level, wz):
    """`_row_moments` of ``row[:n]`` where ``room >= n`` samples may be read."""
    tg = np.int64(0)
    tg2 = np.int64(0)
    ts = np.int64(0)
    for c0 in range(0, n, BLOCK):
        m = min(BLOCK, n - c0)
        run = min(-(-m // PAD) * PAD, room - c0)
        sg, sg2, sat = _masked_moments(row[c0:], m, run, level, wz)
        tg += sg
        tg2 += sg2
        ts += sat
    return tg, tg2, ts


@njit(inline="always", **_JIT)
def _haar_values(top, bottom, n, nz, wz, out, stride):
    """Of each of ``n`` 2x2 blocks, 4 x the Haar detail energy into ``out[:n]`` and its
    direction terms q^2, p^2, p q (see `_haar_block`) into the rows ``stride``,
    ``2 stride``, ``3 stride`` on."""
    for k in range(n):
        p, q, r = _haar_terms(top, bottom, k, nz, wz)
        pp = _mul(p, p)
        qq = _mul(q, q)
        out[k] = _add(_add(pp, qq), _mul(r, r))
        out[stride + k] = qq
        out[2 * stride + k] = pp
        out[3 * stride + k] = _mul(p, q)


@njit(inline="always", **_JIT)
def _haar_row(mid, below, w, xs, nz, wz, out_i, t0):
    """4 x the Haar detail energy of the 2x2 blocks an even row starts with ``below``, and
    its direction terms (`_haar_block`), added to tiles ``t0 ...`` of a row of tiles with
    column edges ``xs``."""
    cols = xs.shape[0] - 1
    for tx in range(cols):
        a = xs[tx] // 2
        b = min(xs[tx + 1] // 2, w // 2)
        for k0 in range(a, b, BLOCK):
            k1 = min(k0 + BLOCK, b)
            s, sx, sy, sxy = _haar_block(mid[2 * k0 :], below[2 * k0 :], k1 - k0, nz, wz)
            out_i[t0 + tx, 5] += s
            out_i[t0 + tx, 6] += sx
            out_i[t0 + tx, 7] += sy
            out_i[t0 + tx, 8] += sxy
    if w % 2:  # odd width: the last column pairs with itself, so only p survives
        p = np.int64(mid[w - 1]) - np.int64(below[w - 1])
        out_i[t0 + cols - 1, 5] += 4 * p * p  # (2a - 2c)^2 in the p term; q = r = 0
        out_i[t0 + cols - 1, 7] += 4 * p * p


@njit(inline="always", **_JIT)
def _segment_sums(up, mid, down, w, c0, c1, level, nz, wz, lap, gxy, out_i, out_f):
    """Add the sums of columns ``c0 <= j < c1`` of a row to one tile's ``out_i``,
    ``out_f`` (all but Haar's: `_haar_row`). The frame's border columns 0 and w - 1
    belong to the tiles that hold them."""
    if c1 == w:
        sg, sg2, sat = _row_moments(mid[c0:], c1 - c0, level, wz)
    else:  # reading on into the next tile: whole vectors, no scalar remainder
        sg, sg2, sat = _segment_moments(mid[c0:], c1 - c0, w - c0, level, wz)
    out_i[0] += sg
    out_i[1] += sg2
    out_i[9] += sat
    left = c0 - 1 if c0 > 0 else 1  # the horizontal part of lap telescopes (reflected ends)
    right = c1 if c1 < w else w - 2
    out_i[2] += np.int64(mid[left]) - np.int64(mid[c0]) + np.int64(mid[right])
    out_i[2] -= np.int64(mid[c1 - 1])
    j0 = max(c0, 1)  # interior columns, in blocks; the borders go after them
    j1 = min(c1, w - 1)
    tl2 = np.int64(0)
    tt = np.int64(0)
    tq = 0.0
    for b0 in range(j0, j1, BLOCK):
        n = min(BLOCK, j1 - b0)
        # Within the row, the run goes on to a whole vector: no scalar remainder; what it
        # computes beyond n is overwritten or zeroed below.
        run = min(-(-n // PAD) * PAD, w - 1 - b0)
        _stencil_run(up[b0 - 1 :], mid[b0 - 1 :], down[b0 - 1 :], run, nz, lap, gxy)
        if b0 == 1:
            lap[n], gxy[2 * n], gxy[2 * n + 1] = _stencil_at(up, mid, down, 1, 0, 1, nz)
            n += 1
        if b0 + BLOCK >= j1 and c1 == w:
            lap[n], gxy[2 * n], gxy[2 * n + 1] = _stencil_at(
                up, mid, down, w - 2, w - 1, w - 2, nz
            )
            n += 1
        padded = -(-n // PAD) * PAD
        lap[n:padded] = 0
        gxy[2 * n : 2 * padded] = 0
        sl2, st, sq = _scratch_sums(lap, gxy, padded, nz, wz)
        tl2 += sl2
        tt += st
        tq += sq
    out_i[3] += tl2
    out_i[4] += tt
    out_f[0] += tq


@njit(**_JIT)
def fused_sums(flat, h, w, rs, r0, r1, level, nz, wz, out_i, out_f):
    """Accumulate the raw sums of rows ``r0 <= i < r1`` of an (h, w) frame into ``out_*``.

    ``flat[i * rs : i * rs + w]`` is row i. ``r0`` is even, so Haar row pairs never straddle
    two calls. ``out_i`` gets the int64 sums in `INT_SUMS` order (samples ``>= level``
    are saturated) and ``out_f[0]`` the sum of gradient magnitudes, added to what they
    hold (zeros). Each row is `fused_tile_sums`'s one tile (`_segment_sums`) from column
    0 to w, where its stencil runs are exactly the blocks.
    """
    _prefer_512_bit_vectors()
    out_i[2] += _vertical_lap_sum(flat, h, rs, r0, r1, 0, w, wz)
    th = np.int64(0)
    tx = np.int64(0)
    ty = np.int64(0)
    txy = np.int64(0)
    lap = _aligned_zeros(BLOCK + PAD, nz)
    gxy = _aligned_zeros(2 * (BLOCK + PAD), nz)
    for i in range(r0, r1):
        up = flat[(i - 1 if i > 0 else 1) * rs :][:w]  # BORDER_REFLECT_101
        mid = flat[i * rs :][:w]
        down = flat[(i + 1 if i < h - 1 else h - 2) * rs :][:w]
        _segment_sums(up, mid, down, w, 0, w, level, nz, wz, lap, gxy, out_i, out_f)  # the row
        if i % 2 == 0:  # a whole row's Haar blocks: one loop, summed as it goes
            below = flat[(i + 1 if i + 1 < h else i) * rs :][:w]  # odd height: repeat the row
            pairs = w // 2
            for k0 in range(0, pairs, BLOCK):
                k1 = min(k0 + BLOCK, pairs)
                s, sx, sy, sxy = _haar_block(mid[2 * k0 :], below[2 * k0 :], k1 - k0, nz, wz)
                th += s
                tx += sx
                ty += sy
                txy += sxy
            if w % 2:  # odd width: the last column pairs with itself, so only p survives
                p = np.int64(mid[w - 1]) - np.int64(below[w - 1])
                th += 4 * p * p  # (2a - 2c)^2 in the p term; q = r = 0
                ty += 4 * p * p
    out_i[5] += th
    out_i[6] += tx
    out_i[7] += ty
    out_i[8] += txy


@njit(parallel=True, **_JIT)
def fused_sums_parallel(flat, h, w, rs, bands, level, nz, wz, out_i, out_f):
    """`fused_sums` of each row band ``bands[b] = (r0, r1)`` on Numba's thread pool."""
    for b in prange(bands.shape[0]):
        fused_sums(flat, h, w, rs, bands[b, 0], bands[b, 1], level, nz, wz, out_i[b], out_f[b])


@njit(**_JIT)
def fused_tile_sums(flat, h, w, rs, r0, r1, ys, xs, level, nz, wz, out_i, out_f):
    """Accumulate the raw sums of rows ``r0 <= i < r1`` of an (h, w) frame into ``out_*``,
    tile by tile of the grid with row edges ``ys`` and column edges ``xs``: `fused_sums`
    with each row cut at the tiles' column edges.

    ``flat[i * rs : i * rs + w]`` is row i. ``r0`` and every edge but the last are even,
    so Haar row pairs never straddle two calls or two tiles. ``out_i[t]``, t = r * cols + c,
    gets tile (r, c)'s int64 sums in `INT_SUMS` order and ``out_f[t, 0]`` its sum of
    gradient magnitudes.
    """
    _prefer_512_bit_vectors()
    cols = xs.shape[0] - 1
    lap = _aligned_zeros(BLOCK + PAD, nz)
    gxy = _aligned_zeros(2 * (BLOCK + PAD), nz)
    for ty in range(ys.shape[0] - 1):
        a = max(r0, ys[ty])
        b = min(r1, ys[ty + 1])
        if a >= b:
            continue
        for tx in range(cols):
            vertical = _vertical_lap_sum(flat, h, rs, a, b, xs[tx], xs[tx + 1], wz)
            out_i[ty * cols + tx, 2] += vertical
        for i in range(a, b):
            up = flat[(i - 1 if i > 0 else 1) * rs :][:w]  # BORDER_REFLECT_101
            mid = flat[i * rs :][:w]
            down = flat[(i + 1 if i < h - 1 else h - 2) * rs :][:w]
            for tx in range(cols):
                t = ty * cols + tx
                _segment_sums(up, mid, down, w, xs[tx], xs[tx + 1], level, nz, wz, lap, gxy,
                              out_i[t], out_f[t])  # fmt: skip
            if i % 2 == 0:
                below = flat[(i + 1 if i + 1 < h else i) * rs :][:w]  # odd height: again
                _haar_row(mid, below, w, xs, nz, wz, out_i, ty * cols)


@njit(parallel=True, **_JIT)
def fused_tile_sums_parallel(flat, h, w, rs, bands, ys, xs, level, nz, wz, out_i, out_f):
    """`fused_tile_sums` of each row band ``bands[b] = (r0, r1)`` on Numba's thread pool."""
    for b in prange(bands.shape[0]):
        fused_tile_sums(flat, h, w, rs, bands[b, 0], bands[b, 1], ys, xs, level, nz, wz,
                        out_i[b], out_f[b])  # fmt: skip


def cache_folder() -> Path | None:
    """Where the compiled kernels are kept between runs: Numba's ``NUMBA_CACHE_DIR`` if
    set (the systemd unit sets it), else ``$XDG_CACHE_HOME/focusmon/numba`` (by default
    ``~/.cache/focusmon/numba``); None where no home folder can be found."""
    if numba.config.CACHE_DIR:
        return Path(numba.config.CACHE_DIR)
    try:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    except RuntimeError:  # no HOME and no password entry (a bare container)
        return None
    return base / "focusmon" / "numba"


def _cache_on_disk(*kernels) -> None:
    """Keep ``kernels``' compiled code in `cache_folder`, so a new process loads it instead
    of compiling (about a second).

    Not Numba's default place, the ``__pycache__`` beside this file: for an installed
    package that is inside site-packages, where the files outlive the package (an
    installer removes only the files it installed). ``pip install -e .`` after
    ``pip install .`` then left ``site-packages/focusmon/kernels/__pycache__`` behind, and
    Python imported that leftover folder as a namespace package ``focusmon`` ahead of the
    editable one. Numba's locator for ``NUMBA_CACHE_DIR`` takes the folder when caching is
    switched on, so the setting is ours only for that moment (at import, under the import
    lock); other code's Numba functions keep Numba's own choice.
    """
    folder = cache_folder()
    try:
        if folder is None:
            raise OSError("no home folder")
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise OSError(f"{folder} is not writable")
    except OSError as exc:
        logging.getLogger("focusmon.kernels").info(
            "numba-cpu: compiled kernels are not kept between runs (%s)", exc
        )
        return
    own = not numba.config.CACHE_DIR
    if own:
        numba.config.CACHE_DIR = str(folder)
    try:
        for kernel in kernels:
            kernel.enable_caching()
    finally:
        if own:
            numba.config.CACHE_DIR = ""


_cache_on_disk(fused_sums, fused_sums_parallel, fused_tile_sums, fused_tile_sums_parallel)


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

    def raw_sums(self, view: np.ndarray, level: int | None = None) -> RawSums:
        h, w = view.shape
        flat, rs = flat_rows(view)
        nz, wz, lv = self._types(view, level)
        bands = _bands(h, w, view.dtype, self.threads)
        out_i = np.zeros((len(bands), _INT_SUMS), np.int64)
        out_f = np.zeros((len(bands), 1), np.float64)

        if self.threads == 1 or len(bands) == 1:
            for b, (r0, r1) in enumerate(bands):
                fused_sums(flat, h, w, rs, r0, r1, lv, nz, wz, out_i[b], out_f[b])
        else:
            numba.set_num_threads(self.threads)  # thread-local: other threads keep theirs
            bounds = np.array(bands, np.int64)
            fused_sums_parallel(flat, h, w, rs, bounds, lv, nz, wz, out_i, out_f)
        ints = (out_i[0] if len(bands) == 1 else out_i.astype(object).sum(axis=0)).tolist()
        return RawSums.of_kernel(view.shape, ints, float(out_f[:, 0].sum()))

    def raw_tile_sums(
        self, view: np.ndarray, ys: np.ndarray, xs: np.ndarray, level: int | None = None
    ) -> list[list[RawSums]]:
        """The tiles' sums, from `fused_tile_sums` (the frame's alone: `fused_sums`, the
        same work without the cost of cutting rows at the tiles' edges)."""
        h, w = view.shape
        flat, rs = flat_rows(view)
        nz, wz, lv = self._types(view, level)
        bands = _bands(h, w, view.dtype, self.threads)
        rows, cols = len(ys) - 1, len(xs) - 1
        out_i = np.zeros((len(bands), rows * cols, _INT_SUMS), np.int64)
        out_f = np.zeros((len(bands), rows * cols, 1), np.float64)

        if self.threads == 1 or len(bands) == 1:
            for b, (r0, r1) in enumerate(bands):
                fused_tile_sums(flat, h, w, rs, r0, r1, ys, xs, lv, nz, wz, out_i[b], out_f[b])
        else:
            numba.set_num_threads(self.threads)  # thread-local: other threads keep theirs
            bounds = np.array(bands, np.int64)
            fused_tile_sums_parallel(flat, h, w, rs, bounds, ys, xs, lv, nz, wz, out_i, out_f)
        # The bands' sums added exactly (Python integers: each band's fit int64, their
        # total might not), as lists: one conversion, not one per value.
        ints = (out_i[0] if len(bands) == 1 else out_i.astype(object).sum(axis=0)).tolist()
        mags = out_f[:, :, 0].sum(axis=0).tolist()
        heights, widths = np.diff(ys).tolist(), np.diff(xs).tolist()
        return [
            [
                RawSums.of_kernel((heights[r], widths[c]), ints[r * cols + c], mags[r * cols + c])
                for c in range(cols)
            ]
            for r in range(rows)
        ]

    @staticmethod
    def _types(view: np.ndarray, level: int | None) -> tuple:
        """The kernel's stencil and sum types (as zeros) and the saturation level in the
        sum type."""
        stencil, total = _WORK_TYPES[view.dtype]
        level = saturation_level(view.dtype) if level is None else int(level)
        return stencil(0), total(0), view.dtype.type(level)


def unavailable_reason() -> str | None:
    """Why this backend cannot run here, or None."""
    if os.environ.get("NUMBA_DISABLE_JIT") == "1":
        return "Numba's JIT is disabled (NUMBA_DISABLE_JIT=1)"
    return None
