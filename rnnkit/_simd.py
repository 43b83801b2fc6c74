"""rnnkit's own GEMM for a time loop's recurrent product, with W packed once per call.

    c[:m, :cols] (+)= a[:m, :k] @ W          a (m, k) rows, W (k, cols), c (m, cols) rows

A time loop multiplies the same W by a small (m, k) block at every step. A BLAS's GEMM packs W
into its kernel's layout at each call (OpenBLAS (32, 256) @ (256, 1024) float32, one Zen 5
core: ~100 GFLOP/s, half of the core's peak), and MKL's packed GEMM, which packs once, is slower
still on AMD. Here W is packed once per forward or backward call into panels of two 64-byte
vectors of columns (:func:`pack`: (panels, k, 2·L), L = 16 float32 or 8 float64 lanes, the last
panel zero-padded), and the product runs an 8-row × 2-vector register tile: for each k, two
vector loads of W's panel, eight broadcasts of a's entries, sixteen fused multiply-adds (sixteen
independent accumulators hide the FMA's latency; a 4-row tile, eight, reached ~60% of what this
one does); the tile is stored once at the end (c added then when beta is 1), and 4-row and
1-row tiles take the rest. Each entry is summed in the order k = 0, 1, … (in runs of
:data:`K_BLOCK`, each added to c), whatever tile or thread makes it, so results depend neither
on alignment nor on the batch's size nor on the number of threads.

The vectors are LLVM's (``<16 x float>``, ``<8 x double>``) through numba intrinsics, as numba
has no vector type of its own; on a CPU with narrower vectors LLVM splits them.
"""

from __future__ import annotations

import llvmlite.ir as ir
import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

_OPTS = dict(cache=True, nogil=True, error_model="numpy", boundscheck=False,
             fastmath={"nsz", "arcp"})  # the FMAs are explicit (see _numba_kernels._OPTS)
VECTOR_BYTES = 64

#: A product's k is cut into runs of this many: a panel's run (K_BLOCK · 2 vectors, 32 KB in
#: float32) stays in the core's first-level cache while every row tile reads it. A time loop's
#: products (k = H or G·H) are one run or a few; the weight gradients' (k = all the batch's
#: steps) are many.
K_BLOCK = 512

#: Tall products (all steps' rows at once) go this many rows at a time (see product_rows).
M_BLOCK = 128


class _Vec(types.Type):
    """A 64-byte vector of ``dtype`` (float32 or float64) in a register."""

    def __init__(self, dtype):
        self.dtype = dtype
        super().__init__(name=f"Vec64B({dtype})")


@register_model(_Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _ir_vector(fe_type.dtype))


def _ir_vector(dtype) -> ir.VectorType:
    scalar = ir.FloatType() if dtype == types.float32 else ir.DoubleType()
    return ir.VectorType(scalar, VECTOR_BYTES // (4 if dtype == types.float32 else 8))


def _address(context, builder, aryty, ary, row, col):
    """&ary[row, col] for a 2-D array with unit column stride (or &ary[col] when 1-D)."""
    a = context.make_array(aryty)(context, builder, ary)
    if aryty.ndim == 1:
        return builder.gep(a.data, [col])
    stride = builder.extract_value(a.strides, 0)
    byte = builder.bitcast(a.data, ir.IntType(8).as_pointer())
    itemsize = context.get_constant(types.intp, aryty.dtype.bitwidth // 8)
    offset = builder.add(builder.mul(row, stride), builder.mul(col, itemsize))
    return builder.bitcast(builder.gep(byte, [offset]), a.data.type)


@intrinsic
def vzero(typingctx, like):
    """A vector of zeros of ``like``'s dtype."""
    vt = _Vec(like.dtype)

    def codegen(context, builder, sig, args):
        return ir.Constant(_ir_vector(like.dtype), None)
    return vt(like), codegen


@intrinsic
def vload(typingctx, ary, row, col):
    """The vector at ary[row, col:col + L] (1-D arrays: ary[col:col + L]; row ignored)."""
    vt = _Vec(ary.dtype)

    def codegen(context, builder, sig, args):
        ptr = _address(context, builder, sig.args[0], args[0], args[1], args[2])
        vty = _ir_vector(ary.dtype)
        return builder.load(builder.bitcast(ptr, vty.as_pointer()), align=4)
    return vt(ary, types.intp, types.intp), codegen


@intrinsic
def vstore(typingctx, ary, row, col, v):
    """ary[row, col:col + L] = v."""
    def codegen(context, builder, sig, args):
        ptr = _address(context, builder, sig.args[0], args[0], args[1], args[2])
        vty = _ir_vector(ary.dtype)
        builder.store(args[3], builder.bitcast(ptr, vty.as_pointer()), align=4)
        return context.get_dummy_value()
    return types.none(ary, types.intp, types.intp, v), codegen


@intrinsic
def vfma(typingctx, x, b, acc):
    """acc + x·b, x a scalar broadcast to every lane, one fused multiply-add."""
    def codegen(context, builder, sig, args):
        vty = _ir_vector(acc.dtype)
        lanes = vty.count
        scalar = builder.insert_element(ir.Constant(vty, None), args[0],
                                        ir.Constant(ir.IntType(32), 0))
        xs = builder.shuffle_vector(scalar, ir.Constant(vty, None),
                                    ir.Constant(ir.VectorType(ir.IntType(32), lanes),
                                                [0] * lanes))
        name = f"llvm.fma.v{lanes}f{32 if acc.dtype == types.float32 else 64}"
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty] * 3),
                                             name)
        return builder.call(fma, [xs, args[1], args[2]])
    return acc(acc.dtype, b, acc), codegen


@intrinsic
def vadd(typingctx, x, y):
    """x + y, lane by lane."""
    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], args[1])
    return x(x, y), codegen


@intrinsic
def vget(typingctx, v, i):
    """Lane i of v."""
    def codegen(context, builder, sig, args):
        return builder.extract_element(args[0], args[1])
    return v.dtype(v, types.intp), codegen


def lanes(dtype) -> int:
    """Elements of ``dtype`` in one vector."""
    return VECTOR_BYTES // np.dtype(dtype).itemsize


def pack(w: np.ndarray) -> np.ndarray:
    """W (k, cols) as panels (panels, k, 2·L), flat; the last panel's extra columns zeros."""
    k, cols = w.shape
    width = 2 * lanes(w.dtype)
    out = np.empty(-(-cols // width) * k * width, w.dtype)
    _pack_into(w, out, width)
    return out


@njit(**_OPTS)
def _pack_into(w, out, width):
    """One pass (NumPy's pad, transpose and copy took three: ~3 ms for a weight gradient's
    (3200, 256) operand)."""
    k, cols = w.shape
    for p in range((cols + width - 1) // width):
        for kk in range(k):
            o = (p * k + kk) * width
            for j in range(width):
                col = p * width + j
                out[o + j] = w[kk, col] if col < cols else 0


@njit(inline="always", **_OPTS)
def _finish(c, r, col, cols, v0, v1, beta, P):
    """c[r, col:col + 2L] = (v0, v1), or += when beta is 1; the columns up to cols only.

    The accumulators start at zero and c is added here, after the sum over k: starting them
    from c (with lane inserts for a partial last panel) kept LLVM from holding the tile in
    registers (8-row tile, (32, 256) @ (256, 1024) float32 on a Zen 5 core: 164 against 248
    GFLOP/s)."""
    L = VECTOR_BYTES // P.itemsize
    if col + 2 * L <= cols:
        if beta != 0:
            v0 = vadd(v0, vload(c, r, col))
            v1 = vadd(v1, vload(c, r, col + L))
        vstore(c, r, col, v0)
        vstore(c, r, col + L, v1)
        return
    for j in range(min(L, cols - col)):
        c[r, col + j] = vget(v0, j) + c[r, col + j] if beta != 0 else vget(v0, j)
    for j in range(max(min(L, cols - col - L), 0)):
        c[r, col + L + j] = vget(v1, j) + c[r, col + L + j] if beta != 0 else vget(v1, j)


@njit(inline="always", **_OPTS)
def _rows8(i, col, cols, k0, k1, base, a, P, beta, c):
    """Rows i … i+7 of one panel: 16 accumulators."""
    L = VECTOR_BYTES // P.itemsize
    c00, c01 = vzero(P), vzero(P)
    c10, c11 = vzero(P), vzero(P)
    c20, c21 = vzero(P), vzero(P)
    c30, c31 = vzero(P), vzero(P)
    c40, c41 = vzero(P), vzero(P)
    c50, c51 = vzero(P), vzero(P)
    c60, c61 = vzero(P), vzero(P)
    c70, c71 = vzero(P), vzero(P)
    for kk in range(k0, k1):
        o = base + kk * 2 * L
        b0, b1 = vload(P, 0, o), vload(P, 0, o + L)
        x = a[i, kk]
        c00, c01 = vfma(x, b0, c00), vfma(x, b1, c01)
        x = a[i + 1, kk]
        c10, c11 = vfma(x, b0, c10), vfma(x, b1, c11)
        x = a[i + 2, kk]
        c20, c21 = vfma(x, b0, c20), vfma(x, b1, c21)
        x = a[i + 3, kk]
        c30, c31 = vfma(x, b0, c30), vfma(x, b1, c31)
        x = a[i + 4, kk]
        c40, c41 = vfma(x, b0, c40), vfma(x, b1, c41)
        x = a[i + 5, kk]
        c50, c51 = vfma(x, b0, c50), vfma(x, b1, c51)
        x = a[i + 6, kk]
        c60, c61 = vfma(x, b0, c60), vfma(x, b1, c61)
        x = a[i + 7, kk]
        c70, c71 = vfma(x, b0, c70), vfma(x, b1, c71)
    _finish(c, i, col, cols, c00, c01, beta, P)
    _finish(c, i + 1, col, cols, c10, c11, beta, P)
    _finish(c, i + 2, col, cols, c20, c21, beta, P)
    _finish(c, i + 3, col, cols, c30, c31, beta, P)
    _finish(c, i + 4, col, cols, c40, c41, beta, P)
    _finish(c, i + 5, col, cols, c50, c51, beta, P)
    _finish(c, i + 6, col, cols, c60, c61, beta, P)
    _finish(c, i + 7, col, cols, c70, c71, beta, P)


@njit(inline="always", **_OPTS)
def _rows4(i, col, cols, k0, k1, base, a, P, beta, c):
    """Rows i … i+3 of one panel: 8 accumulators."""
    L = VECTOR_BYTES // P.itemsize
    c00, c01 = vzero(P), vzero(P)
    c10, c11 = vzero(P), vzero(P)
    c20, c21 = vzero(P), vzero(P)
    c30, c31 = vzero(P), vzero(P)
    for kk in range(k0, k1):
        o = base + kk * 2 * L
        b0, b1 = vload(P, 0, o), vload(P, 0, o + L)
        x = a[i, kk]
        c00, c01 = vfma(x, b0, c00), vfma(x, b1, c01)
        x = a[i + 1, kk]
        c10, c11 = vfma(x, b0, c10), vfma(x, b1, c11)
        x = a[i + 2, kk]
        c20, c21 = vfma(x, b0, c20), vfma(x, b1, c21)
        x = a[i + 3, kk]
        c30, c31 = vfma(x, b0, c30), vfma(x, b1, c31)
    _finish(c, i, col, cols, c00, c01, beta, P)
    _finish(c, i + 1, col, cols, c10, c11, beta, P)
    _finish(c, i + 2, col, cols, c20, c21, beta, P)
    _finish(c, i + 3, col, cols, c30, c31, beta, P)


@njit(inline="always", **_OPTS)
def _rows1(i, col, cols, k0, k1, base, a, P, beta, c):
    """Row i of one panel."""
    L = VECTOR_BYTES // P.itemsize
    c00, c01 = vzero(P), vzero(P)
    for kk in range(k0, k1):
        o = base + kk * 2 * L
        x = a[i, kk]
        c00 = vfma(x, vload(P, 0, o), c00)
        c01 = vfma(x, vload(P, 0, o + L), c01)
    _finish(c, i, col, cols, c00, c01, beta, P)


@njit(inline="always", **_OPTS)
def _panel(m, col, cols, k0, k1, base, a, P, beta, c):
    """Rows 0 … m−1 of one panel, k in [k0, k1): 8-row tiles, then 4, then 1."""
    i = 0
    while i + 8 <= m:
        _rows8(i, col, cols, k0, k1, base, a, P, beta, c)
        i += 8
    if i + 4 <= m:
        _rows4(i, col, cols, k0, k1, base, a, P, beta, c)
        i += 4
    while i < m:
        _rows1(i, col, cols, k0, k1, base, a, P, beta, c)
        i += 1


@njit(**_OPTS)
def product(m, cols, k, a, P, beta, c, part, parts):
    """c[:m, :cols] = a[:m, :k] @ W (+ c when beta is 1); P = pack(W) (see the docstring).
    Only the panels of share ``part`` of ``parts`` (0, 1: all): threads that split one product
    each make their share, then meet (rnnkit._numba_kernels). No default arguments: numba
    calls a function that omits some from Python ~70 µs slower."""
    width = 2 * (VECTOR_BYTES // P.itemsize)
    panels = (cols + width - 1) // width
    for p in range(panels * part // parts, panels * (part + 1) // parts):
        base, col = p * k * width, p * width
        # The first run apart from the others, which add to c: one loop over runs whose
        # beta changes kept LLVM from the code it makes for one (~15% slower).
        _panel(m, col, cols, 0, min(k, K_BLOCK), base, a, P, beta, c)
        for k0 in range(K_BLOCK, k, K_BLOCK):
            _panel(m, col, cols, k0, min(k, k0 + K_BLOCK), base, a, P, 1.0, c)


def product_rows(r0, r1, cols, k, a, P, beta, c):
    """c[r0:r1, :cols] (+)= a[r0:r1, :k] @ W: one block of rows of a tall product, made
    :data:`M_BLOCK` rows at a time, whose runs of a stay in the core's second-level cache while
    every panel reads them (all rows at once streamed a from memory once per panel: the
    (3200, 512) @ (512, 2048) input projection ran at ~200 GFLOP/s instead of ~230). A Python
    loop over :func:`product`'s compiled entry (microseconds a call, 25 calls for 3200 rows):
    compiled, this loop took numba another ~21 s on a fresh install."""
    for i in range(r0, r1, M_BLOCK):
        j = min(r1, i + M_BLOCK)
        product(j - i, cols, k, a[i:j], P, beta, c[i:j], 0, 1)


@njit(**_OPTS)
def product_t(m, cols, k, at, P, beta, c, ap):
    """c[:m, :cols] = at[:k, :m]ᵀ @ W (+ c when beta is 1): a weight gradient, Σ over all
    steps' rows. ``at`` is read in runs of K_BLOCK steps and tiles of 8 of its columns, each
    copied first into ``ap`` (8, K_BLOCK) as the tiles read it (reading atᵀ in place crossed a
    page at every step and ran at 55–80% of OpenBLAS's speed); each entry is summed in the
    order k = 0, 1, … in runs added to c, as :func:`product` does."""
    if k == 0:
        if beta == 0:
            for r in range(m):
                for j in range(cols):
                    c[r, j] = 0
        return
    width = 2 * (VECTOR_BYTES // P.itemsize)
    panels = (cols + width - 1) // width
    for k0 in range(0, k, K_BLOCK):
        run = min(k, k0 + K_BLOCK) - k0
        b = beta if k0 == 0 else 1.0
        for i in range(0, m, 8):
            rows = min(8, m - i)
            for kk in range(run):
                for r in range(rows):
                    ap[r, kk] = at[k0 + kk, i + r]
            ci = c[i:]
            for p in range(panels):
                base, col = (p * k + k0) * width, p * width
                if rows == 8:
                    _rows8(0, col, cols, 0, run, base, ap, P, b, ci)
                else:
                    for r in range(rows):
                        _rows1(r, col, cols, 0, run, base, ap, P, b, ci)


@njit(**_OPTS)
def product_t_rows(r0, r1, cols, k, at, P, beta, c, ap):
    """Rows [r0, r1) of :func:`product_t`'s c (columns [r0, r1) of at)."""
    product_t(r1 - r0, cols, k, at[:, r0:r1], P, beta, c[r0:r1], ap)
