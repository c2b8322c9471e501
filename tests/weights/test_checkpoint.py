import pytest
import torch

from fmae.weights.checkpoint import (
    CorruptCheckpointError,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    load_latest_valid,
    prune_checkpoints,
    save_checkpoint,
)


def test_round_trip_of_a_training_state(tmp_path):
    model = torch.nn.Linear(5, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    model(torch.randn(4, 5)).sum().backward()
    opt.step()
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "step": 17,
        "rng": torch.get_rng_state(),
        "config": {"name": "tiny", "ratio": 0.9, "tubelet": [2, 16, 16], "resume": None, "flag": True},
    }
    path = save_checkpoint(tmp_path / "a.safetensors", state)
    back = load_checkpoint(path)
    assert back["step"] == 17 and back["config"] == state["config"]
    assert torch.equal(back["rng"], state["rng"])
    for k, v in state["model"].items():
        assert torch.equal(back["model"][k], v)
    opt2 = torch.optim.AdamW(torch.nn.Linear(5, 3).parameters())
    opt2.load_state_dict(back["optimizer"])  # int keys of the optimiser state survive
    assert list(opt2.state_dict()["param_groups"][0]["betas"]) == [0.9, 0.95]
    for k, v in opt.state_dict()["state"][0].items():
        assert torch.equal(opt2.state_dict()["state"][0][k], v)


def test_write_is_atomic(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.safetensors", {"x": torch.ones(3)})
    import fmae.weights.checkpoint as ck

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ck, "save_tensors", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, {"x": torch.zeros(3)})
    assert torch.equal(load_checkpoint(path)["x"], torch.ones(3))  # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temp file left


def test_unknown_objects_and_foreign_files_are_refused(tmp_path):
    with pytest.raises(TypeError, match="cannot store"):
        save_checkpoint(tmp_path / "bad.safetensors", {"x": object()})
    from safetensors.torch import save_file

    save_file({"w": torch.ones(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(CorruptCheckpointError, match="not an FMAE checkpoint"):
        load_checkpoint(tmp_path / "foreign.safetensors")


def test_latest_and_prune(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    for step in (5, 20, 100):
        save_checkpoint(checkpoint_path(tmp_path, step), {"step": step})
    assert latest_checkpoint(tmp_path).name == "ckpt-00000100.safetensors"
    prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-00000020.safetensors", "ckpt-00000100.safetensors"]


def _corrupt(path, offset_from_end=20):
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupt_or_torn_checkpoint_falls_back_to_the_previous_good_one(tmp_path, caplog):
    for step in (3, 6, 9):
        save_checkpoint(checkpoint_path(tmp_path, step), {"step": step, "w": torch.full((64,), float(step))})
    _corrupt(checkpoint_path(tmp_path, 9))  # a flipped bit in the tensor data
    torn = checkpoint_path(tmp_path, 6)
    torn.write_bytes(torn.read_bytes()[:-40])  # cut short, as by a crash without atomic rename
    with pytest.raises(CorruptCheckpointError, match="SHA-256"):
        load_checkpoint(checkpoint_path(tmp_path, 9))
    with caplog.at_level("WARNING"):
        path, state = load_latest_valid(tmp_path)
    assert path.name == "ckpt-00000003.safetensors" and state["step"] == 3
    assert torch.equal(state["w"], torch.full((64,), 3.0))
    assert caplog.text.count("skipping checkpoint") == 2


class _Exploit:
    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_checkpoint_is_refused_without_running_it(tmp_path):
    _Exploit.marker = tmp_path / "pwned"
    evil = checkpoint_path(tmp_path, 12)
    torch.save({"model": _Exploit()}, evil)
    save_checkpoint(checkpoint_path(tmp_path, 3), {"step": 3})
    with pytest.raises(CorruptCheckpointError, match="not a readable safetensors"):
        load_checkpoint(evil)
    path, state = load_latest_valid(tmp_path)
    assert state["step"] == 3
    assert not _Exploit.marker.exists()


def test_prune_removes_partial_writes(tmp_path):
    save_checkpoint(checkpoint_path(tmp_path, 1), {"step": 1})
    (tmp_path / ".ckpt-00000002.safetensors.abc.tmp").write_bytes(b"half")
    prune_checkpoints(tmp_path, keep=3)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt-00000001.safetensors"]
