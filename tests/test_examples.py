"""Every example runs as a learner would run it, and prints what it promises."""
import os
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = sorted((pathlib.Path(__file__).parent.parent / "examples").glob("*.py"))

# Phrases each example's output must contain (the findings it exists to show); an example
# not listed here must still run and print something.
EXPECTED = {
    "conv_as_gemm": ["conv2d == W @ im2col(x): True"],
    "checkerboard": ["kernel 4 stride 2: min 4, max 4", "overlap.png"],
    "gradcheck_custom_layer": [
        "gradcheck leaky_relu: passed",
        "passed=False, failures ['x']",                  # an input within eps of the kink
        "gradcheck DepthwiseConv3x3: passed",
        "gradcheck ForgotTheFlip: FAILED: input",
        "input   FAIL: rerun with mode='full'",          # directional mode finds it too
        "caught GradcheckError: gradcheck BiasOfFirstImageOnly: FAILED: bias",
        "failures: [\"backward leaves dy and the forward's inputs unchanged\"]",
        "dy was modified",
    ],
    "cpu_vs_gpu": ["conv2d forward+backward", "max_pool2d forward+backward"],
    "train_shapes": [
        "a batch: images (2, 3, 192, 192) float32",
        "iteration   250  loss",                          # the hand-written loop ran through
        "held-out test set: 24 images never trained on",
        "mean IoU",
        "does not reach the demo's quality",              # the short default says so
        "wrote shapes_fcn8s.npz",
    ],
    "segment_image": [
        "BARELY TRAINED",                                 # no weights in a fresh folder
        "generated shapes_sample.png",
        "classes found in shapes_sample.png:",
        "read back equal: True",                          # the label PNG holds class indices
        "wrote shapes_sample_overlay.png",
        "wrote shapes_sample_panels.png",
    ],
}


# Examples that train (a minute or two each on 2 cores, several under load): `-m "not slow"`
# leaves them out.
TRAINING = {"train_shapes", "segment_image"}


@pytest.mark.parametrize("path", [
    pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.stem in TRAINING else [])
    for p in EXAMPLES])
def test_example_runs(path, tmp_path):
    # TMPDIR: examples that write files into a new temporary folder write them under tmp_path
    env = dict(os.environ, TMPDIR=str(tmp_path))
    # the timeout only catches a hang: train_shapes took 62-116 s on quiet 2-core machines
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                          timeout=900, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    missing = [phrase for phrase in EXPECTED.get(path.stem, []) if phrase not in done.stdout]
    assert not missing, f"{path.name} did not print {missing}; it printed:\n{done.stdout}"


def test_cpu_vs_gpu_reports_gpu_side():
    """Either the GPU table (agreement of the two backends) or why it was skipped."""
    path = next(p for p in EXAMPLES if p.stem == "cpu_vs_gpu")
    done = subprocess.run([sys.executable, str(path), "--size", "16", "--channels", "4",
                           "--repeat", "1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    if "GPU side skipped" in done.stdout:
        assert 'pip install "minifcn[gpu]"' in done.stdout
    else:
        for name in ("conv y", "conv dx", "conv dw", "pool dx"):
            line = next(l for l in done.stdout.splitlines() if l.strip().startswith(name))
            assert float(line.split()[-1]) < 1e-4, line
