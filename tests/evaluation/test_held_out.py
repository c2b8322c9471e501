"""The held-out clips a pre-training run logs: spread over the split's people, with their spread."""

from pathlib import Path

import pytest
import torch

from fmae.data import ClipItem, list_items
from fmae.evaluation.error import evaluate_reconstruction, target_cubes
from fmae.evaluation.held_out import held_out_items, spread_over_people
from fmae.evaluation.report import flat_scalars
from fmae.model import Reconstruction, create
from fmae.ops import gather_tokens, visible_index


def _items(clips_per_person):
    """DAiSEE-layout items: ``Validation/<person>/<clip>/<clip>.avi``, people in order."""
    return [
        ClipItem(Path(f"Validation/{person:03d}/{person:03d}{k}/{person:03d}{k}.avi"))
        for person, n in enumerate(clips_per_person)
        for k in range(n)
    ]


def _people(items):
    return [int(item.path.parent.parent.name) for item in items]


def test_few_clips_are_the_first_clips_of_people_spread_over_the_split():
    items = _items([3] * 10)
    chosen = spread_over_people(items, 4)
    assert _people(chosen) == [0, 2, 5, 7] and all(item.path.name.endswith("0.avi") for item in chosen)
    assert _people(spread_over_people(items, 10)) == list(range(10))
    assert spread_over_people(items, 1) == [items[0]]


def test_more_clips_than_people_take_every_persons_first_then_second_clips_in_order():
    items = _items([1, 3, 2, 3])
    chosen = spread_over_people(items, 7)
    # firsts of all 4, then the seconds of persons 1, 2, 3: in the items' order.
    assert [items.index(item) for item in chosen] == [0, 1, 2, 4, 5, 6, 7]
    assert spread_over_people(items, 100) == items


def test_a_pretraining_run_takes_its_held_out_clips_spread_over_the_people(small_set):
    split = list_items("daisee", small_set, "Validation")  # 1 person, 2 clips
    items, what = held_out_items(small_set, "auto", 1, [])
    assert items == split[:1] and what == "1 clips of 1 people spread over the Validation split"
    items, what = held_out_items(small_set, "auto", -1, [])
    assert items == split and what.startswith("2 clips of 1 people")


def test_the_spread_is_the_standard_deviation_of_the_per_clip_errors(monkeypatch):
    model = create("fmae_vit_tiny", img_size=32, num_frames=4)
    offsets = torch.tensor([0.1, 0.2, 0.4])  # the model misses clip b's every masked value by offsets[b]

    def forward(clip, mask, num_masked=None):
        _, masked = visible_index(mask, num_masked)
        target = gather_tokens(target_cubes(clip, model), masked)
        return Reconstruction(target + offsets[: clip.shape[0], None, None], target, masked)

    monkeypatch.setattr(model, "forward", forward)
    g = torch.Generator().manual_seed(0)
    batch = {
        "clip": torch.randn(3, 3, 4, 32, 32, generator=g),
        "region_map": torch.zeros(3, 4, 32, 32, dtype=torch.uint8),
    }
    result = evaluate_reconstruction(model, [batch], ratio=0.5, strategy="random")
    per_clip = offsets.double().square()
    assert result["model"]["all"] == pytest.approx(float(per_clip.mean()), rel=1e-5)
    assert result["model_spread"]["clip_std"] == pytest.approx(float(per_clip.std()), rel=1e-5)
    assert result["model_spread"]["all_sem"] == pytest.approx(float(per_clip.std()) / 3**0.5, rel=1e-5)
    assert flat_scalars(result)["heldout/all_sem"] == result["model_spread"]["all_sem"]
    one = evaluate_reconstruction(model, [{k: v[:1] for k, v in batch.items()}], ratio=0.5, strategy="random")
    assert one["model_spread"] == {"clip_std": None, "all_sem": None}
