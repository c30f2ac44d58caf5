"""U-Net in plain torch.nn, written from the paper independently of minifcn's code (its own
size bookkeeping: the skip is cropped around its centre by computing the offset from the
two maps' sizes), with minifcn's module names: what ``minifcn bench`` times beside
minifcn's, and what the tests compare it with. Needs torch."""
import torch
from torch import nn
from torch.nn import functional as F


def scaled(channels, width):
    """A channel count scaled by ``width``, at least 1 (as minifcn's ``width`` scales)."""
    return max(1, int(round(channels * width)))


def double_conv(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3), nn.ReLU(), nn.Conv2d(c_out, c_out, 3),
                         nn.ReLU())


def center_crop(skip, like):
    """The centre of ``skip`` at ``like``'s height and width."""
    top = (skip.shape[2] - like.shape[2]) // 2
    left = (skip.shape[3] - like.shape[3]) // 2
    return skip[:, :, top:top + like.shape[2], left:left + like.shape[3]]


class UNet(nn.Module):
    def __init__(self, n_class, in_channels=3, base=64, depth=4):
        super().__init__()
        widths = [base * 2 ** i for i in range(depth + 1)]
        self.encoder = nn.ModuleList(double_conv(a, b) for a, b in
                                     zip([in_channels] + widths[:-1], widths))
        self.up = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
                                for i in range(depth))
        self.decoder = nn.ModuleList(double_conv(2 * widths[i], widths[i])
                                     for i in range(depth))
        self.head = nn.Conv2d(base, n_class, 1)

    def forward(self, x):
        skips = []
        for encoder in self.encoder[:-1]:
            x = encoder(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.encoder[-1](x)
        for i in reversed(range(len(self.up))):
            up = self.up[i](x)
            x = self.decoder[i](torch.cat([center_crop(skips[i], up), up], dim=1))
        return self.head(x)
