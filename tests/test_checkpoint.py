import pytest
import torch

from fmae.checkpoint import checkpoint_path, latest_checkpoint, load_checkpoint, prune_checkpoints, save_checkpoint


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
    import fmae.checkpoint as ck

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ck, "save_file", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, {"x": torch.zeros(3)})
    assert torch.equal(load_checkpoint(path)["x"], torch.ones(3))  # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temp file left


def test_unknown_objects_and_foreign_files_are_refused(tmp_path):
    with pytest.raises(TypeError, match="cannot store"):
        save_checkpoint(tmp_path / "bad.safetensors", {"x": object()})
    from safetensors.torch import save_file

    save_file({"w": torch.ones(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ValueError, match="not an FMAE checkpoint"):
        load_checkpoint(tmp_path / "foreign.safetensors")


def test_latest_and_prune(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    for step in (5, 20, 100):
        save_checkpoint(checkpoint_path(tmp_path, step), {"step": step})
    assert latest_checkpoint(tmp_path).name == "ckpt-00000100.safetensors"
    prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-00000020.safetensors", "ckpt-00000100.safetensors"]
