"""Branch adaptive selection (DAMCSeg, SPEC 5): a 2-layer MLP gates the local path's sub-branches.

Each region of interest gets one gate per sub-branch (edge / context / consistency) from its pooled
trunk features: ``g = σ(W₂ ReLU(W₁ GAP(t)))``. In training the gates weight the sub-branches softly
(differentiable); at inference a gate below ``threshold`` is *closed* and the sub-branch is not
computed for that region at all (the caller selects the open regions), which is where the time
saving comes from. Decision: open gates keep their soft weight at inference, so the only difference
between training and inference is that weights below the threshold become 0.
"""

from __future__ import annotations

from torch import Tensor, nn

SUB_BRANCHES = ("edge", "context", "consistency")


class BranchGates(nn.Module):
    """Gates in (0, 1) for ``len(SUB_BRANCHES)`` sub-branches per region.

    Args:
        channels: channels of the trunk features.
        hidden: width of the MLP's hidden layer.
        threshold: gates below it are closed at inference.
    """

    def __init__(self, channels: int, hidden: int = 16, threshold: float = 0.5) -> None:
        super().__init__()
        if channels < 1 or hidden < 1:
            raise ValueError(f"BranchGates: channels and hidden must be >= 1, got {channels}, {hidden}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"BranchGates: threshold must be in (0, 1), got {threshold}")
        self.threshold = threshold
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, len(SUB_BRANCHES)))
        nn.init.constant_(self.mlp[-1].bias, 2.0)  # start open (σ(2) ≈ 0.88): every sub-branch gets trained

    def forward(self, trunk: Tensor) -> Tensor:
        """R×C×h×w trunk features → R×3 gates."""
        return self.mlp(trunk.mean(dim=(2, 3))).sigmoid()

    def open(self, gates: Tensor) -> Tensor:
        """R×3 bool: which sub-branches run at inference."""
        return gates >= self.threshold
