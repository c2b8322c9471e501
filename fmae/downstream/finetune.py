"""Full fine-tuning: the encoder and the probe trained end to end on labelled clips."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from tqdm import tqdm

from fmae.data import ClipItem, make_loader
from fmae.downstream.features import CLIP_LOADER, item_labels
from fmae.downstream.fit import BETAS, class_weights, probe_loss
from fmae.downstream.head import LinearProbe
from fmae.model import FMAE
from fmae.runtime.device import autocast
from fmae.runtime.distributed import Distributed
from fmae.weights import ENCODER_PREFIXES


def _oversampled(items: list[ClipItem]) -> list[ClipItem]:
    """Every class's items repeated (cyclically) up to the largest class's count."""
    by_class: dict[int, list[ClipItem]] = {}
    for it in items:
        by_class.setdefault(int(it.label), []).append(it)
    most = max(len(v) for v in by_class.values())
    return [group[i % len(group)] for _, group in sorted(by_class.items()) for i in range(most)]


def finetune(
    encoder: FMAE,
    probe: LinearProbe,
    items: Sequence[ClipItem],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float = 0.0,
    balance: str = "none",
    stride: int = 2,
    seed: int = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    num_workers: int = 0,
    progress: bool = False,
    env: Distributed | None = None,
) -> None:
    """Train ``encoder`` and ``probe`` (both on ``device``) end to end, in place, on
    labelled ``items``: a seeded random clip per item and epoch, Adam with β =
    :data:`BETAS`. ``balance`` as in :func:`train_probe`, except that ``"sampler"``
    oversamples the smaller classes. With a multi-process ``env`` the two train as one
    DDP module, each rank on its shard of every epoch with ``batch_size // world``
    clips a batch. Leaves both in eval mode."""
    items = [ClipItem(*it) for it in items]
    labels = item_labels(items)
    classify = not labels.is_floating_point()
    device = torch.device(device)
    weight = class_weights(labels, probe.out_dim).to(device) if balance == "weights" else None
    if balance == "sampler":
        items = _oversampled(items)
    world, rank = (env.world, env.rank) if env is not None else (1, 0)
    if batch_size % world:
        raise ValueError(f"batch_size {batch_size} must split evenly over {world} processes")
    loader = make_loader(
        items=items,
        batch_size=batch_size // world,
        num_frames=encoder.config.num_frames,
        stride=stride,
        random_start=True,
        shuffle=True,
        seed=seed,
        with_regions=False,
        device=device,
        num_workers=num_workers,
        shard_id=rank,
        num_shards=world,
        drop_last=world > 1,
        backend=CLIP_LOADER,
    )
    # The decoder takes no part in forward_features: only the encoder and the probe learn
    # (and DDP must not wait for gradients of parameters that get none).
    for name, p in encoder.named_parameters():
        p.requires_grad_(name.startswith(ENCODER_PREFIXES))
    model: nn.Module = _Classifier(encoder, probe)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=lr, betas=BETAS, weight_decay=weight_decay)
    encoder.train()
    probe.train()
    with tqdm(
        total=epochs * len(loader), disable=not progress, desc="finetune", unit="batch", dynamic_ncols=True
    ) as bar:
        for epoch in range(epochs):
            loader.set_epoch(epoch)
            for batch in loader:
                if batch["clip"].shape[0] < 2 and probe.norm_kind == "batchnorm":
                    continue  # BatchNorm cannot normalise a batch of one
                target = batch["label"] if classify else batch["label"].float()
                with autocast(device, dtype):
                    out = model(batch["clip"])
                loss = probe_loss(out.float(), target, weight)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                bar.update(1)
                if progress and bar.n % 10 == 0:  # reading the loss waits for the device
                    bar.set_postfix(loss=f"{loss.item():.4f}")
    for p in encoder.parameters():
        p.requires_grad_(True)
    encoder.eval()
    probe.eval()


class _Classifier(nn.Module):
    """``probe(encoder.forward_features(clip))``: one module, for DDP."""

    def __init__(self, encoder: FMAE, probe: LinearProbe) -> None:
        super().__init__()
        self.encoder, self.probe = encoder, probe

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.probe(self.encoder.forward_features(clip).float())
