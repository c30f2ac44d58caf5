"""The walk of a U-Net for :func:`~minifcn.summary.summarize`: its ``forward``, with rows
for arrays (see ``trace.py``); the crops' offsets are derived from the coordinate maps and
checked against the model's there. Sizes whose maps would be odd when pooled are refused
with the model's own error."""
from __future__ import annotations

from ..models.unet_sizes import output_size


def walk_unet(m, t, image):
    for side, size in zip(("height", "width"), image.shape[2:]):
        output_size(size, m.depth, side)          # an odd map to pool: the model's error
    skips, h = [], image
    for level in range(m.depth):                                  # contracting
        h = t.path(m.encoder[level], h)
        skips.append(h)
        h = t.layer(m.pool[level], h)
    h = t.path(m.encoder[m.depth], h)                             # the bottom
    for level in reversed(range(m.depth)):                        # expanding
        up = t.layer(m.up[level], h)
        skip = t.crop(m.crop[level], skips[level], like=up)
        h = t.path(m.decoder[level], t.concat(f"concat.{level}", skip, up))
    t.layer(m.head, h)
