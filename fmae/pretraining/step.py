"""One FMAE pre-training step (Algorithm 2) with its optimisers and learning-rate schedule.

:class:`Pretrainer` owns the model, the discriminator, their AdamW optimisers and
schedules; :meth:`Pretrainer.step` does one iteration of Algorithm 2:

1. mask the batch (:func:`fmae.masking.make_mask`) and reconstruct the masked cubes — or,
   with decoder masking (``decoder_keep < 1``, VideoMAE V2's dual masking), the
   ``K = round(decoder_keep · M)`` of them that :func:`fmae.masking.decoder_targets`
   picks; both losses are then taken on those ``K``;
2. update the discriminator on real masked cubes vs the (detached) reconstructions;
3. update encoder and decoder on ``L_r + λ·L_adv`` against the updated discriminator.

Algorithm 2 runs the encoder/decoder again between steps 2 and 3 (its line 6); the
discriminator's update does not touch their weights, so that second pass would give the
same reconstructions, and the first one is reused. With ``λ = 0`` there is no
discriminator at all and the step is plain masked-autoencoder training.

Gradient accumulation (``accum_steps = k``): the batch is masked as a whole, then run as
``k`` micro-batches of ``B / k`` clips, one backward each, and each network steps once on
the summed gradients, clipped and checked for non-finite values as a whole: the update of
the whole batch, with a ``k``-th of its activations alive at a time. Each micro-batch's
losses are weighted by its share of the batch's reconstructed cubes, which is its share of
the clips (every clip has the same ``num_targets``), so the weighted per-cube means add up
to the whole batch's. With the discriminator and ``k > 1``, the reconstructions are made
twice, as Algorithm 2 writes it: without gradients for the discriminator's update, then
with them against the updated discriminator, since keeping ``k`` graphs until then would
cost the memory accumulation saves.

The learning rate follows MAE: ``lr = base_lr · batch_size / 256``, a linear warm-up,
then a cosine decay to ``min_lr_ratio · lr`` at ``total_steps``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Iterable, NamedTuple

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from fmae.masking import DECODER_STRATEGIES, STRATEGIES, decoder_targets, make_mask, num_decoder_targets, num_masked
from fmae.model import FMAE, Discriminator, FMAEConfig, Reconstruction
from fmae.model.losses import ADV_LOSSES, discriminator_loss, generator_loss
from fmae.runtime.device import autocast

AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16}


ADV_WEIGHT = 0.01
"""The default λ: the paper's adversarial term kept, at a weight where it costs no
held-out reconstruction error (see :class:`PretrainConfig`)."""


@dataclass
class PretrainConfig:
    """The knobs of pre-training that are not the model's shape.

    ``strategy``/``mask_ratio``/``adv_weight`` are what the paper's ablations sweep.
    ``adv_weight`` is λ in ``L_r + λ·L_adv``, default :data:`ADV_WEIGHT`: the paper's
    eq. 7 writes no weight (λ = 1), but with our per-cube discriminator λ = 1 lets the
    adversarial gradient (about ten times the reconstruction's) drown the reconstruction.
    ``adv_loss`` is the form of the adversarial pair (:data:`fmae.model.losses.ADV_LOSSES`):
    ``"bce"`` (the paper's) or ``"wgan"`` (MARLIN's critic, ``adv_weight`` 0.01 in its
    ViT-B config; no gradient penalty). Measured on the default run (tiny, 300 steps,
    the built-in pre-training set; ``python -m fmae.evaluate`` on its 40 held-out
    people; benchmarks/results/reconstruction.md): held-out error 0.856 at λ = 0, 0.858
    with BCE at 0.01, 0.934 with BCE at 0.1 (means of seeds 0–2), whose pictures fill the
    hidden face with per-cube noise; MARLIN's WGAN at 0.01 ends at 1.417 (seed 0), above
    the visible-mean baseline (0.992), its critic's scores drifting without bound.
    ``autocast`` is ``None`` (float32) or ``"bfloat16"`` (a ``torch.dtype`` is taken too:
    float32 means ``None``); float16 would need a gradient scaler and is not offered.
    ``fused`` picks ``AdamW(fused=True)``; ``None`` uses it
    where torch supports it (CPU and CUDA). ``clip_grad`` is the max total gradient norm
    of each network (``None``: no clipping).
    ``decoder_keep`` in ``(0, 1]`` is the fraction of the masked tokens the decoder
    reconstructs (and the losses see), picked by ``decoder_strategy``
    (:func:`fmae.masking.decoder_targets`); 1 reconstructs every masked token.
    ``accum_steps`` splits each step's batch into that many micro-batches whose gradients
    add up to the batch's (see the module docstring); ``batch_size`` stays the whole batch.
    ``grad_checkpointing`` recomputes every encoder and decoder block in the backward pass
    (:meth:`fmae.model.FMAE.set_grad_checkpointing`). Neither changes the update.
    """

    strategy: str = "facial"
    mask_ratio: float = 0.9
    adv_weight: float = ADV_WEIGHT
    adv_loss: str = "bce"
    rec_weight: float = 1.0
    batch_size: int = 8
    base_lr: float = 1.5e-4
    min_lr_ratio: float = 0.0
    warmup_steps: int = 0
    total_steps: int = 1000
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    clip_grad: float | None = 1.0
    autocast: str | torch.dtype | None = None
    fused: bool | None = None
    decoder_keep: float = 1.0
    decoder_strategy: str = "running_cell"
    accum_steps: int = 1
    grad_checkpointing: bool = False

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)
        if isinstance(self.autocast, torch.dtype):
            self.autocast = None if self.autocast == torch.float32 else str(self.autocast).removeprefix("torch.")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown masking strategy {self.strategy!r}; choose one of {STRATEGIES}")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {self.mask_ratio}")
        if not 0.0 < self.decoder_keep <= 1.0:
            raise ValueError(f"decoder_keep must be in (0, 1], got {self.decoder_keep}")
        if self.decoder_strategy not in DECODER_STRATEGIES:
            raise ValueError(f"unknown decoder strategy {self.decoder_strategy!r}; choose one of {DECODER_STRATEGIES}")
        if self.adv_loss not in ADV_LOSSES:
            raise ValueError(f"unknown adversarial loss {self.adv_loss!r}; choose one of {ADV_LOSSES}")
        if self.adv_weight < 0 or self.rec_weight < 0 or self.adv_weight == self.rec_weight == 0:
            raise ValueError(
                f"adv_weight and rec_weight must be >= 0 and not both 0, got {self.adv_weight}, {self.rec_weight}"
            )
        if self.batch_size < 1 or self.total_steps < 1 or self.warmup_steps < 0:
            raise ValueError("batch_size and total_steps must be positive, warmup_steps >= 0")
        if self.accum_steps < 1 or self.batch_size % self.accum_steps:
            raise ValueError(
                f"accum_steps must be a positive divisor of batch_size {self.batch_size}, got {self.accum_steps}"
            )
        if self.base_lr <= 0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError("base_lr must be positive and min_lr_ratio in [0, 1]")
        if self.clip_grad is not None and self.clip_grad <= 0:
            raise ValueError(f"clip_grad must be positive or None, got {self.clip_grad}")
        if self.autocast is not None and self.autocast not in AUTOCAST_DTYPES:
            raise ValueError(f"autocast must be None or one of {tuple(AUTOCAST_DTYPES)}, got {self.autocast!r}")

    @property
    def lr(self) -> float:
        """Peak learning rate, ``base_lr · batch_size / 256``."""
        return self.base_lr * self.batch_size / 256

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (tuples become lists), for YAML or JSON."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PretrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``TypeError``."""
        return cls(**d)


class WarmupCosine:
    """Learning-rate factor for ``LambdaLR``: linear warm-up over ``warmup`` steps, then
    cosine from 1 to ``min_ratio`` at step ``total`` (and ``min_ratio`` after).

    A callable object, not a closure, so ``LambdaLR.state_dict()`` saves its settings.
    """

    def __init__(self, warmup: int, total: int, min_ratio: float = 0.0) -> None:
        self.warmup, self.total, self.min_ratio = int(warmup), int(total), float(min_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices only, not on biases, norms, layer scales, the
    mask token, a learned position table or the decoder's mean cubes."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        plain = p.dim() < 2 or name.endswith(("mask_token", "pos_embed", "decoder_mean_cube"))
        (no_decay if plain else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _fused_supported(device: torch.device) -> bool:
    return device.type in ("cpu", "cuda")


def _world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """The module to call in training: DDP over the process group when there is one."""
    if _world()[1] == 1:
        return module
    return DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None)


def _sync(module: nn.Module, last: bool) -> contextlib.AbstractContextManager:
    """Around one micro-batch's forward and backward: DDP averages the gradients over the
    processes in the last micro-batch's backward only (``no_sync`` before it), once, on their sum."""
    if last or not isinstance(module, DistributedDataParallel):
        return contextlib.nullcontext()
    return module.no_sync()


class _Micro(NamedTuple):
    """One micro-batch of a step: rows of the step's clips, mask and decoder targets."""

    clip: torch.Tensor
    """float ``[b, C, T, H, W]``."""
    mask: torch.Tensor
    """bool ``[b, N]``."""
    targets: torch.Tensor | None
    """int64 ``[b, K]``, or ``None`` (every masked token)."""
    weight: float
    """``b / B``: its share of the step's reconstructed cubes, the weight of its mean losses."""
    last: bool
    """Whether it is the step's last micro-batch (DDP reduces the gradients in its backward)."""


class Pretrainer:
    """Model, discriminator, optimisers and schedules of FMAE pre-training.

    Args:
        model_config: the model's shape (:func:`fmae.model.get_config`).
        config: :class:`PretrainConfig`.
        device: where the networks live (default CPU).

    The networks are initialised from torch's global RNG: seed it before building for a
    reproducible run.
    """

    def __init__(
        self, model_config: FMAEConfig, config: PretrainConfig, device: torch.device | str | None = None
    ) -> None:
        self.config = config
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.model = FMAE(model_config).to(self.device)
        self.num_masked = num_masked(config.strategy, model_config.grid, config.mask_ratio)
        if self.num_masked == 0:
            raise ValueError(f"mask_ratio {config.mask_ratio} masks no token of the grid {model_config.grid}")
        # K: the masked tokens per clip the decoder reconstructs (num_masked at keep 1).
        self.num_targets = num_decoder_targets(self.num_masked, config.decoder_keep)
        if self.num_targets == 0:
            raise ValueError(f"decoder_keep {config.decoder_keep} keeps none of the {self.num_masked} masked tokens")
        self.model.set_grad_checkpointing(config.grad_checkpointing)
        self.optimizer, self.scheduler = self._optimise(self.model)
        self.discriminator: Discriminator | None = None
        if config.adv_weight > 0:
            self.discriminator = Discriminator.from_config(model_config).to(self.device)
            self.disc_optimizer, self.disc_scheduler = self._optimise(self.discriminator)
        # Under torch.distributed, gradients are averaged by DDP wrappers; the bare modules
        # stay the public attributes (state dicts, configs, the generator's D pass).
        self._model_train = _wrap(self.model, self.device)
        self._disc_train = _wrap(self.discriminator, self.device) if self.discriminator is not None else None
        self.step_count = 0

    def _optimise(self, module: nn.Module) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
        c = self.config
        fused = _fused_supported(self.device) if c.fused is None else c.fused
        opt = torch.optim.AdamW(param_groups(module, c.weight_decay), lr=c.lr, betas=c.betas, fused=fused)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(c.warmup_steps, c.total_steps, c.min_lr_ratio))

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, AUTOCAST_DTYPES.get(self.config.autocast, torch.float32))

    def _update(
        self,
        loss: torch.Tensor,
        params: Iterable[nn.Parameter],
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Clip the gradients the micro-batches' backward passes left in ``params`` and step.

        ``loss``: float32 scalar, the step's whole loss, checked with the gradients. Returns the
        gradient norm before clipping and whether the update was skipped (float32 1.0)
        because the loss or a gradient was not finite."""
        grads = [p for p in params if p.grad is not None]
        if self.config.clip_grad is not None:
            norm = torch.nn.utils.clip_grad_norm_(grads, self.config.clip_grad, foreach=True)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in grads], foreach=True)
        skipped = (~(torch.isfinite(norm) & torch.isfinite(loss))).float()
        if optimizer.defaults.get("fused"):
            # Fused AdamW skips the whole update when found_inf is set, on the device,
            # without a host synchronisation (the mechanism GradScaler uses).
            optimizer.found_inf = skipped
            optimizer.step()
        elif not bool(skipped):
            optimizer.step()
        scheduler.step()
        return norm.detach(), skipped

    @property
    def lr(self) -> float:
        """The learning rate the next step will use."""
        return self.scheduler.get_last_lr()[0]

    def step(
        self, clip: torch.Tensor, region_maps: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor | float]:
        """One iteration of Algorithm 2 on a batch (as ``accum_steps`` micro-batches).

        Args:
            clip: float ``[B, C, T, H, W]`` on :attr:`device`, sizes as the model config;
                ``B`` a multiple of ``accum_steps``.
            region_maps: ``uint8 [B, T, H, W]`` of :class:`fmae.face.FaceRegion` ids;
                needed by the facial strategy, ignored by the others.
            generator: seeds the mask; on :attr:`device`.

        Returns:
            Detached float32 scalar tensors (no host synchronisation) ``"loss"`` (L_g),
            ``"rec_loss"``, ``"grad_norm"`` (before clipping) and ``"skipped"`` (1.0 when
            a non-finite loss or gradient made the update a no-op), and with ``λ > 0``
            ``"adv_loss"``, ``"disc_loss"`` (``"critic_loss"`` with ``adv_loss="wgan"``:
            mean D(fake) − mean D(real), negative when the critic tells them apart, so
            not a BCE that a collapse check could read), ``"disc_grad_norm"``,
            ``"disc_skipped"``; the float ``"lr"`` used by this step. The losses are the
            whole batch's (the micro-batches' weighted sum).

        Under torch.distributed (DDP), ``clip`` and ``region_maps`` are this rank's
        share of the global batch (the same size on every rank) and ``generator`` must
        be seeded alike on every rank.
        """
        c = self.config
        if not isinstance(clip, torch.Tensor) or clip.dim() != 5:
            raise ValueError(
                f"clip must be a [B, C, T, H, W] tensor, got {getattr(clip, 'shape', type(clip).__name__)}"
            )
        if clip.device.type != self.device.type:
            raise ValueError(f"clip is on {clip.device}, the model on {self.device}")
        if clip.shape[0] % c.accum_steps:
            raise ValueError(f"a batch of {clip.shape[0]} clips does not split into {c.accum_steps} micro-batches")
        mask, targets = self._mask(clip.shape[0], region_maps, generator, clip.device)
        micro = self._micro_batches(clip, mask, targets)
        lr = self.lr
        self.model.train()
        # The last step's gradients go before this step's activations come.
        self.optimizer.zero_grad(set_to_none=True)
        stats: dict[str, torch.Tensor | float] = {"lr": lr}
        reused = None
        if self.discriminator is not None:
            self.disc_optimizer.zero_grad(set_to_none=True)
            reused = self._discriminator_update(micro, stats)
        self._generator_update(micro, reused, stats)
        self.step_count += 1
        return stats

    def _micro_batches(self, clip: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor | None) -> list[_Micro]:
        """The step's ``accum_steps`` micro-batches, in order: row blocks of the clips
        ``[B, C, T, H, W]``, the mask ``[B, N]`` and the targets ``[B, K]``."""
        k = self.config.accum_steps
        b = clip.shape[0] // k
        return [
            _Micro(
                clip[i * b : (i + 1) * b],
                mask[i * b : (i + 1) * b],
                None if targets is None else targets[i * b : (i + 1) * b],
                b / clip.shape[0],
                i == k - 1,
            )
            for i in range(k)
        ]

    def _reconstruct(self, m: _Micro) -> Reconstruction:
        """The model on micro-batch ``m``, through DDP's wrapper (under autocast)."""
        with self._autocast():
            return self._model_train(m.clip, m.mask, self.num_masked, m.targets)

    def _discriminator_update(self, micro: list[_Micro], stats: dict[str, Any]) -> Reconstruction | None:
        """Step 2: the discriminator on each micro-batch's real cubes and reconstructions, then
        its update. Returns the one micro-batch's reconstruction, graph and all, for the
        generator to reuse; with several, ``None`` (they were made without gradients)."""
        c, D = self.config, self.discriminator
        single = len(micro) == 1
        losses = []
        out = None
        for m in micro:
            if single:
                out = self._reconstruct(m)
            else:
                with torch.no_grad(), self._autocast():
                    out = self.model(m.clip, m.mask, self.num_masked, m.targets)
            with _sync(self._disc_train, m.last):
                # Real and fake in one call: DDP allows one forward per backward.
                with self._autocast():
                    logits = self._disc_train(torch.cat([out.target.to(out.pred.dtype), out.pred.detach()]))
                    real_logits, fake_detached = logits.chunk(2)
                    d_loss = discriminator_loss(real_logits, fake_detached, c.adv_loss)
                (d_loss * m.weight).backward()
            losses.append(d_loss.detach() * m.weight)
        d_loss = torch.stack(losses).sum()
        stats["disc_loss" if c.adv_loss == "bce" else "critic_loss"] = d_loss
        stats["disc_grad_norm"], stats["disc_skipped"] = self._update(
            d_loss, D.parameters(), self.disc_optimizer, self.disc_scheduler
        )
        return out if single else None

    def _generator_update(self, micro: list[_Micro], reused: Reconstruction | None, stats: dict[str, Any]) -> None:
        """Step 3: ``L_r + λ·L_adv`` on each micro-batch against the updated discriminator,
        then the update of encoder and decoder; ``reused``: the one micro-batch's
        reconstruction, when the discriminator's update made it with its graph."""
        c, D = self.config, self.discriminator
        losses: list[torch.Tensor] = []
        parts: dict[str, list[torch.Tensor]] = {}
        if D is not None:
            # The generator's loss must not leave gradients in D's weights; the bare
            # module is called so that DDP expects no gradient reduction for it.
            D.requires_grad_(False)
        try:
            for m in micro:
                with _sync(self._model_train, m.last):
                    out = reused if reused is not None else self._reconstruct(m)
                    fake_logits = None
                    if D is not None:
                        with self._autocast():
                            fake_logits = D(out.pred)
                    g_loss, got = generator_loss(
                        out.pred, out.target, fake_logits, c.adv_weight, c.rec_weight, c.adv_loss
                    )
                    (g_loss * m.weight).backward()
                losses.append(g_loss.detach() * m.weight)
                for name, value in got.items():
                    parts.setdefault(name, []).append(value * m.weight)
            loss = torch.stack(losses).sum()
            stats["grad_norm"], stats["skipped"] = self._update(
                loss, self.model.parameters(), self.optimizer, self.scheduler
            )
        finally:
            if D is not None:
                D.requires_grad_(True)
        stats["loss"], stats["rec_loss"] = loss, torch.stack(parts["rec"]).sum()
        if "adv" in parts:
            stats["adv_loss"] = torch.stack(parts["adv"]).sum()

    @property
    def decoder_masking(self) -> bool:
        """Whether the decoder reconstructs a subset of the masked tokens (``num_targets < num_masked``)."""
        return self.num_targets < self.num_masked

    def _mask(
        self, batch: int, region_maps: torch.Tensor | None, generator: torch.Generator | None, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This process's rows of the global batch's mask, and of the decoder's targets
        (``None`` without decoder masking: every masked token).

        Under torch.distributed every rank draws the mask of the whole global batch (the
        facial mask from all ranks' region maps) and keeps its own rows, so a run on
        several processes masks exactly as one process with the same global batch. The
        decoder's targets are drawn after the mask from the same generator, so without
        decoder masking the masks are what they were before it existed.
        """
        c, mc = self.config, self.model.config
        rank, world = _world()
        facial = c.strategy == "facial" or (self.decoder_masking and c.decoder_strategy == "facial")
        if world > 1 and facial and region_maps is not None:
            gathered = [torch.empty_like(region_maps) for _ in range(world)]
            dist.all_gather(gathered, region_maps.contiguous())
            region_maps = torch.cat(gathered)
        mask = make_mask(
            c.strategy,
            c.mask_ratio,
            batch=batch * world,
            grid=mc.grid,
            region_maps=region_maps,
            tubelet=mc.tubelet,
            generator=generator,
            device=device,
        )
        targets = None
        if self.decoder_masking:
            targets = decoder_targets(
                mask,
                c.decoder_keep,
                c.decoder_strategy,
                mc.grid,
                region_maps,
                generator,
                self.num_masked,
                tubelet=mc.tubelet,
            )
            targets = targets[rank * batch : (rank + 1) * batch]
        return mask[rank * batch : (rank + 1) * batch], targets

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue: model, optimiser and scheduler of each network,
        and the step count (nested dicts of tensors and Python numbers)."""
        state: dict[str, Any] = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step_count,
        }
        if self.discriminator is not None:
            state["discriminator"] = self.discriminator.state_dict()
            state["disc_optimizer"] = self.disc_optimizer.state_dict()
            state["disc_scheduler"] = self.disc_scheduler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output; it must come from the same configs."""
        has_disc = "discriminator" in state
        if has_disc != (self.discriminator is not None):
            raise ValueError(
                "the state was saved with adv_weight "
                + ("> 0" if has_disc else "= 0")
                + f" but this Pretrainer has adv_weight {self.config.adv_weight}"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.discriminator is not None:
            self.discriminator.load_state_dict(state["discriminator"])
            self.disc_optimizer.load_state_dict(state["disc_optimizer"])
            self.disc_scheduler.load_state_dict(state["disc_scheduler"])
        self.step_count = int(state["step"])
