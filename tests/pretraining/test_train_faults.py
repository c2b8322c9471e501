"""Long runs on bad days: a SIGKILL mid-run, non-finite losses."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_helpers import train_args

from fmae.data import ClipDataset
from fmae.data.loader import TorchClipLoader, dali_available
from fmae.pretraining import records, train
from fmae.runtime.distributed import Distributed
from fmae.train import main
from fmae.weights.checkpoint import load_checkpoint

LOSS_KEYS = ("loss", "rec_loss", "adv_loss", "disc_loss", "lr")


def _args(root, out, steps, *extra):
    return train_args(root, out, steps, "--dtype", "fp32", *extra, ckpt_every=4)


def _metrics(out):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in rows}  # a redone step's last record wins


def test_sigkill_then_resume_gives_the_uninterrupted_losses(small_set, tmp_path):
    steps = 16
    straight = tmp_path / "straight"
    # Every run in a fresh process: in this one, earlier tests may have left other torch threads,
    # which change the last bits of a step's loss.
    cmd = [sys.executable, "-m", "fmae.train"]
    assert subprocess.run([*cmd, *_args(small_set, straight, steps)], capture_output=True).returncode == 0

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fmae.train", *_args(small_set, killed, steps)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    first = killed / "checkpoints" / "ckpt-00000004.safetensors"
    deadline = time.monotonic() + 300
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "checkpoints" / f"ckpt-{steps:08d}.safetensors").exists()

    resumed = subprocess.run([*cmd, *_args(small_set, killed, steps, "--resume")], capture_output=True)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    want, got = _metrics(straight), _metrics(killed)
    assert sorted(got) == list(range(1, steps + 1))
    for step in range(1, steps + 1):
        for key in LOSS_KEYS:
            assert got[step][key] == want[step][key], (step, key)
    a = load_checkpoint(straight / "checkpoints" / f"ckpt-{steps:08d}.safetensors")["trainer"]
    b = load_checkpoint(killed / "checkpoints" / f"ckpt-{steps:08d}.safetensors")["trainer"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_corrupt_last_checkpoint_resumes_from_the_one_before(small_set, tmp_path, monkeypatch, caplog):
    straight = tmp_path / "straight"
    assert main(_args(small_set, straight, 12)) == 0

    broken = tmp_path / "broken"
    real_step = train.Pretrainer.step

    def crash_after_nine(self, *args, **kwargs):
        if self.step_count == 9:
            raise KeyboardInterrupt("simulated crash")
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(train.Pretrainer, "step", crash_after_nine)
    with pytest.raises(KeyboardInterrupt):
        main(_args(small_set, broken, 12))
    monkeypatch.setattr(train.Pretrainer, "step", real_step)
    last = broken / "checkpoints" / "ckpt-00000008.safetensors"
    data = bytearray(last.read_bytes())
    data[-10] ^= 0xFF  # a flipped bit in the tensor data
    last.write_bytes(bytes(data))

    with caplog.at_level("WARNING"):
        assert main(_args(small_set, broken, 12, "--resume")) == 0
    assert "ckpt-00000008.safetensors is corrupt" in caplog.text
    want, got = _metrics(straight), _metrics(broken)
    for step in range(5, 13):  # redone from the step-4 checkpoint
        for key in LOSS_KEYS:
            assert got[step][key] == want[step][key], (step, key)


def test_non_finite_data_is_skipped_then_stops_the_run(small_set, tmp_path, monkeypatch, capsys):
    real_clip = ClipDataset.clip

    def poisoned(self, index, epoch):
        item = real_clip(self, index, epoch)
        item["clip"][0, 0] = float("nan")  # a whole frame of a channel: no augmentation crop drops it
        return item

    monkeypatch.setattr(ClipDataset, "clip", poisoned)
    out = tmp_path / "run"
    code = main(_args(small_set, out, 30, "--max-bad-steps", "5"))
    assert code == 3
    err = capsys.readouterr().err
    assert "non-finite" in err and "steps in a row" in err
    rows = _metrics(out)
    assert max(rows) < 30 and all(r["skipped"] == 1.0 for r in rows.values())


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_memory_stays_flat_over_a_long_run(small_set, tmp_path, monkeypatch):
    rss = []
    real_step = train.Pretrainer.step

    def measured(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        rss.append(_rss_mb())
        return out

    monkeypatch.setattr(train.Pretrainer, "step", measured)
    # No checkpoint inside the measured window: saving one copies the whole training
    # state once, a one-off bump, not a creep.
    args = _args(small_set, tmp_path / "run", 150, "--adv-weight", "0")
    args[args.index("--ckpt-every") + 1] = "1000"
    args[args.index("--log-every") + 1] = "10"
    assert main(args) == 0
    # After warm-up (allocator pools, lazily built kernels), RSS must not creep with the
    # step count: keeping one batch per step alive (0.4 MB here) would add 40 MB.
    growth = max(rss[50:]) - rss[49]
    assert growth < 10, f"RSS grew {growth:.1f} MB between steps 50 and 150 ({rss[49]:.0f} -> {max(rss[50:]):.0f} MB)"


_real_iter = TorchClipLoader.__iter__


def _kill_workers_after_the_first_batch(self):
    batches = _real_iter(self)
    yield next(batches)
    for worker in self._loader._iterator._workers:  # what the OOM killer does to a worker
        os.kill(worker.pid, signal.SIGKILL)
    yield from batches


def test_a_dead_loader_worker_is_reported_not_hung_on(small_set, tmp_path, monkeypatch):
    # Killed from this process: the workers come from a fork server, where a patch made here
    # does not reach. Whether a batch of the dead worker's is still queued (this loader's message)
    # or not (torch's, within 5 s), the run stops naming the worker.
    monkeypatch.setattr(TorchClipLoader, "__iter__", _kill_workers_after_the_first_batch)
    args = _args(small_set, tmp_path / "run", 8)
    args[args.index("--num-workers") + 1] = "1"
    with pytest.raises(RuntimeError, match="DataLoader worker.* exited unexpectedly"):
        main(args)


_OWNER = """
import sys, time
from pathlib import Path
from fmae.data.loader import make_loader
from fmae.pretraining.train import TrainConfig, train_items
if __name__ == "__main__":
    items = train_items(TrainConfig(), Path(sys.argv[1]))
    batches = iter(make_loader(items=items, batch_size=2, num_frames=4, num_workers=2, backend=sys.argv[2]))
    next(batches)  # held: a loader that is collected shuts its workers down
    print("ready", flush=True)
    time.sleep(600)
"""


def _running(pid: int) -> bool:
    try:  # a zombie has ended; only its parent's wait is missing
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.parametrize("backend", ["torch", "dali"])
def test_loader_workers_exit_when_their_trainer_is_killed(small_set, tmp_path, backend):
    """SIGKILL: nothing in the owner runs, no atexit, no loader shutdown. Torch's workers are a
    fork server's children (found through it), DALI's the owner's own."""
    if backend == "dali" and not dali_available():
        pytest.skip("NVIDIA DALI is not installed")
    script = tmp_path / "owner.py"  # a file: DALI's spawned workers import the main module
    script.write_text(_OWNER)
    owner = subprocess.Popen([sys.executable, str(script), str(small_set), backend], stdout=subprocess.PIPE, text=True)
    assert owner.stdout.readline().strip() == "ready"
    workers = [kid for child in _children(owner.pid) for kid in [child, *_children(child)]]
    assert len(workers) >= 2 and all(map(_running, workers))
    owner.kill()
    owner.wait()
    deadline = time.monotonic() + 20
    while any(map(_running, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if _running(pid)]


@pytest.mark.parametrize("disc_loss, warned", [(5e-4, True), (0.7, False)])
def test_a_collapsed_discriminator_is_warned_about(caplog, disc_loss, warned):

    stats = {"rec_loss": 1.0, "disc_loss": disc_loss, "skipped": 0.0}
    with caplog.at_level("WARNING", logger="fmae.pretraining.records"):
        records.log_step(Distributed("cpu"), None, 40, [stats, stats], 1.0)
    assert ("discriminator" in caplog.text and "collapsed" in caplog.text) == warned
