"""What training, evaluation and export share: the network and the two views a work and its copy are embedded from."""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

SRC_SIDE, SIDE, DIM = 128, 96, 128


def to_source(a: np.ndarray) -> tuple[np.ndarray, float]:
    """An RGB array (<= 256 a side) squashed to SRC_SIDE square, and its aspect (w / h)."""
    im = Image.fromarray(a)
    return np.asarray(im.resize((SRC_SIDE, SRC_SIDE), Image.BILINEAR)), im.width / im.height


def load_image(path) -> np.ndarray:
    """A file as RGB on white (transparency composited), at most 256 a side."""
    im = Image.open(path)
    if im.mode in ("RGBA", "LA", "P", "PA"):
        im = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im)
    im = im.convert("RGB")
    im.thumbnail((256, 256), Image.LANCZOS)
    return np.asarray(im)


def block(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Net(nn.Module):
    """Eight 3 x 3 convolutions (four of stride 2), GeM pooling, a linear head, L2-normalised."""

    def __init__(self, w=(24, 48, 96, 192), dim=DIM):
        super().__init__()
        a, b, c, d = w
        self.features = nn.Sequential(
            block(3, a, 2), block(a, a, 1),
            block(a, b, 2), block(b, b, 1),
            block(b, c, 2), block(c, c, 1),
            block(c, d, 2), block(d, d, 1))
        self.p = nn.Parameter(torch.tensor(3.0))
        self.head = nn.Linear(d, dim)
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1))

    def forward(self, x):  # x: float in [0, 1], (n, 3, SIDE, SIDE)
        f = self.features(x - self.mean)
        p = self.p.clamp(1, 6)
        g = f.clamp(min=1e-6).pow(p).mean((2, 3)).pow(1 / p)
        return F.normalize(self.head(g), dim=1)


def plain_view(src: torch.Tensor) -> torch.Tensor:
    """The registered work's view (and a copy's): the source squashed to SIDE (uint8 (n, 3, S, S) -> float)."""
    return F.interpolate(src.float() / 255, size=(SIDE, SIDE), mode="bilinear", align_corners=False, antialias=True)
