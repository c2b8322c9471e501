"""What pre-training uses: a few fixed held-out clips, read once, whose reconstruction error
the run logs at every checkpoint (:func:`held_out_set`, :class:`HeldOut`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import torch

from fmae.data import ClipDataset, ClipItem, list_items, region_map_path
from fmae.data.clips import label_file
from fmae.data.datasets import resolve_dataset
from fmae.evaluation.error import evaluate_reconstruction
from fmae.evaluation.report import flat_scalars
from fmae.masking import num_masked
from fmae.model import FMAE, FMAEConfig

log = logging.getLogger(__name__)

AUTO_CLIPS = 40
"""Held-out clips a pre-training run evaluates on a DAiSEE layout when ``eval_clips`` is -1:
the whole Validation split of the built-in set (40 people), about a second of a tiny model's
CPU time at every checkpoint."""


class HeldOut:
    """A few fixed clips, read once, whose reconstruction error a pre-training run logs at
    every checkpoint (:meth:`scalars`). Evaluating changes neither the model's mode nor
    torch's global RNG, so the training that follows is what it would have been."""

    def __init__(
        self,
        batches: list[dict[str, torch.Tensor]],
        *,
        ratio: float,
        strategy: str,
        seed: int,
        device: torch.device,
        dtype: torch.dtype,
        what: str = "",
    ) -> None:
        self.batches, self.ratio, self.strategy, self.seed = batches, ratio, strategy, seed
        self.device, self.dtype, self.what = torch.device(device), dtype, what

    def evaluate(self, model: FMAE) -> dict[str, Any]:
        """:func:`evaluate_reconstruction` of ``model`` on the held-out clips."""
        return evaluate_reconstruction(
            model,
            self.batches,
            ratio=self.ratio,
            strategy=self.strategy,
            seed=self.seed,
            device=self.device,
            dtype=self.dtype,
        )

    def scalars(self, model: FMAE) -> dict[str, float | None]:
        """:func:`flat_scalars` of :meth:`evaluate`: ``heldout/all``, ``heldout/<region>``,
        ``heldout/<baseline>/<region>``."""
        return flat_scalars(self.evaluate(model))


def held_out_set(
    root: Path,
    dataset: str,
    clips: int,
    train_items: Sequence[ClipItem],
    *,
    model: FMAE,
    stride: int,
    ratio: float,
    strategy: str,
    seed: int,
    device: torch.device,
    dtype: torch.dtype,
    batch_size: int = 8,
) -> HeldOut | None:
    """The pre-training run's :class:`HeldOut` clips (:func:`held_out_items`), centred
    and read once; ``None`` (logged) when there are none or they do not fit the model."""
    try:
        items, what = held_out_items(root, dataset, clips, train_items)
    except (ValueError, FileNotFoundError) as err:
        log.warning("held-out reconstruction error off: %s", err)
        return None
    if not items:
        log.info("held-out reconstruction error: %s", what if what.startswith("off") else f"off: no clips in {what}")
        return None
    c = model.config
    if num_masked(strategy, c.grid, ratio) >= c.num_tokens:
        log.warning("held-out reconstruction error off: the %s mask at ratio %g hides every token", strategy, ratio)
        return None
    batches = _read_batches(items, what, c, stride, device, batch_size)
    if batches is None:
        return None
    log.info("held-out reconstruction error at every checkpoint on %s (%s mask at ratio %g)", what, strategy, ratio)
    return HeldOut(batches, ratio=ratio, strategy=strategy, seed=seed, device=device, dtype=dtype, what=what)


def held_out_items(root: Path, dataset: str, clips: int, train_items: Sequence[ClipItem]) -> tuple[list[ClipItem], str]:
    """The clips a pre-training run evaluates at its checkpoints, and what they are in words.

    ``clips``: -1 (auto) is :data:`AUTO_CLIPS` on a DAiSEE layout and none on a plain
    folder; 0 none. ``dataset`` is read by :func:`fmae.data.datasets.resolve_dataset` (``auto``:
    DAiSEE when a label file of any split is there). A DAiSEE layout gives clips of its
    Validation split (else Test) spread over its people (:func:`spread_over_people`), so that
    a few clips stand for the split rather than for its first people. A plain folder has no
    held-out split: given a positive ``clips``, its first videos (those of ``train_items``,
    whole), which training also sees.
    """
    daisee = resolve_dataset(root, dataset) == "daisee"
    if clips == 0 or (clips < 0 and not daisee):
        return [], "off"
    if daisee:
        clips = AUTO_CLIPS if clips < 0 else clips
        split = next((s for s in ("Validation", "Test") if label_file(root, s).is_file()), None)
        if split is None:
            return [], f"off: {root} has neither Validation nor Test labels"
        items = [it for it in list_items("daisee", root, split) if _has_regions(it)]
        chosen = spread_over_people(items, clips)
        people = len({_person(it) for it in chosen})
        return chosen, f"{len(chosen)} clips of {people} people spread over the {split} split"
    paths = list(dict.fromkeys(Path(it.path) for it in train_items))[:clips]
    return [ClipItem(p) for p in paths if _has_regions(ClipItem(p))], (
        f"the first {len(paths)} training videos (a plain folder has no held-out split: training sees them too)"
    )


def _person(item: ClipItem) -> str:
    """The person of a DAiSEE clip: its subject folder (``<split>/<subject>/<clip>/<clip>.avi``)."""
    return Path(item.path).parent.parent.name


def spread_over_people(items: Sequence[ClipItem], clips: int) -> list[ClipItem]:
    """Up to ``clips`` of ``items`` that cover their people evenly, in the items' order.

    With fewer clips than people, the first clip of every k-th person (evenly spaced over the
    people in order); with more, every person's first clip, then every person's second, and
    so on.
    """
    by_person: dict[str, list[ClipItem]] = {}
    for item in items:
        by_person.setdefault(_person(item), []).append(item)
    people = list(by_person.values())
    if clips <= len(people):
        return [people[i * len(people) // clips][0] for i in range(clips)]
    rank = {id(item): k for clips_of_one in people for k, item in enumerate(clips_of_one)}
    by_rank = sorted(items, key=lambda item: rank[id(item)])  # stable: firsts, then seconds, …
    chosen = {id(item) for item in by_rank[:clips]}
    return [item for item in items if id(item) in chosen]


def _has_regions(item: ClipItem) -> bool:
    return region_map_path(item.path).is_file()


def _read_batches(
    items: list[ClipItem], what: str, c: FMAEConfig, stride: int, device: torch.device, batch_size: int
) -> list[dict[str, torch.Tensor]] | None:
    """The centred clips of ``items`` with their region maps, in batches on ``device``;
    ``None`` (logged) when they cannot be read or are not the model's size."""
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            data = ClipDataset(items, c.num_frames, stride, random_start=False, with_regions=True)
            clips = [data[i] for i in range(len(data))]
    except (ValueError, FileNotFoundError) as err:
        log.warning("held-out reconstruction error off: cannot read %s: %s", what, err)
        return None
    if any(tuple(d["clip"].shape[1:]) != (c.num_frames, c.img_size, c.img_size) for d in clips):
        log.warning("held-out reconstruction error off: the clips of %s are not %d×%d", what, c.img_size, c.img_size)
        return None
    return [
        {
            "clip": torch.stack([d["clip"] for d in clips[i : i + batch_size]]).to(device),
            "region_map": torch.stack([d["region_map"] for d in clips[i : i + batch_size]]).to(device),
        }
        for i in range(0, len(clips), batch_size)
    ]
