"""ImageStem: a light full-resolution path from the RGB image into CSNet's stride-4 input (issue 13, step 3).

The frozen ViT sees the image in 14×14 patches, so the pyramid it feeds (ParallelFPN) knows objects but not
where their edges fall inside a patch. Two strided 3×3 convolutions on the normalised RGB image (stride 2,
then stride 4) give CSNet's first stage colour and edge evidence at its own resolution. It depends on the
image only, so it runs once per image with the projections of :meth:`CSNet.prepare` — never per click.

Its output is added to the stride-4 projection F_1; the last convolution starts at zero, so a stem added to a
trained head leaves that head's predictions unchanged at step 0.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rgbxseg.models.mmms.parallel_fpn import layer_norm
from rgbxseg.models.weights import IMAGENET_MEAN, IMAGENET_STD


class ImageStem(nn.Module):
    """RGB B×3×H×W in [0, 1] → B×``width``×⌈H/4⌉×⌈W/4⌉ (the stride-4 size of
    :func:`rgbxseg.models.mmms.parallel_fpn.pyramid_sizes`).

    Args:
        hidden: channels at stride 2.
        width: output channels (CSNet's first stage width).
    """

    def __init__(self, hidden: int = 16, width: int = 32) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(3, hidden, 3, stride=2, padding=1, bias=False),
            layer_norm(hidden),
            nn.GELU(),
            nn.Conv2d(hidden, width, 3, stride=2, padding=1),
        )
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: Tensor) -> Tensor:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"ImageStem: expected a B×3×H×W RGB batch, got {tuple(image.shape)}")
        # two stride-2 convolutions with padding 1 give ceil(ceil(H/2)/2) = ceil(H/4): the pyramid's size
        return self.layers((image - self.mean) / self.std)
