"""MARLIN checkpoints → FMAE, against marlin-pytorch's own modules.

marlin-pytorch's package ``__init__`` imports its face detector and video reader (cv2,
ffmpeg, torchvision), so its model modules are loaded here without it. Install it with
``pip install --no-deps marlin-pytorch einops``: its declared dependencies pull
torchvision, which replaces a CPU build of torch.
"""

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch

from fmae.interop import Overrides, read_source
from fmae.weights import load_model

pytest.importorskip("einops")
_SPEC = importlib.util.find_spec("marlin_pytorch")
if _SPEC is None:
    pytest.skip(
        "marlin-pytorch is not installed (pip install --no-deps marlin-pytorch einops)", allow_module_level=True
    )

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1, 1)


def _marlin(module):
    if "_marlin_model" not in sys.modules:
        package = types.ModuleType("_marlin_model")  # its model modules, without the package's __init__
        package.__path__ = [str(Path(_SPEC.origin).parent / "model")]
        sys.modules["_marlin_model"] = package
    return importlib.import_module(f"_marlin_model.{module}")


def perturb(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "pos_embedding" not in name:  # MARLIN's fixed tables stay as it builds them
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return module.eval()


def check(ours, theirs, rel=1e-4):
    err, scale = float((ours - theirs).abs().max()), float(theirs.abs().mean())
    assert err <= rel * scale, f"max |diff| {err:.3g} > {rel} × mean |output| {scale:.3g}"


# (img, patch, frames, tubelet, width, heads, depth, qkv_bias, init_values); heads are width / 64 except where
# the test gives them.
ENCODERS = {
    "64w": (32, 16, 4, 2, 64, 1, 2, True, 0.0),
    "192w-layer-scale": (32, 8, 4, 2, 192, 3, 2, True, 0.1),
    "96w-3heads-nobias": (48, 16, 2, 1, 96, 3, 3, False, 0.0),
}


def _encoder(name, seed=0):
    img, patch, frames, tubelet, width, heads, depth, bias, init = ENCODERS[name]
    torch.manual_seed(seed)
    encoder = _marlin("encoder").MarlinEncoder(
        img_size=img,
        patch_size=patch,
        n_frames=frames,
        embed_dim=width,
        depth=depth,
        num_heads=heads,
        qkv_bias=bias,
        init_values=init,
        tubelet_size=tubelet,
    )
    return perturb(encoder, seed)


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_encoder_features(name, tmp_path):
    img, _, frames, _, width, heads, *_ = ENCODERS[name]
    encoder = _encoder(name)
    path = tmp_path / "marlin.encoder.pt"  # Marlin.from_file's feature-extractor layout
    torch.save({f"encoder.{k}": v for k, v in encoder.state_dict().items()}, path)
    given = heads if width // 64 != heads else 0
    over = dict(num_heads=given, num_frames=frames)
    converted = read_source(path, overrides=Overrides(**over))
    c = converted.model.config
    assert converted.source["format"] == "marlin" and not converted.has_decoder
    assert (c.img_size, c.num_frames, c.num_heads, c.pooling, c.position_embedding) == (
        img,
        frames,
        heads,
        "mean_norm",
        "fixed",
    )
    as_given = read_source(path, overrides=Overrides(**over, input_norm="source")).model
    pixels = torch.rand(2, 3, frames, img, img, generator=torch.Generator().manual_seed(1))  # MARLIN's [0, 1] input
    with torch.no_grad():
        for pool in (False, True):
            want = encoder.extract_features(pixels, seq_mean_pool=pool)
            check(converted.model.forward_features((pixels - MEAN) / STD, pool=pool), want)  # FMAE's clips
            check(as_given.forward_features(pixels, pool=pool), want)


def test_full_model_lightning_checkpoint(tmp_path):
    # Encoder, enc_dec_proj and a decoder with layer scale, as MARLIN's Lightning module saves them.
    img, patch, frames = 32, 16, 4
    encoder = _encoder("64w")
    torch.manual_seed(5)
    decoder = perturb(
        _marlin("decoder").MarlinDecoder(
            img_size=img,
            patch_size=patch,
            n_frames=frames,
            embed_dim=64,
            depth=2,
            num_heads=1,
            qkv_bias=True,
            init_values=1.0,
        ),
        seed=5,
    )
    proj = perturb(torch.nn.Linear(64, 64, bias=False), seed=6)
    disc = torch.nn.Sequential(torch.nn.Linear(1536, 8), torch.nn.LeakyReLU(), torch.nn.Linear(8, 1))
    state = {
        **{f"encoder.{k}": v for k, v in encoder.state_dict().items()},
        **{f"decoder.{k}": v for k, v in decoder.state_dict().items()},
        "enc_dec_proj.weight": proj.weight,
        **{f"discriminator.{k}": v for k, v in disc.state_dict().items()},
    }
    path = tmp_path / "last.ckpt"
    torch.save(
        {
            "state_dict": state,
            "epoch": 3,
            "global_step": 100,
            "pytorch-lightning_version": "1.7.7",
            "hyper_parameters": {"img_size": img, "adv_weight": 0.1},
        },
        path,
    )
    converted = read_source(path, overrides=Overrides(num_frames=frames))
    model = converted.model
    assert converted.has_decoder and converted.source["found_under"] == "state_dict"
    assert any("discriminator" in note for note in converted.source["notes"])
    assert model.config.decoder_init_values > 0 and not model.config.decoder_embed_bias
    g = torch.Generator().manual_seed(7)
    pixels = torch.rand(2, 3, frames, img, img, generator=g)
    mask = torch.rand(2, model.config.num_tokens, generator=g).argsort(1) < 4  # True = masked (FMAE, HF)
    visible = ~mask  # MARLIN's mask: True = visible
    with torch.no_grad():
        want = decoder(proj(encoder(pixels, visible)), visible)  # Marlin.forward: [B, M, (c, t, h, w)] in [0, 1]
        pred = model((pixels - MEAN) / STD, mask).pred  # [B, M, (t, h, w, c)], ImageNet-normalised
        pred = pred.unflatten(-1, (-1, 3)) * STD.view(3) + MEAN.view(3)
        check(pred.transpose(-1, -2).flatten(-2), want)


def test_written_weights_load_back(tmp_path):
    from fmae.interop import ConvertConfig, convert

    encoder = _encoder("64w")
    torch.save({f"encoder.{k}": v for k, v in encoder.state_dict().items()}, tmp_path / "m.pt")
    result = convert(ConvertConfig(src=str(tmp_path / "m.pt"), dst=str(tmp_path / "m.safetensors"), num_frames=4))
    assert result.written == "fmae-encoder"
    loaded = load_model(result.path)
    assert not loaded.has_decoder and loaded.model.config.pooling == "mean_norm"
    pixels = torch.rand(1, 3, 4, 32, 32)
    with torch.no_grad():
        check(loaded.model.forward_features((pixels - MEAN) / STD), encoder.extract_features(pixels, True))
