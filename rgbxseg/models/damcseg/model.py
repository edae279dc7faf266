"""DAMCSeg: detection-aware, multi-modal, complexity-adaptive segmentation (seeds/000_*, SPEC 5).

Flow (SPEC 5): RGB-X input → **LMMF** (a light encoder per extra sensor, modal adaptive attention
after each of the RGB encoder's stages 2–5, missing sensors replaced by the missing-modality
complementation network) → the RGB encoder's first four stages are *shared*, its last stage is
*duplicated* per task → **detection** (BiFPN over strides 4/8/16 + anchor-free head, NMS) and three
**segmentation branches** (global light ASPP, local RoIAlign path gated by branch adaptive selection,
depth/thermal prior path) → **DSAF** fusion weighted by scene complexity → **light CRF** (inference).

Switches give the paper's Table IV ladder: ``fusion="early"`` (modalities concatenated to RGB at the
input, the baseline's fusion) vs ``"lmmf"``; ``branches=False`` keeps only the global branch (no
detection head); ``dsaf=False`` sums the three branches instead; ``crf`` and ``gates`` turn the CRF
and the branch gates off. Losses (:meth:`DAMCSeg.loss`): DSJL = L_det + 1.0·L_seg + 0.5·L_align, plus
the LMMF feature-reconstruction loss. Decision: L_seg also holds deep supervision of the branches
(cross-entropy on the global and prior logits, and on the local logits inside the boxes, each ×0.4),
so that every branch learns to segment on its own before DSAF weighs them.

Training (``model.train()``) returns a :class:`DAMCSegOutput`; inference (``model.eval()``) returns
the final B×K×H×W logits like every other rgbxseg segmenter, so evaluation, prediction and export
treat it the same way. :meth:`DAMCSeg.analyse` returns everything (detections, scene classes, DSAF
weights) for reports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rgbxseg.data import Batch
from rgbxseg.data.sample import IGNORE_INDEX
from rgbxseg.errors import ConfigError
from rgbxseg.losses import SegLossWeights, alignment_loss, cross_entropy, dsjl, segmentation_loss
from rgbxseg.models.damcseg.detection import (
    BiFPN,
    DetectionHead,
    DetectionOutput,
    Detections,
    detection_loss,
    positive_predictions,
    postprocess,
)
from rgbxseg.models.damcseg.dsaf import DSAF, DSAFOutput, edge_density, occlusion_share, scene_complexity
from rgbxseg.models.damcseg.global_branch import GlobalBranch
from rgbxseg.models.damcseg.lmmf import LMMF
from rgbxseg.models.damcseg.local_branch import LocalBranch, LocalOutput
from rgbxseg.models.damcseg.prior_branch import PriorBranch
from rgbxseg.models.damcseg.staged_encoder import StagedEncoder
from rgbxseg.models.encoders import Encoder
from rgbxseg.models.layers.crf import LightCRF, crf_window

AUX_WEIGHT = 0.4  # deep supervision of each branch (module docstring)
DETECTION_STRIDES = (4, 8, 16)


@dataclass
class DAMCSegOutput:
    """What a training forward returns (everything the losses need)."""

    logits: Tensor  # B×K×H×W fused (DSAF or sum), before the CRF
    global_logits: Tensor
    reconstruction: Tensor  # LMMF feature-reconstruction loss (0 without LMMF)
    local: LocalOutput | None = None
    prior_logits: Tensor | None = None
    detection: DetectionOutput | None = None
    complexity: Tensor | None = None  # B scene complexity S
    dsaf: DSAFOutput | None = None
    detections: list[Detections] = field(default_factory=list)


def _gt_boxes(item: Any, thing_classes: Sequence[int], device: torch.device) -> Tensor:
    """N×4 exclusive xyxy boxes of an image's thing instances (inclusive boxes + 1 on x1/y1)."""
    if item is None or len(item) == 0:
        return torch.zeros(0, 4, device=device)
    keep = torch.isin(item.classes, torch.tensor(thing_classes, device=item.classes.device))
    boxes = item.boxes[keep].to(device).float()
    return boxes + boxes.new_tensor([0.0, 0.0, 1.0, 1.0])


class DAMCSeg(nn.Module):
    """DAMCSeg (module docstring).

    Args:
        encoder: the RGB encoder (OS16; widened for ``fusion="early"``).
        num_classes: segmentation classes.
        modality_channels: extra sensors, name → channels (empty: RGB only, e.g. CamVid).
        thing_classes: dataset ids of the detected classes (instances).
        fusion: ``"lmmf"`` or ``"early"`` (ignored without modalities).
        branches: detection head + local and prior branches; False = global branch only (baseline).
        dsaf: fuse the branches with DSAF; False sums their logits.
        crf: light CRF at inference.
        gates: branch adaptive selection in the local path.
        modality_widths: widths of the light modality encoders' 4 blocks (paper: 64/128/256/512).
        attention_heads: heads (channel groups) of the modal adaptive attention.
        modality_dropout: probability of dropping each sensor of each training sample (MCN training).
        aspp_channels, decoder_channels: global branch widths.
        bifpn_channels, bifpn_repeats: detection neck.
        roi_size: local path crop size (paper: 128).
        local_width, prior_width: widths of the local and prior paths.
        max_train_rois: boxes per image sent through the local path in training (sampled from the GT).
        max_detections, score_threshold, nms_iou: inference detections (paper: 0.3 and 0.5).
        seg_loss: weights of L_seg's terms (:class:`rgbxseg.losses.SegLossWeights` fields).
        seg_weight, align_weight: DSJL weights (paper: 1.0, 0.5).
        reconstruction_weight: weight of the LMMF reconstruction loss.
    """

    pretrained_parts = ("backbone",)
    may_skip_parameters = True  # a batch without boxes skips the local path (DDP must not wait for its grads)

    def __init__(
        self,
        encoder: Encoder,
        num_classes: int,
        modality_channels: Mapping[str, int] | None = None,
        thing_classes: Sequence[int] = (),
        *,
        fusion: Literal["lmmf", "early"] = "lmmf",
        branches: bool = True,
        dsaf: bool = True,
        crf: bool = True,
        gates: bool = True,
        modality_widths: Sequence[int] = (64, 128, 256, 512),
        attention_heads: int = 8,
        modality_dropout: float = 0.3,
        aspp_channels: int = 128,
        decoder_channels: int = 96,
        bifpn_channels: int = 64,
        bifpn_repeats: int = 2,
        roi_size: int = 128,
        local_width: int = 32,
        prior_width: int = 32,
        max_train_rois: int = 8,
        max_detections: int = 32,
        score_threshold: float = 0.3,
        nms_iou: float = 0.5,
        seg_loss: Mapping[str, float] | None = None,
        seg_weight: float = 1.0,
        align_weight: float = 0.5,
        reconstruction_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if fusion not in ("lmmf", "early"):
            raise ConfigError(f"DAMCSeg: fusion must be 'lmmf' or 'early', got {fusion!r}")
        if branches and not thing_classes:
            raise ConfigError("DAMCSeg: the detection-aware branches need the dataset's thing classes (instances)")
        self.num_classes = num_classes
        self.modality_channels = dict(modality_channels or {})
        self.thing_classes = tuple(int(c) for c in thing_classes)
        self.fusion = fusion if self.modality_channels else "none"
        self.use_branches, self.use_dsaf, self.use_crf = branches, dsaf, crf
        self.max_train_rois, self.max_detections = max_train_rois, max_detections
        self.score_threshold, self.nms_iou = score_threshold, nms_iou
        self.seg_loss_weights = SegLossWeights(**(seg_loss or {}))
        self.seg_weight, self.align_weight, self.reconstruction_weight = seg_weight, align_weight, reconstruction_weight

        self.encoder = StagedEncoder(encoder)
        channels = self.encoder.out_channels  # strides 2, 4, 8, 16, 16
        if self.fusion == "lmmf":
            strides = (4, 8, 16, encoder.output_stride)
            self.lmmf = LMMF(channels[1:], self.modality_channels, modality_widths, strides, attention_heads, modality_dropout)
        self.global_branch = GlobalBranch(channels[4], channels[1], num_classes, aspp_channels, decoder_channels)
        if branches:
            self.det_last_stage = self.encoder.duplicate_last()
            self.bifpn = BiFPN((channels[1], channels[2], channels[4]), bifpn_channels, bifpn_repeats)
            self.det_head = DetectionHead(bifpn_channels, len(self.thing_classes), DETECTION_STRIDES)
            sensor_channels = sum(self.modality_channels.values())
            self.local_branch = LocalBranch(channels[1], sensor_channels, num_classes, roi_size, local_width, gates=gates)
            self.prior_branch = PriorBranch(num_classes, self.thing_classes, sensor_channels, len(self.modality_channels), prior_width)
            if dsaf:
                self.dsaf = DSAF()
        if crf:
            self.crf = LightCRF(iterations=3)

    # ----------------------------------------------------------------------------------------- parts
    def parameter_parts(self) -> dict[str, list[nn.Parameter]]:
        """Named parameter groups for the three-stage schedule: ``backbone`` (every RGB encoder stage,
        both last-stage copies), ``det_head`` (BiFPN + head), ``seg_head`` (the three branches minus the
        gates) and ``fusion`` (LMMF, DSAF, branch gates)."""
        backbone = list(self.encoder.parameters())
        fusion = []
        for name in ("lmmf", "dsaf"):
            if hasattr(self, name):
                fusion += list(getattr(self, name).parameters())
        det_head: list[nn.Parameter] = []
        if self.use_branches:
            backbone += list(self.det_last_stage.parameters())
            det_head = list(self.bifpn.parameters()) + list(self.det_head.parameters())
            if self.local_branch.gates is not None:
                fusion += list(self.local_branch.gates.parameters())
        taken = {id(p) for p in backbone + fusion + det_head}
        seg_head = [p for p in self.parameters() if id(p) not in taken]
        return {"backbone": backbone, "det_head": det_head, "seg_head": seg_head, "fusion": fusion}

    def training_inputs(self, batch: Batch) -> dict[str, Any]:
        """The keyword arguments a training forward needs besides image and modalities."""
        return {"present": batch.present, "targets": batch.instances}

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.modality_channels)

    # ---------------------------------------------------------------------------------------- inputs
    def _complete_modalities(
        self, image: Tensor, modalities: Mapping[str, Tensor] | None, present: Mapping[str, Tensor] | None
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Every configured sensor as a B×C×H×W map (zeros where absent) and a B bool presence vector."""
        modalities, present = dict(modalities or {}), dict(present or {})
        unknown = set(modalities) - set(self.modality_channels)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; this model takes {list(self.modality_channels) or 'RGB only'}")
        b, _, h, w = image.shape
        maps, flags = {}, {}
        for name, channels in self.modality_channels.items():
            m = modalities.get(name)
            if m is None:
                maps[name] = image.new_zeros(b, channels, h, w)
                flags[name] = torch.zeros(b, dtype=torch.bool, device=image.device)
                continue
            if m.shape != (b, channels, h, w):
                raise ValueError(f"modality '{name}' must be {b}×{channels}×{h}×{w}, got {tuple(m.shape)}")
            flag = present.get(name)
            flags[name] = torch.ones(b, dtype=torch.bool, device=image.device) if flag is None else flag.to(image.device).bool()
            maps[name] = m.to(image.dtype) * flags[name].view(b, 1, 1, 1).to(image.dtype)
        return maps, flags

    def _sensor_tensors(self, maps: Mapping[str, Tensor], flags: Mapping[str, Tensor]) -> tuple[Tensor | None, Tensor | None]:
        if not maps:
            return None, None
        sensors = torch.cat([maps[n] * flags[n].view(-1, 1, 1, 1).to(maps[n].dtype) for n in maps], dim=1)
        presence = torch.stack([flags[n].float() for n in maps], dim=1)
        return sensors, presence

    # ---------------------------------------------------------------------------------------- forward
    def _backbone(
        self, x: Tensor, maps: dict[str, Tensor], flags: dict[str, Tensor]
    ) -> tuple[list[Tensor], Tensor | None, Tensor, dict[str, Tensor]]:
        """Stage outputs (strides 4, 8, 16, 16 seg copy), the detection copy's output, the mean
        reconstruction loss and the sensor presence after modality dropout."""
        stages = self.encoder.stages
        if self.fusion == "early":
            x = torch.cat([x, *maps.values()], dim=1)
        x = self.encoder.normalize(x)
        encoded = self.lmmf.encode(maps, flags) if self.fusion == "lmmf" else None
        reconstruction = []
        features = []
        x = stages[0](x)
        for level, stage in enumerate(stages[1:4]):
            x = stage(x)
            if encoded is not None:
                x, rec = self.lmmf.fuse(level, x, encoded)
                reconstruction.append(rec)
            features.append(x)
        last = [stages[4](x)] + ([self.det_last_stage(x)] if self.use_branches else [])
        if encoded is not None:
            fused = [self.lmmf.fuse(3, y, encoded) for y in last]
            last = [y for y, _ in fused]
            reconstruction += [rec for _, rec in fused]
        features.append(last[0])
        rec_loss = torch.stack(reconstruction).mean() if reconstruction else x.new_zeros(())
        flags = encoded.present if encoded is not None else flags
        return features, (last[1] if self.use_branches else None), rec_loss, flags

    def _local_boxes(self, targets: Sequence[Any] | None, detections: list[Detections], device: torch.device) -> list[Tensor]:
        if not self.training:
            return [d.boxes for d in detections]
        boxes = []
        for item in targets or [None] * len(detections):
            gt = _gt_boxes(item, self.thing_classes, device)
            if len(gt) > self.max_train_rois:
                gt = gt[torch.randperm(len(gt), device=device)[: self.max_train_rois]]
            boxes.append(gt)
        return boxes

    def _complexity(self, image: Tensor, boxes: Sequence[Tensor]) -> Tensor:
        """Scene complexity S per image from the target boxes and Canny edges (SPEC 5, DSAF)."""
        counts = torch.tensor([float(len(b)) for b in boxes], device=image.device)
        occluded = occlusion_share(boxes, tuple(image.shape[-2:])).to(image.device)
        return scene_complexity(counts, occluded, edge_density(image).to(image.device))

    def _run(
        self,
        image: Tensor,
        modalities: Mapping[str, Tensor] | None,
        present: Mapping[str, Tensor] | None,
        targets: Sequence[Any] | None,
    ) -> DAMCSegOutput:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be B×3×H×W, got {tuple(image.shape)}")
        h, w = image.shape[-2:]
        d = self.encoder.size_divisor
        pad = (0, (-w) % d, 0, (-h) % d)
        maps, flags = self._complete_modalities(image, modalities, present)
        image = F.pad(image, pad)
        maps = {k: F.pad(v, pad) for k, v in maps.items()}
        size = tuple(image.shape[-2:])
        features, det_features, reconstruction, flags = self._backbone(image, maps, flags)
        global_logits = self.global_branch(features[3], features[0], size)
        out = DAMCSegOutput(logits=global_logits, global_logits=global_logits, reconstruction=reconstruction)
        if self.use_branches:
            self._branches(out, image, maps, flags, features, det_features, targets, (h, w))
        if self.use_crf and not self.training:
            windows = crf_window(out.complexity) if out.complexity is not None else [5] * image.shape[0]
            out.logits = self.crf(out.logits, image, windows)
        return self._crop(out, h, w)

    def _branches(
        self,
        out: DAMCSegOutput,
        image: Tensor,
        maps: dict[str, Tensor],
        flags: dict[str, Tensor],
        features: list[Tensor],
        det_features: Tensor,
        targets: Sequence[Any] | None,
        size: tuple[int, int],
    ) -> None:
        """The detection-aware part; ``size`` is the unpadded H×W (detections are clipped to it)."""
        out.detection = self.det_head(self.bifpn([features[0], features[1], det_features]))
        with torch.no_grad():
            out.detections = postprocess(
                out.detection, size, self.thing_classes, self.score_threshold, self.nms_iou, self.max_detections
            )
        sensors, presence = self._sensor_tensors(maps, flags)
        local_boxes = self._local_boxes(targets, out.detections, image.device)
        out.local = self.local_branch(features[0], image, sensors, local_boxes)
        detected = ([d.boxes for d in out.detections], [d.scores for d in out.detections], [d.classes for d in out.detections])
        depth = maps.get("depth")
        out.prior_logits = self.prior_branch(out.global_logits, sensors, presence, detected, depth, flags.get("depth"))
        all_boxes = (
            [_gt_boxes(t, self.thing_classes, image.device) for t in targets]
            if self.training and targets is not None
            else detected[0]
        )
        out.complexity = self._complexity(image[..., : size[0], : size[1]], all_boxes)
        if self.use_dsaf:
            out.dsaf = self.dsaf(out.global_logits, out.local.logits, out.prior_logits, out.complexity, local_boxes)
            out.logits = out.dsaf.logits
        else:
            out.logits = out.global_logits + out.local.logits + out.prior_logits

    @staticmethod
    def _crop(out: DAMCSegOutput, h: int, w: int) -> DAMCSegOutput:
        out.logits = out.logits[..., :h, :w]
        out.global_logits = out.global_logits[..., :h, :w]
        if out.prior_logits is not None:
            out.prior_logits = out.prior_logits[..., :h, :w]
        if out.local is not None:
            out.local = LocalOutput(out.local.logits[..., :h, :w], out.local.region[..., :h, :w], out.local.gates)
        return out

    def forward(
        self,
        image: Tensor,
        modalities: Mapping[str, Tensor] | None = None,
        present: Mapping[str, Tensor] | None = None,
        targets: Sequence[Any] | None = None,
    ) -> DAMCSegOutput | Tensor:
        """Training: :class:`DAMCSegOutput` (``targets``: the batch's instances, for the local path's
        boxes and the scene statistics). Inference: B×K×H×W logits. ``present[name]`` (B bool) marks
        per sample which sensors are real; a missing key or ``present`` False means absent."""
        out = self._run(image, modalities, present, targets)
        return out if self.training else out.logits

    @torch.inference_mode()
    def analyse(
        self, image: Tensor, modalities: Mapping[str, Tensor] | None = None, present: Mapping[str, Tensor] | None = None
    ) -> DAMCSegOutput:
        """Inference with every intermediate result (detections, scene complexity, DSAF weights)."""
        was_training = self.training
        self.eval()
        try:
            return self._run(image, modalities, present, None)
        finally:
            self.train(was_training)

    # ------------------------------------------------------------------------------------------ loss
    def loss(self, output: DAMCSegOutput, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        """DSJL = L_det + seg_weight·L_seg + align_weight·L_align, + the LMMF reconstruction loss."""
        label = batch.label
        ignore = IGNORE_INDEX
        seg, parts = segmentation_loss(output.logits.float(), label, batch.instances, self.seg_loss_weights, ignore)
        aux = cross_entropy(output.global_logits.float(), label, ignore)
        det = align = output.logits.new_zeros(())
        if output.detection is not None:
            aux = aux + cross_entropy(output.prior_logits.float(), label, ignore)
            local_label = torch.where(output.local.region[:, 0] > 0, label, torch.full_like(label, ignore))
            if bool((local_label != ignore).any()):
                aux = aux + cross_entropy(output.local.logits.float(), local_label, ignore)
            det_parts = detection_loss(output.detection, batch.instances, self.thing_classes)
            det = det_parts["focal"] + det_parts["giou"]
            parts |= {k: float(v.detach()) for k, v in det_parts.items()}
            if self.align_weight > 0:
                matched = positive_predictions(output.detection, batch.instances, self.thing_classes)
                align = alignment_loss(matched.boxes, matched.batch_index, matched.classes, output.logits.argmax(1).detach())
        seg = seg + AUX_WEIGHT * aux
        total = dsjl(det, seg, align, self.seg_weight, self.align_weight) + self.reconstruction_weight * output.reconstruction
        logged = {"aux": aux, "align": align, "reconstruction": output.reconstruction}
        parts |= {name: float(value.detach()) for name, value in logged.items()}
        return total, parts
