"""Why FCN's transposed convolutions use kernel 2s at stride s: overlaps and checkerboards.

A transposed convolution pastes one weighted copy of its kernel per input pixel onto the
output, s pixels apart. With kernel 3 at stride 2 the copies overlap unevenly: some output
pixels receive 1 copy, some 2, some 4, and a trained kernel must fight that pattern (the
"checkerboard artifact"). With kernel 4 at stride 2 every inner pixel receives the same
number of copies. With FCN's bilinear kernel of size 2s, the copies even sum to exactly 1:
the transposed convolution *is* bilinear interpolation, except within s/2 pixels of the
border, where interpolation repeats the edge pixel but the transposed convolution only sees
zeros beyond it.

Run: python examples/checkerboard.py [--out DIR] [--factor S]
Writes overlap.png and upsampling.png (default: a new temporary folder) and prints the
numbers the images show.
"""
import argparse
import pathlib
import tempfile

import numpy as np
from PIL import Image, ImageDraw

from minifcn.ops import (bilinear_upsampling_weight, conv_transpose2d_forward,
                         upsample_bilinear2d_forward)

GAP, LABEL_H, PANEL = 12, 18, 256          # pixels between panels, label height, panel side


def overlap_counts(kernel, stride, size=8):
    """How many kernel copies land on each output pixel: conv_transpose(ones, ones)."""
    ones = np.ones((1, 1, size, size))
    y, _ = conv_transpose2d_forward(ones, np.ones((1, 1, kernel, kernel)), stride=stride)
    return y[0, 0]                                                   # ((size-1)s + k, ...)


def synthetic_image(size=8):
    """A small test pattern: a diagonal ramp with a bright square and a dark dot."""
    i, j = np.mgrid[:size, :size]
    img = (i + j) / (2 * (size - 1))
    img[2:5, 4:7] = 1.0
    img[5, 1] = 0.0
    return img[None, None]                                           # (1, 1, size, size)


def panel(a, vmax, label):
    """A grey image of ``a / vmax``, blown up with nearest-neighbour to about PANEL pixels,
    under a text label."""
    zoom = max(PANEL // max(a.shape), 1)
    grey = np.clip(a / vmax, 0, 1) * 255
    big = np.kron(grey, np.ones((zoom, zoom))).astype(np.uint8)      # nearest-neighbour
    canvas = Image.new("L", (big.shape[1], big.shape[0] + LABEL_H), 255)
    canvas.paste(Image.fromarray(big), (0, LABEL_H))
    ImageDraw.Draw(canvas).text((2, 3), label, fill=0)
    return canvas


def side_by_side(panels):
    width = sum(p.width for p in panels) + GAP * (len(panels) - 1)
    out = Image.new("L", (width, max(p.height for p in panels)), 255)
    x = 0
    for p in panels:
        out.paste(p, (x, 0))
        x += p.width + GAP
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="folder for the PNGs (default: a new temporary folder)")
    parser.add_argument("--factor", type=int, default=4, help="even upsampling factor s")
    args = parser.parse_args()
    if args.factor < 2 or args.factor % 2:
        parser.error(f"--factor must be an even integer >= 2, got {args.factor}")
    out = pathlib.Path(args.out or tempfile.mkdtemp(prefix="checkerboard_"))
    out.mkdir(parents=True, exist_ok=True)

    # 1. Overlap counts: kernel 3 stride 2 (uneven) beside kernel 4 stride 2 (even).
    k3, k4 = overlap_counts(3, 2), overlap_counts(4, 2)
    inner3, inner4 = k3[2:-2, 2:-2], k4[2:-2, 2:-2]                  # away from the border
    side_by_side([panel(k3, 4, "kernel 3, stride 2"),
                  panel(k4, 4, "kernel 4, stride 2")]).save(out / "overlap.png")
    print("overlap counts (copies of the kernel per output pixel; white = 4), inner region:")
    print(f"  kernel 3 stride 2: min {inner3.min():.0f}, max {inner3.max():.0f} "
          f"(values {sorted(set(inner3.ravel().tolist()))}: a checkerboard)")
    print(f"  kernel 4 stride 2: min {inner4.min():.0f}, max {inner4.max():.0f} (even)")

    # 2. Upsampling by s: transposed conv with the bilinear weight vs interpolation.
    s = args.factor
    x = synthetic_image()
    w = bilinear_upsampling_weight(1, 2 * s, dtype=np.float64)       # (1, 1, 2s, 2s)
    by_conv = conv_transpose2d_forward(x, w, stride=s, padding=s // 2)[0][0, 0]
    by_interp = upsample_bilinear2d_forward(x, scale_factor=s)[0][0, 0]
    diff = np.abs(by_conv - by_interp)
    b = s // 2
    inside = diff[b:-b, b:-b].max()
    ones = conv_transpose2d_forward(np.ones_like(x), w, stride=s, padding=s // 2)[0][0, 0]
    side_by_side([panel(x[0, 0], 1, "input 8x8"),
                  panel(by_conv, 1, f"conv_transpose k{2 * s} s{s}"),
                  panel(by_interp, 1, "interpolate"),
                  panel(diff, diff.max(), "|difference| (scaled)")]).save(out / "upsampling.png")
    print(f"bilinear upsampling of an 8x8 image by {s} ({by_conv.shape[0]}x{by_conv.shape[1]}):")
    print(f"  max |conv_transpose - interpolate| inside (>= {b} px from the border): {inside:.2e}")
    print(f"  max |conv_transpose - interpolate| on the {b}-px border: {diff.max():.3f}")
    print(f"  overlap sum of the bilinear kernel inside: min {ones[b:-b, b:-b].min():.6f}, "
          f"max {ones[b:-b, b:-b].max():.6f}; on the border down to {ones.min():.4f}")
    print(f"wrote {out / 'overlap.png'} and {out / 'upsampling.png'}")


if __name__ == "__main__":
    main()
