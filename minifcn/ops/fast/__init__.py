r"""Fast paths, each computing what a reference op computes, where its rule says it applies.

This file is the registry: one entry per fast path, in order of preference within a piece
(the first that applies runs; where none does, the reference runs). Adding a fast path is
one module with ``RULE``, ``applies(call)`` and functions with the reference's signatures,
and one entry here; ``tests/test_fast_paths.py`` then checks it against the reference over
its grid of geometries, forward and backward, float32 and float64.

``float32_tolerance`` is each path's largest relative difference from the reference in
float32 (float64 is held to 1e-10 for all): 0 where it computes the same operations in the
same order; 1e-5 where GEMMs sum in another order (observed: at most 3.5e-7 on the grid);
1e-4 where Winograd may run, whose transforms hold 4, 5, 8, 1/6 and 1/24 (observed 7.4e-6).
"""
from ..dispatch import register
from . import (batch_norm, border, correlation, cuda, gemm, grouped, phases, pool_strided,
               pool_tiles, pooled, transpose_by_conv, windows, winograd)

# conv2d (grouped applies only where groups > 1, every other path only where groups == 1)
register("conv2d.forward", "grouped", grouped.RULE, grouped.applies, grouped.forward)
register("conv2d.input_grad", "grouped", grouped.RULE, grouped.applies, grouped.input_grad)
register("conv2d.weight_grad", "grouped", grouped.RULE, grouped.applies, grouped.weight_grad)
register("conv2d.forward", "border", border.RULE, border.applies, border.forward)
register("conv2d.input_grad", "border", border.RULE, border.applies, border.input_grad)
register("conv2d.weight_grad", "border", border.RULE, border.applies, border.weight_grad)
register("conv2d.forward", "winograd", winograd.RULE, winograd.applies, winograd.forward,
         float32_tolerance=1e-4)
register("conv2d.forward", "gemm", gemm.RULE, gemm.applies, gemm.forward)
register("conv2d.input_grad", "correlation", correlation.RULE, correlation.applies,
         correlation.input_grad, float32_tolerance=1e-4)
register("conv2d.input_grad", "gemm", gemm.RULE, gemm.applies, gemm.input_grad)
register("conv2d.weight_grad", "winograd", winograd.RULE, winograd.applies,
         winograd.weight_grad, float32_tolerance=1e-4)
register("conv2d.weight_grad", "gemm", gemm.RULE, gemm.applies, gemm.weight_grad)

# conv_transpose2d
register("conv_transpose2d.forward", "phases", phases.RULE, phases.applies,
         phases.transpose_forward)
register("conv_transpose2d.forward", "conv2d pieces", transpose_by_conv.RULE,
         transpose_by_conv.applies, transpose_by_conv.forward, float32_tolerance=1e-4)
register("conv_transpose2d.backward", "phases", phases.RULE, phases.applies,
         phases.transpose_backward)
register("conv_transpose2d.backward", "conv2d pieces", transpose_by_conv.RULE,
         transpose_by_conv.applies, transpose_by_conv.backward, float32_tolerance=1e-4)

# im2col and col2im (the public functions)
register("im2col", "windows", windows.RULE, windows.applies, windows.im2col,
         float32_tolerance=0)
register("col2im", "windows", windows.RULE, windows.applies, windows.col2im,
         float32_tolerance=0)

# max_pool2d
register("max_pool2d.forward", "cuda", cuda.RULE, cuda.applies, cuda.max_pool2d_forward_gpu,
         float32_tolerance=0)
register("max_pool2d.forward", "tiles", pool_tiles.RULE, pool_tiles.applies,
         pool_tiles.forward, float32_tolerance=0)
register("max_pool2d.forward", "strided", pool_strided.RULE, pool_strided.applies,
         pool_strided.forward, float32_tolerance=0)
register("max_pool2d.backward", "cuda", cuda.RULE, cuda.applies, cuda.max_pool2d_backward_gpu,
         float32_tolerance=0)
register("max_pool2d.backward", "tiles", pool_tiles.RULE, pool_tiles.applies,
         pool_tiles.backward, float32_tolerance=0)
register("max_pool2d.backward", "strided", pool_strided.RULE, pool_strided.applies,
         pool_strided.backward, float32_tolerance=0)

# element-wise, crop and loss: the reference's math in recycled memory
register("relu.forward", "pooled", pooled.RULE, pooled.applies, pooled.relu_forward,
         float32_tolerance=0)
register("relu.backward", "pooled", pooled.RULE, pooled.applies, pooled.relu_backward,
         float32_tolerance=0)
register("crop.forward", "pooled", pooled.RULE, pooled.applies, pooled.crop_forward,
         float32_tolerance=0)
register("crop.backward", "pooled", pooled.RULE, pooled.applies, pooled.crop_backward,
         float32_tolerance=0)
register("softmax_cross_entropy.forward", "pooled", pooled.RULE, pooled.applies,
         pooled.loss_forward)
register("softmax_cross_entropy.backward", "pooled", pooled.RULE, pooled.applies,
         pooled.loss_backward)

# batch_norm2d: the reference's math in fewer passes over memory
register("batch_norm2d.forward", "fewer passes", batch_norm.RULE, batch_norm.applies,
         batch_norm.forward)
register("batch_norm2d.backward", "fewer passes", batch_norm.RULE, batch_norm.applies,
         batch_norm.backward)
