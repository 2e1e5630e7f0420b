"""The nonzero scan's vector step: ``LANES`` values compared with zero, the positions of the nonzero ones
stored in order, in one instruction where the CPU has one (LLVM's masked compress store: AVX-512's
vpcompressq).

:func:`synapse_kernels._nonzeros` takes it only where :data:`AVAILABLE` (elsewhere LLVM spells the
store out lane by lane, slower than the branch-free scalar scan) and only on rows whose values are
adjacent in memory (the step loads them as one vector). A value counts as nonzero exactly as
``value != 0`` does in Python: NaN is, -0.0 is not.
"""
from __future__ import annotations

import llvmlite.binding
import llvmlite.ir as ir
from numba.core import cgutils, types
from numba.extending import intrinsic

LANES = 16


def _has_compress() -> bool:
    try:
        return bool(llvmlite.binding.get_host_cpu_features().get("avx512f", False))
    except RuntimeError:  # (a host llvmlite cannot describe: the scalar scan)
        return False


AVAILABLE = _has_compress()


@intrinsic
def compress_nonzeros(typingctx, row, start, idx, k):
    """``idx[k:k + c] = the positions p in start..start + LANES - 1 where row[p] != 0``, in order;
    returns c. ``row`` contiguous from ``start`` for LANES values; ``idx`` int64 with room for them."""
    if not (isinstance(row, types.Array) and isinstance(idx, types.Array) and idx.dtype == types.int64
            and isinstance(row.dtype, (types.Integer, types.Float, types.Boolean))):
        return None

    def codegen(context, builder, sig, args):
        row_t, _, idx_t, _ = sig.args
        row_a = context.make_array(row_t)(context, builder, args[0])
        idx_a = context.make_array(idx_t)(context, builder, args[2])
        start, k = args[1], args[3]
        i32, i64 = ir.IntType(32), ir.IntType(64)
        values_t = ir.VectorType(context.get_data_type(row_t.dtype), LANES)
        values = builder.load(builder.bitcast(builder.gep(row_a.data, [start]), values_t.as_pointer()), align=1)
        zero = ir.Constant(values_t, None)
        if isinstance(row_t.dtype, types.Float):
            nonzero = builder.fcmp_unordered("!=", values, zero)  # (unordered: NaN != 0, as in Python)
        else:
            nonzero = builder.icmp_unsigned("!=", values, zero)
        positions_t = ir.VectorType(i64, LANES)
        first = builder.insert_element(ir.Constant(positions_t, ir.Undefined), start, ir.Constant(i32, 0))
        splat = builder.shuffle_vector(first, ir.Constant(positions_t, ir.Undefined),
                                       ir.Constant(ir.VectorType(i32, LANES), [0] * LANES))
        positions = builder.add(splat, ir.Constant(positions_t, list(range(LANES))))
        mask_t = ir.VectorType(ir.IntType(1), LANES)
        store = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [positions_t, i64.as_pointer(), mask_t]),
            f"llvm.masked.compressstore.v{LANES}i64")
        builder.call(store, [positions, builder.gep(idx_a.data, [k]), nonzero])
        bits_t = ir.IntType(LANES)
        popcount = cgutils.get_or_insert_function(builder.module, ir.FunctionType(bits_t, [bits_t]),
                                                  f"llvm.ctpop.i{LANES}")
        return builder.zext(builder.call(popcount, [builder.bitcast(nonzero, bits_t)]), i64)

    return types.int64(row, types.int64, idx, types.int64), codegen
