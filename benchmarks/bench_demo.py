"""``minifcn demo`` for several seeds, each in its own process, and the table of what it scored.

    python benchmarks/bench_demo.py                         # seeds 0, 1, 2; the default budget
    python benchmarks/bench_demo.py --seeds 0 --seconds 120 --out /tmp/demos

Each seed runs ``minifcn demo --seed S --no-progress`` as a user would (a fresh process, the
default time budget unless ``--seconds``), one after the other so that they do not share the
CPU. The table: iterations trained, wall seconds of the whole command (generation, training,
scoring and figures), held-out mean IoU and the IoU of each class, read from the run's
``metrics.txt``; then the mean IoU of the run's ``model.npz`` on 100 images of
``other_shapes.py``, a second generator the demo never trains on (the last column: does the
model know shapes, or only its own generator's pictures?). The goal the demo is tuned for:
mean IoU >= 0.85 and every class >= 0.7 within 300 s on 2 cores.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

from minifcn.bench import header_lines
from minifcn.demo import RECIPE
from minifcn.inference import evaluate, model_from_weights
from other_shapes import OtherShapes

OTHER_IMAGES = 100


def run(seed: int, out: str, seconds) -> dict:
    """One demo; its figures from the printed lines and metrics.txt."""
    folder = os.path.join(out, f"seed{seed}")
    command = [sys.executable, "-m", "minifcn", "demo", "--seed", str(seed), "--no-progress",
               "--out", folder] + ([] if seconds is None else ["--seconds", str(seconds)])
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"seed {seed}: minifcn demo failed:\n{done.stderr}")
    text = open(os.path.join(folder, "metrics.txt")).read()
    iterations = int(re.search(r"(\d+) iterations", text).group(1))
    iou = {name: float(value) for name, value in
           re.findall(r"^(background|disc|rectangle|triangle)\s+([\d.]+)$", text, re.M)}
    mean = float(re.search(r"^mean IoU\s+([\d.]+)$", text, re.M).group(1))
    return {"seed": seed, "iterations": iterations, "seconds": wall, "mean": mean, **iou,
            "other": other_generator(os.path.join(folder, "model.npz"), seed)}


def other_generator(weights: str, seed: int) -> float:
    """Mean IoU of the demo's weights on images of the generator it never saw."""
    model = model_from_weights(weights)
    images = OtherShapes(OTHER_IMAGES, size=RECIPE["size"], seed=seed)
    return float(evaluate(model, images, RECIPE["preprocess"]).mean_iou)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--seconds", type=float, default=None,
                        help="the demo's --seconds (default: its own default budget)")
    parser.add_argument("--out", default="bench-demo", help="folder for the runs")
    args = parser.parse_args(argv)
    header = header_lines(repeat=1, warmup=0, inputs="one minifcn demo process per seed",
                          torch_note="not used")
    print("\n".join(line for line in header if not line.startswith("# timing")))
    print(f"{'seed':>4} {'iters':>6} {'wall s':>7} {'mean IoU':>9} {'backgr.':>8} "
          f"{'disc':>6} {'rect.':>6} {'tri.':>6} {'other gen.':>10}")
    rows = []
    for seed in args.seeds:
        r = run(seed, args.out, args.seconds)
        rows.append(r)
        print(f"{r['seed']:>4} {r['iterations']:>6} {r['seconds']:>7.0f} {r['mean']:>9.3f} "
              f"{r['background']:>8.3f} {r['disc']:>6.3f} {r['rectangle']:>6.3f} "
              f"{r['triangle']:>6.3f} {r['other']:>10.3f}", flush=True)
    worst = min(min(r["disc"], r["rectangle"], r["triangle"], r["background"]) for r in rows)
    print(f"mean IoU {min(r['mean'] for r in rows):.3f}-{max(r['mean'] for r in rows):.3f}; "
          f"worst class {worst:.3f}; wall {min(r['seconds'] for r in rows):.0f}-"
          f"{max(r['seconds'] for r in rows):.0f} s; other generator "
          f"{min(r['other'] for r in rows):.3f}-{max(r['other'] for r in rows):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
