"""Small helpers shared by the tests."""
import numpy as np

from minifcn.backend import asnumpy


def rel_error(got, want) -> float:
    """Max absolute difference relative to the largest magnitude of ``want``.

    Element-wise relative error is meaningless where ``want`` is near zero, so errors are
    measured against the array's scale: ``max|got - want| / max|want|``.
    """
    got, want = np.asarray(asnumpy(got)), np.asarray(asnumpy(want))
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    got, want = got.reshape(-1), want.reshape(-1)
    errors, scales = [0.0], [0.0]
    for start in range(0, got.size, _PIECE):     # pieces: no float64 copy of fc6's 103M
        diff = np.subtract(got[start:start + _PIECE], want[start:start + _PIECE],
                           dtype=np.float64)
        errors.append(np.abs(diff, out=diff).max())
        piece = want[start:start + _PIECE]
        scales += [abs(float(piece.max())), abs(float(piece.min()))]
    error, scale = float(np.max(errors)), float(np.max(scales))     # NaN stays NaN
    return error / (scale if scale > 0 else 1.0)


_PIECE = 1 << 20


def count_calls(monkeypatch, module, names) -> dict:
    """Wrap ``module.<name>`` for each name so that the returned dict counts its calls."""
    counts = dict.fromkeys(names, 0)
    for name in counts:
        original = getattr(module, name)

        def counting(*args, _name=name, _original=original):
            counts[_name] += 1
            return _original(*args)

        monkeypatch.setattr(module, name, counting)
    return counts
