import json

import pytest
import torch
from safetensors.torch import save_file

from fmae.downstream.head import LinearProbe, load_probe, save_probe
from fmae.model import create
from fmae.weights import (
    ENCODER_KIND,
    MODEL_KIND,
    config_path,
    fingerprint,
    load_encoder,
    load_model,
    load_weights,
    save_encoder,
    save_model,
    save_weights,
)
from fmae.weights import checkpoint as checkpoint_mod
from fmae.weights import format as weights_mod
from fmae.weights.checkpoint import save_checkpoint


@pytest.fixture
def model():
    torch.manual_seed(0)
    return create("fmae_vit_tiny", img_size=32, num_frames=4).eval()


def _clip(seed=1):
    return torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_encoder_round_trip_gives_identical_features(model, tmp_path):
    path = save_encoder(model, tmp_path / "enc.safetensors")
    meta = json.loads(config_path(path).read_text())
    assert meta["kind"] == ENCODER_KIND and meta["config"] == model.config.to_dict()
    loaded = load_encoder(path)
    assert not loaded.training and loaded.config == model.config
    clip = _clip()
    with torch.no_grad():
        assert torch.equal(loaded.forward_features(clip), model.forward_features(clip))
        assert torch.equal(loaded.forward_features(clip, pool=False), model.forward_features(clip, pool=False))
    assert fingerprint(loaded) == fingerprint(model)
    # Only the encoder is exported.
    tensors, _ = load_weights(path, ENCODER_KIND)
    assert tensors and not any(k.startswith(("decoder", "mask_token")) for k in tensors)


def test_encoder_from_a_pretraining_checkpoint(model, tmp_path):
    ckpt = save_checkpoint(
        tmp_path / "ckpt-00000001.safetensors",
        {"trainer": {"model": model.state_dict(), "step": 1}, "model_config": model.config.to_dict(), "config": {}},
    )
    loaded = load_encoder(ckpt)
    with torch.no_grad():
        assert torch.equal(loaded.forward_features(_clip()), model.forward_features(_clip()))


def test_encoder_from_a_run_folder_takes_the_newest_valid_checkpoint(model, tmp_path, monkeypatch):
    folder = tmp_path / "run" / "checkpoints"
    save_checkpoint(
        folder / "ckpt-00000001.safetensors",
        {"trainer": {"model": model.state_dict(), "step": 1}, "model_config": model.config.to_dict(), "config": {}},
    )
    (folder / "ckpt-00000002.safetensors").write_bytes(b"torn")  # newer, but corrupt: skipped
    for path in (tmp_path / "run", folder):
        assert load_model(path).path == folder / "ckpt-00000001.safetensors"
        assert fingerprint(load_encoder(path)) == fingerprint(model)
    read = []
    real = checkpoint_mod.load_checkpoint
    monkeypatch.setattr(checkpoint_mod, "load_checkpoint", lambda p, *a: read.append(p) or real(p, *a))
    monkeypatch.setattr(weights_mod, "load_checkpoint", checkpoint_mod.load_checkpoint)
    load_model(tmp_path / "run")
    assert [p.name for p in read] == ["ckpt-00000002.safetensors", "ckpt-00000001.safetensors"]  # each file once
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no valid pre-training checkpoint"):
        load_encoder(tmp_path / "empty")


def test_fingerprint_follows_encoder_weights_only(model):
    before = fingerprint(model)
    with torch.no_grad():
        model.decoder_pred.weight.add_(1.0)
    assert fingerprint(model) == before
    with torch.no_grad():
        model.blocks[0].attn.proj.bias[0] += 1e-3
    assert fingerprint(model) != before


def test_probe_round_trip(tmp_path):
    torch.manual_seed(0)
    for norm in ("batchnorm", "layernorm", "none"):
        probe = LinearProbe(16, 3, norm)
        probe.train()
        probe(torch.randn(8, 16))  # moves BatchNorm's running statistics off their defaults
        probe.eval()
        meta = {"task": "daisee", "class_names": ["a", "b", "c"]}
        path = save_probe(probe, tmp_path / f"probe-{norm}.safetensors", meta)
        loaded, loaded_meta = load_probe(path)
        x = torch.randn(5, 16)
        assert torch.equal(loaded(x), probe(x)) and loaded_meta == meta


def test_bad_weight_files_give_clear_errors(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="local files only"):
        load_encoder(tmp_path / "nowhere.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all" * 10)
    with pytest.raises(ValueError, match="nor is it an exported encoder"):
        load_encoder(junk)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(3)}, str(foreign))
    with pytest.raises(ValueError, match="not an FMAE checkpoint"):
        load_encoder(foreign)
    no_model = save_checkpoint(tmp_path / "ckpt-00000002.safetensors", {"step": 3})
    with pytest.raises(ValueError, match="without a pre-trained model"):
        load_encoder(no_model)
    # A probe is not an encoder, and an encoder is not a probe.
    probe_path = save_probe(LinearProbe(192, 4), tmp_path / "probe.safetensors", {})
    with pytest.raises(ValueError, match="expected 'fmae-encoder'"):
        load_encoder(probe_path)
    enc_path = save_encoder(model, tmp_path / "enc.safetensors")
    with pytest.raises(ValueError, match="expected 'fmae-probe'"):
        load_probe(enc_path)
    # A JSON edited after the weights were written: their digest refuses it.
    meta = json.loads(config_path(enc_path).read_text())
    meta["config"]["embed_dim"] = 96
    config_path(enc_path).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="SHA-256 differs"):
        load_encoder(enc_path)
    # A config that does not fit the tensors it was written with.
    misfit = {**model.config.to_dict(), "embed_dim": 96}
    misfit_path = save_weights(tmp_path / "misfit.safetensors", weights_mod.encoder_state(model), ENCODER_KIND, misfit)
    with pytest.raises(ValueError, match="do not fit"):
        load_encoder(misfit_path)
    with pytest.raises(ValueError, match=".safetensors"):
        save_weights(tmp_path / "x.pt", model, ENCODER_KIND, {})
    with pytest.raises(TypeError):
        save_encoder(LinearProbe(4, 2), tmp_path / "y.safetensors")


def test_whole_model_round_trip(model, tmp_path):
    path = save_model(model, tmp_path / "model.safetensors", {"source": {"format": "hf", "notes": []}})
    meta = json.loads(config_path(path).read_text())
    assert meta["kind"] == MODEL_KIND and meta["source"] == {"format": "hf", "notes": []}
    loaded = load_model(path)
    assert loaded.has_decoder and loaded.path == path and not loaded.model.training
    mine, theirs = model.state_dict(), loaded.model.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert fingerprint(load_encoder(path)) == fingerprint(model)
    with pytest.raises(ValueError, match="expected 'fmae-encoder'"):
        load_weights(path, ENCODER_KIND)


def test_converted_architectures_round_trip(tmp_path):
    # The options of converted models (fc_norm, a saved position table, q/v biases, layer scale) survive export.
    torch.manual_seed(0)
    model = create(
        "fmae_vit_tiny",
        img_size=32,
        num_frames=4,
        qkv_bias="qv",
        pooling="mean_fc_norm",
        position_embedding="fixed",
        init_values=0.1,
        layer_norm_eps=1e-5,
    ).eval()
    with torch.no_grad():
        model.pos_embed.add_(0.01)
        model.fc_norm.weight.mul_(2.0)
    tensors, _ = load_weights(save_encoder(model, tmp_path / "enc.safetensors"), ENCODER_KIND)
    assert {"pos_embed", "fc_norm.weight", "blocks.0.attn.q_bias", "blocks.0.gamma_1"} <= set(tensors)
    loaded = load_encoder(tmp_path / "enc.safetensors")
    assert loaded.config == model.config
    with torch.no_grad():
        assert torch.equal(loaded.forward_features(_clip()), model.forward_features(_clip()))
    assert fingerprint(loaded) == fingerprint(model)


def test_fingerprint_of_a_native_encoder_is_unchanged(model):
    # Architecture options at FMAE's defaults are not part of the config dict, so fingerprints (which key feature
    # caches and bind probes to their encoders) are what they were before the options existed.
    assert "pooling" not in model.config.to_dict()
    changed = create("fmae_vit_tiny", img_size=32, num_frames=4, pooling="mean")
    changed.load_state_dict(model.state_dict(), strict=False)
    assert fingerprint(changed) != fingerprint(model)
