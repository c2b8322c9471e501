"""The pre-training run: data, steps, logs, reconstruction images, checkpoints, resume.

:func:`pretrain` drives :class:`fmae.pretrain.Pretrainer` over a DAiSEE-layout folder
of preprocessed face clips (by default the built-in synthetic face videos, put through
the face pipeline) for ``config.steps`` steps. Everything a
run writes lands in ``config.out_dir``:

- ``config.yaml``: the settings;
- ``metrics.jsonl``: one JSON line of losses, learning rate and clips/s per log step;
- ``tb/``: the same as TensorBoard scalars, plus the reconstruction grids;
- ``recon-<step>.png``: a clip's frames, the masked input and the reconstruction;
- ``checkpoints/ckpt-<step>.safetensors``: model, optimisers, schedules, step, RNG
  states and config, written atomically; ``resume=True`` continues from the newest.

The data order and the masks depend only on the seed and the step, so a resumed run
takes the same batches and masks as an uninterrupted one, and a run on several
processes (``torchrun``; DDP over NCCL or gloo) the same as one process with the same
global batch. A step whose loss or gradients are not finite is skipped and counted; too
many in a row stop the run with a message.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from tqdm import tqdm

from fmae.checkpoint import checkpoint_path, latest_checkpoint, load_latest_valid, prune_checkpoints, save_checkpoint
from fmae.config import TrainConfig, to_yaml
from fmae.data import ClipDataset, ClipItem, SyntheticConfig, ensure_synthetic_daisee, list_items
from fmae.data.clips import clip_to_frames, label_file
from fmae.data.loader import EpochClips, make_loader, with_region_maps
from fmae.device import resolve_dtype
from fmae.distributed import Distributed
from fmae.masking import make_mask
from fmae.model import get_config
from fmae.preprocessing import PreprocessConfig, preprocess
from fmae.pretrain import PretrainConfig, Pretrainer

log = logging.getLogger(__name__)

# Settings that change what a checkpoint's tensors mean: a resume must keep them.
_RESUME_FIXED = ("model", "img_size", "num_frames", "mask_strategy", "adv_weight", "rec_weight", "norm_pix_loss", "batch_size",
                 "seed")


def data_root(config: TrainConfig, progress: bool = True, synthetic: SyntheticConfig | None = None) -> Path:
    """``config.data_root``, or a built-in synthetic set, preprocessed like real data.

    The synthetic face videos (generated once; ``synthetic``, default
    ``SyntheticConfig(size=config.img_size)``) go through the same face pipeline as a
    user's recordings (:func:`fmae.preprocessing.preprocess`: track, crop to
    ``img_size``, parse into regions), into a cache beside them that later runs reuse.
    """
    if config.data_root:
        root = Path(config.data_root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"data_root {root} is not a folder")
        return root
    raw = ensure_synthetic_daisee(config=synthetic or SyntheticConfig(size=config.img_size))
    faces = raw.parent / f"{raw.name}-faces{config.img_size}"
    counts = preprocess(raw, faces, PreprocessConfig(size=config.img_size), workers=max(1, config.num_workers),
                        progress=progress)
    if counts.get("ok", 0) + counts.get("skipped", 0) == 0:
        raise RuntimeError(f"preprocessing the synthetic set into {faces} gave no usable clip: {counts}")
    return faces


def train_items(config: TrainConfig, root: Path) -> list[ClipItem]:
    """The items pre-training draws clips from: ``root``'s, read as ``config.dataset``
    says (see :class:`fmae.config.TrainConfig`), those with region maps beside them."""
    dataset = config.dataset
    if dataset == "auto":
        dataset = "daisee" if label_file(root, "Train").is_file() else "folder"
    options = {"window": config.window or None} if dataset == "folder" else {}
    return with_region_maps(list_items(dataset, root, **options))


class _Batches:
    """``(epoch, item)`` keys (for :class:`fmae.data.loader.EpochClips`) of every step's
    batch: epoch ``e`` visits the items in a permutation drawn from ``(seed, e)``, and
    draws their clip windows with ``e``, so a resumed run draws the ones it would have;
    the last incomplete batch of an epoch is dropped."""

    def __init__(self, size: int, batch_size: int, seed: int, start_step: int, steps: int) -> None:
        if size < batch_size:
            raise ValueError(f"the data set has {size} clips, fewer than batch_size {batch_size}")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.start_step, self.steps = start_step, steps
        self.per_epoch = size // batch_size

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start_step, self.steps):
            epoch, k = divmod(step, self.per_epoch)
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
            yield [(epoch, i) for i in order[k * self.batch_size : (k + 1) * self.batch_size].tolist()]


def _dali_batches(items: list[ClipItem], config: TrainConfig, env: Distributed, start: int) -> Iterator[dict]:
    """This process's share of every step's batch from ``start`` to ``config.steps``, read
    by :func:`fmae.data.make_loader`'s DALI backend: each process draws from its shard of
    the items (:func:`fmae.data.clips.epoch_order`), epochs follow one another, and a
    resumed run starts inside its epoch at the batch it stopped at."""
    share = config.batch_size // env.world
    per_epoch = -(-len(items) // env.world) // share
    if per_epoch < 1:
        raise ValueError(f"{len(items)} clips over {env.world} process(es) do not fill one batch of {share}")
    epoch, first = divmod(start, per_epoch)
    loader = make_loader(items=items, batch_size=share, num_frames=config.num_frames, stride=config.temporal_stride,
                         random_start=True, shuffle=True, seed=config.seed, drop_last=True, shard_id=env.rank,
                         num_shards=env.world, device=env.device, num_workers=config.num_workers, epoch=epoch,
                         start_batch=first, backend="dali")
    step = start
    while step < config.steps:
        for batch in loader:
            yield batch
            step += 1
            if step == config.steps:
                return


def _mask_generator(seed: int, step: int, device: torch.device) -> torch.Generator:
    # One generator per step, seeded by (seed, step): resuming needs no generator state.
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + step)


def _image_grid(clip: torch.Tensor, masked: torch.Tensor, recon: torch.Tensor, frames: int = 8) -> np.ndarray:
    """Rows: original, masked input (grey where hidden), reconstruction; columns: frames.

    Inputs ``float [3, T, H, W]`` normalised; returns ``uint8 [3H, frames·W, 3]``.
    """
    take = np.linspace(0, clip.shape[1] - 1, min(frames, clip.shape[1])).round().astype(np.int64)
    # [F, H, W, 3] each → [H, F·W, 3]: the frames side by side.
    rows = [np.concatenate(list(clip_to_frames(x)[take]), axis=1) for x in (clip, masked, recon)]
    return np.concatenate(rows, axis=0)


def _masked_view(clip: torch.Tensor, mask: torch.Tensor, tubelet: tuple[int, int, int], grid: tuple[int, int, int]) -> torch.Tensor:
    """``clip [3, T, H, W]`` with its masked cubes set to the mean colour (zero)."""
    keep = (~mask).view(grid).float()
    for dim, size in enumerate(tubelet):
        keep = keep.repeat_interleave(size, dim=dim)
    return clip * keep.to(clip.device)


class _Logger:
    def __init__(self, out_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(out_dir / "tb"))
        self.jsonl = open(out_dir / "metrics.jsonl", "a")

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.tb.add_scalar(f"pretrain/{k}", v, step)
        self.jsonl.write(json.dumps({"step": step, **values}) + "\n")
        self.jsonl.flush()

    def close(self) -> None:
        self.tb.close()
        self.jsonl.close()


def _check_resume(saved: dict[str, Any], config: TrainConfig) -> None:
    # A field newer than the checkpoint had, in effect, its default value then.
    saved = {k: saved.get(k, TrainConfig.__dataclass_fields__[k].default) for k in _RESUME_FIXED}
    changed = [k for k in _RESUME_FIXED if saved[k] != getattr(config, k)]
    if changed:
        raise ValueError("cannot resume: the checkpoint was made with other " + ", ".join(
            f"{k} ({saved[k]!r} vs {getattr(config, k)!r})" for k in changed))


class _RankShare:
    """This rank's contiguous share of every global batch."""

    def __init__(self, batches: _Batches, rank: int, world: int) -> None:
        self.batches, self.rank, self.world = batches, rank, world

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        share = self.batches.batch_size // self.world
        for indices in self.batches:
            yield indices[self.rank * share : (self.rank + 1) * share]


def pretrain(config: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Run (or with ``resume`` continue) pre-training; returns the last checkpoint's path.

    Under ``torchrun`` every process runs this function: the global batch
    ``config.batch_size`` is split evenly over the ranks, gradients are averaged by DDP,
    and rank 0 alone writes logs, images and checkpoints.
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    env = Distributed(config.device)
    try:
        return _pretrain(config, resume, progress, env)
    finally:
        env.close()


def _pretrain(config: TrainConfig, resume: bool, progress: bool, env: Distributed) -> Path:
    out_dir = Path(config.out_dir).expanduser()
    ckpt_dir = out_dir / "checkpoints"
    device = env.device
    dtype = resolve_dtype(config.dtype, device)
    if config.batch_size % env.world:
        raise ValueError(f"batch_size {config.batch_size} must split evenly over {env.world} processes")

    state = None
    if resume:
        found = load_latest_valid(ckpt_dir)
        if found is None:
            raise FileNotFoundError(f"--resume: no usable checkpoint in {ckpt_dir}")
        last, state = found
        _check_resume(state["config"], config)
        log.info("resuming from %s (step %d)", last, state["trainer"]["step"])
    elif latest_checkpoint(ckpt_dir) is not None:
        raise FileExistsError(f"{ckpt_dir} already holds checkpoints: pass --resume to continue, or choose another --out-dir")

    if env.main:  # one process prepares the synthetic set; the others then find it done
        root = data_root(config, progress)
    env.barrier()
    if not env.main:
        root = data_root(config, progress=False)
    data = ClipDataset(train_items(config, root), config.num_frames, config.temporal_stride, random_start=True, seed=config.seed)
    model_config = get_config(config.model, img_size=config.img_size, num_frames=config.num_frames,
                              norm_pix_loss=config.norm_pix_loss)
    sample = data[0]["clip"]
    if tuple(sample.shape[-2:]) != (config.img_size, config.img_size):
        raise ValueError(f"clips in {root} are {tuple(sample.shape[-2:])}, but img_size is {config.img_size}")

    torch.manual_seed(config.seed)
    run = Pretrainer(model_config, PretrainConfig(
        strategy=config.mask_strategy, mask_ratio=config.mask_ratio, adv_weight=config.adv_weight,
        rec_weight=config.rec_weight,
        batch_size=config.batch_size, base_lr=config.base_lr, warmup_steps=config.warmup_steps,
        total_steps=config.steps, weight_decay=config.weight_decay, clip_grad=config.clip_grad or None,
        autocast=dtype), device=device)
    if config.compile:
        run.model.compile()  # in place: the state dict keeps its keys, so checkpoints do not change
    if state is not None:
        run.load_state_dict(state["trainer"])
        torch.set_rng_state(state["torch_rng"])
    start = run.step_count

    logger = None
    if env.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(to_yaml(config))
        logger = _Logger(out_dir)
    if config.loader == "dali":
        loader: Iterable[dict] = _dali_batches(data.items, config, env, start)
    else:
        batches = _Batches(len(data), config.batch_size, config.seed, start, config.steps)
        loader = DataLoader(EpochClips(data), batch_sampler=_RankShare(batches, env.rank, env.world),
                            num_workers=config.num_workers, pin_memory=device.type == "cuda")
    log.info("pre-training %s on %s (%d items, %s loader), %s, %s, %d process(es), steps %d..%d",
             config.model, root, len(data), config.loader, device, dtype, env.world, start, config.steps)

    last_path = latest_checkpoint(ckpt_dir)
    bar = tqdm(total=config.steps, initial=start, disable=not (progress and env.main), desc="pretrain", unit="step",
               dynamic_ncols=True)
    pending: list[dict[str, Any]] = []
    # Non-finite steps are counted on the device and read on log steps only.
    in_a_row = torch.zeros((), device=device)
    worst_in_a_row = torch.zeros((), device=device)
    tick, clips_since = time.perf_counter(), 0
    try:
        for step, batch in enumerate(loader, start=start):
            clip = batch["clip"].to(device, non_blocking=True)
            regions = batch["region_map"].to(device, non_blocking=True)
            stats = run.step(clip, regions, _mask_generator(config.seed, step, device))
            pending.append(stats)
            in_a_row = (in_a_row + 1) * stats["skipped"]
            worst_in_a_row = torch.maximum(worst_in_a_row, in_a_row)
            clips_since += clip.shape[0] * env.world
            done = step + 1
            if done % config.log_every == 0 or done == config.steps:
                _log_step(config, env, logger, bar, done, pending, clips_since / (time.perf_counter() - tick))
                if int(worst_in_a_row) >= config.max_bad_steps:
                    raise FloatingPointError(
                        f"stopping at step {done}: {int(worst_in_a_row)} steps in a row had a non-finite loss or "
                        "gradient (they were skipped). Lower --base-lr, check the data, or try --dtype fp32; "
                        f"the last good checkpoint is in {ckpt_dir}.")
                pending, tick, clips_since = [], time.perf_counter(), 0
            if env.main and (done % config.image_every == 0 or done == config.steps):
                _write_reconstruction(run, clip[:1], regions[:1], config, done, out_dir, logger)
            if done % config.ckpt_every == 0 or done == config.steps:
                env.check_in_sync(run.model)
                if env.main:
                    last_path = save_checkpoint(checkpoint_path(ckpt_dir, done), {
                        "trainer": run.state_dict(), "torch_rng": torch.get_rng_state(),
                        "config": dataclasses.asdict(config), "model_config": model_config.to_dict()})
                    prune_checkpoints(ckpt_dir, config.keep_last)
            bar.update(1)
    finally:
        bar.close()
        if logger is not None:
            logger.close()
    return last_path


def _log_step(config: TrainConfig, env: Distributed, logger: _Logger | None, bar: tqdm, step: int,
              pending: list[dict[str, Any]], clips_per_s: float) -> None:
    """Average the pending steps' stats over steps and ranks (a sync), and log them."""
    keys = sorted(pending[-1])
    means = torch.stack([torch.stack([torch.as_tensor(s[k], dtype=torch.float32).to(env.device) for s in pending]).mean()
                         for k in keys])
    values = dict(zip(keys, env.mean(means).tolist()))
    values["skipped"] *= len(pending)  # a count, not a mean
    values["clips_per_s"] = clips_per_s
    if "disc_loss" in values and values["disc_loss"] < 1e-3:
        log.warning("step %d: the discriminator's loss is %.2e: it has collapsed (wins every time); "
                    "consider a lower --adv-weight", step, values["disc_loss"])
    if logger is not None:
        logger.scalars(step, values)
        bar.set_postfix(loss=f"{values['rec_loss']:.4f}", clips_s=f"{clips_per_s:.1f}")


@torch.no_grad()
def _write_reconstruction(run: Pretrainer, clip: torch.Tensor, regions: torch.Tensor, config: TrainConfig,
                          step: int, out_dir: Path, logger: _Logger) -> None:
    mc = run.model.config
    mask = make_mask(config.mask_strategy, config.mask_ratio, batch=1, grid=mc.grid, region_maps=regions,
                     tubelet=mc.tubelet, generator=_mask_generator(config.seed + 1, step, clip.device), device=clip.device)
    run.model.eval()
    recon = run.model.reconstruct(clip, mask, run.num_masked)
    grid = _image_grid(clip[0], _masked_view(clip[0], mask[0], mc.tubelet, mc.grid), recon[0])
    Image.fromarray(grid).save(out_dir / f"recon-{step:08d}.png")
    logger.tb.add_image("pretrain/reconstruction", grid, step, dataformats="HWC")
