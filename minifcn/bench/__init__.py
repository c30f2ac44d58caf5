r"""Benchmarks: timing, the machine they ran on, the cases ``minifcn bench`` measures, and
PyTorch beside them.

The modules, one idea each:

* ``timing`` -- :func:`time_call`: medians of repeated calls after warm-up (host clock on
  the CPU, CUDA events on the GPU);
* ``machine`` -- the CPU, BLAS, versions and GPU, as header lines and a JSON record, and
  the load other processes put on the machine;
* ``work``, ``table``, ``compare`` -- FLOP and byte counts, table cells, torch and result
  differences;
* ``cases`` -- every FCN layer as an op case at FCN-8s's shapes for an input size;
  ``net_cases`` -- the same for FCN-ResNet50, DeepLabV3-ResNet50 and U-Net (``--net``);
  ``measure`` -- one case timed forward and backward, minifcn and torch on the same inputs;
* ``network`` -- a whole FCN's forward and training step in a child process per side (peak
  memory); ``torch_fcn`` -- the same networks in PyTorch;
* ``results``, ``runner``, ``report``, ``chart`` -- the rows of a run, running a plan with a
  progress bar, its terminal tables and JSON, and its PNG chart (matplotlib).

Nothing here prints but the progress bar (on stderr); ``benchmarks/`` scripts and the
``minifcn bench`` command print the strings these functions return. Importing this package
imports neither torch, CuPy nor matplotlib: each is imported where it is used.
"""
from .compare import difference, import_torch, relative_difference, torch_wait
from .machine import (blas_info, clock_name, cpu_model, cpu_seconds, gpu_name, header_lines,
                      machine_record, other_load)
from .table import format_cell, format_ratio, format_sig, table_head, table_row
from .timing import MAX_CALLS, SETTLE, Timing, time_call
from .work import conv_flops, nbytes, transposed_flops

__all__ = ["MAX_CALLS", "SETTLE", "Timing", "blas_info", "clock_name", "conv_flops",
           "cpu_model", "cpu_seconds", "difference", "format_cell", "format_ratio", "format_sig",
           "gpu_name", "header_lines", "import_torch", "machine_record", "nbytes",
           "other_load", "relative_difference", "table_head", "table_row", "time_call",
           "torch_wait", "transposed_flops"]
