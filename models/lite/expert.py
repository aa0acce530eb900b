"""The visual expert of the embedded default: EfficientNet-Lite0 over sampled frames.

Fast pathway: every sampled frame -> a pooled class distribution and an embedding (for scene cuts and density).
Slow pathway: class activation maps (CAMs) on the 7x7 feature map pooled to a 3x3 grid of region labels
(computed for every frame because it is nearly free; the compressor writes them only for a few slow frames).
CAMs of each frame's top classes are kept so the app can overlay where a named object is.
"""

from __future__ import annotations

import threading

import numpy as np
import torch
import torch.nn.functional as F

from models.lite.compressor import FrameEvidence
from models.lite.efficientnet import load_efficientnet_lite0, preprocess

TOP_CAMS_PER_FRAME = 12


class VisualExpert:
    def __init__(self, batch_size: int = 16):
        self.network = load_efficientnet_lite0()
        self.batch_size = batch_size
        self.frames_processed = 0  # counted so tests can tell whether a follow-up question re-ran the expert
        self._lock = threading.Lock()

    @torch.inference_mode()
    def analyse(
        self, pixels: np.ndarray, timestamps_s: np.ndarray, duration_s: float
    ) -> tuple[FrameEvidence, dict[int, dict[int, np.ndarray]]]:
        """pixels: (T, H, W, 3) uint8. Returns the evidence and, per frame, {class index: 7x7 CAM in [0, 1]}."""
        probs, embeddings, region_labels, region_probs, cams_by_frame = [], [], [], [], {}
        with self._lock:  # the network is shared by every session; torch already uses all cores per call
            for start in range(0, len(pixels), self.batch_size):
                batch = preprocess(torch.from_numpy(np.ascontiguousarray(pixels[start : start + self.batch_size])))
                features = self.network.forward_features(batch)  # (B, 1280, 7, 7)
                cams = torch.einsum("kc,bchw->bkhw", self.network._fc.weight, features)  # (B, 1000, 7, 7)
                logits = cams.mean(dim=(2, 3)) + self.network._fc.bias
                batch_probs = logits.softmax(-1)
                pooled = F.normalize(features.mean(dim=(2, 3)), dim=-1)
                regions = F.adaptive_avg_pool2d(cams, 3) + self.network._fc.bias.view(1, -1, 1, 1)  # (B, 1000, 3, 3)
                region_softmax = regions.flatten(2).softmax(dim=1)  # over classes, per cell
                top_region_probs, top_region_labels = region_softmax.max(dim=1)  # (B, 9)
                probs.append(batch_probs.numpy())
                embeddings.append(pooled.numpy())
                region_labels.append(top_region_labels.numpy())
                region_probs.append(top_region_probs.numpy())
                for offset in range(len(batch)):
                    top = batch_probs[offset].topk(TOP_CAMS_PER_FRAME).indices
                    maps = cams[offset, top]
                    lo = maps.flatten(1).min(-1).values.view(-1, 1, 1)
                    hi = maps.flatten(1).max(-1).values.view(-1, 1, 1)
                    maps = ((maps - lo) / (hi - lo).clamp_min(1e-6)).numpy().astype(np.float32)
                    cams_by_frame[start + offset] = {int(k): maps[j] for j, k in enumerate(top.tolist())}
            self.frames_processed += len(pixels)
        evidence = FrameEvidence(
            timestamps_s=np.asarray(timestamps_s, dtype=float),
            probs=np.concatenate(probs),
            embeddings=np.concatenate(embeddings),
            region_labels=np.concatenate(region_labels),
            region_probs=np.concatenate(region_probs),
            duration_s=float(duration_s),
        )
        return evidence, cams_by_frame
