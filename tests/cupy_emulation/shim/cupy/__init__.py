"""``import cupy`` with this folder's parent on PYTHONPATH loads the CuPy emulation
(``PYTHONPATH=tests/cupy_emulation/shim``): child processes run under it too."""
import pathlib
import sys

sys.path.append(str(pathlib.Path(__file__).resolve().parents[3]))    # tests/
import cupy_emulation  # noqa: E402

cupy_emulation.install()                   # sys.modules["cupy"] is now the emulated module
