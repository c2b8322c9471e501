"""From a probe's outputs to per-item and per-video scores."""

from __future__ import annotations

from typing import Sequence

import torch

from fmae.downstream.head import LinearProbe


@torch.no_grad()
def score_items(probe: LinearProbe, features: torch.Tensor, kind: str) -> torch.Tensor:
    """Scores of items from their clips' features ``[I, K, D]``, averaged over the ``K``
    clips: class probabilities ``[I, C]`` (``kind`` ``"classification"``) or scores
    clamped to [0, 1], ``[I]`` (``"regression"``)."""
    probe.eval()
    device = next(probe.parameters()).device
    out = probe(features.flatten(0, 1).to(device).float()).unflatten(0, features.shape[:2])
    if kind == "classification":
        return out.softmax(-1).mean(1).cpu()
    return out.squeeze(-1).mean(1).clamp(0, 1).cpu()


def per_video(
    paths: Sequence[str], labels: torch.Tensor, scores: torch.Tensor
) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """Average the scores of items that share a video (EmotiW's windows), in first-seen
    order; ``ValueError`` if one video's items disagree on the label."""
    order: dict[str, list[int]] = {}
    for i, p in enumerate(paths):
        order.setdefault(p, []).append(i)
    videos, video_labels, video_scores = [], [], []
    for path, rows in order.items():
        if not bool((labels[rows] == labels[rows[0]]).all()):
            raise ValueError(f"the items of {path} have different labels")
        videos.append(path)
        video_labels.append(labels[rows[0]])
        video_scores.append(scores[rows].mean(0))
    return videos, torch.stack(video_labels), torch.stack(video_scores)
