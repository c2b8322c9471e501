"""Two CPU processes with gloo (torchrun) against one process with the same global batch."""

import json
import math

import pytest
import torch
from torchrun_helpers import torchrun
from train_helpers import FAST_PROBE, train_args

from fmae.data.loader import dali_available
from fmae.train import main
from fmae.weights.checkpoint import load_checkpoint


def _args(root, out, *extra):
    # fp32: the comparison is of the process layouts, not of bf16's rounding in two reduction orders.
    return train_args(root, out, 6, "--dtype", "fp32", *extra, batch_size=4)


@pytest.mark.parametrize("strategy", ["facial", "random"])
def test_two_gloo_processes_match_one_process(small_set, tmp_path, strategy):
    single, double = tmp_path / "single", tmp_path / "double"
    assert main(_args(small_set, single, "--mask-strategy", strategy)) == 0
    proc = torchrun("fmae.train", *_args(small_set, double, "--mask-strategy", strategy), out=double)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Rank 0 alone wrote; the ranks' weights were checked equal at every checkpoint.
    assert sorted(p.name for p in (double / "checkpoints").iterdir()) == [
        "ckpt-00000003.safetensors",
        "ckpt-00000006.safetensors",
    ]
    one = [json.loads(line) for line in (single / "metrics.jsonl").read_text().splitlines()]
    two = [json.loads(line) for line in (double / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in two] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(one, two):
        for key in ("loss", "rec_loss", "disc_loss", "adv_loss"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)
    a = load_checkpoint(single / "checkpoints" / "ckpt-00000006.safetensors")["trainer"]["model"]
    b = load_checkpoint(double / "checkpoints" / "ckpt-00000006.safetensors")["trainer"]["model"]
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI is not installed")
def test_two_gloo_processes_pretrain_through_dali(small_set, tmp_path):
    out = tmp_path / "dali"
    proc = torchrun("fmae.train", *_args(small_set, out, "--loader", "dali", "--num-frames", "4"), out=out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The run checks the ranks' weights equal at every checkpoint, so DDP kept them in step.
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "ckpt-00000003.safetensors",
        "ckpt-00000006.safetensors",
    ]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6] and all(math.isfinite(r["loss"]) for r in rows)


def test_two_gloo_processes_probe_like_one(small_set, tmp_path):
    from fmae.downstream.head import load_probe
    from fmae.probe import main as probe_main

    # Two views per item: the random windows must not depend on which rank encodes an item.
    probe_args = [
        *FAST_PROBE,
        "--train-views",
        "2",
        "--data-root",
        str(small_set),
    ]
    assert probe_main([*probe_args, "--out-dir", str(tmp_path / "one")]) == 0
    proc = torchrun("fmae.probe", *probe_args, "--out-dir", str(tmp_path / "two"), out=tmp_path / "two")
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["confusion_matrix"] == one["confusion_matrix"] and two["train_items"] == one["train_items"]
    (a, _), (b, _) = (
        load_probe(tmp_path / "one" / "probe.safetensors"),
        load_probe(tmp_path / "two" / "probe.safetensors"),
    )
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-6, msg=name)
    assert proc.stdout.count("wrote") == 1  # rank 0 alone reports

    # Data-parallel fine-tuning: the ranks' encoders stay identical (checked in the run).
    proc = torchrun(
        "fmae.probe",
        *probe_args,
        "--finetune",
        "--finetune-epochs",
        "1",
        "--out-dir",
        str(tmp_path / "ft"),
        out=tmp_path / "ft",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "ft" / "encoder.safetensors").is_file()
    assert json.loads((tmp_path / "ft" / "metrics.json").read_text())["mode"] == "finetune"
