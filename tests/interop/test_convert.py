"""``python -m fmae.convert`` and ``fmae.load_encoder``: the command, detection, and its errors."""

import json
import subprocess
import sys

import pytest
import torch
from hf_sizes import TINY_VIDEOMAE
from safetensors.torch import save_file

import fmae
from fmae.convert import main
from fmae.model import create
from fmae.weights import MODEL_KIND, config_path, fingerprint, load_model, save_encoder
from fmae.weights.checkpoint import save_checkpoint

transformers = pytest.importorskip("transformers")

SIZE = TINY_VIDEOMAE


def _hf_folder(tmp_path, cls=None):
    torch.manual_seed(0)
    model = (cls or transformers.VideoMAEForPreTraining)(transformers.VideoMAEConfig(**SIZE)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(tmp_path / "hf")
    return model, tmp_path / "hf"


def test_help_explains_the_command():
    out = subprocess.run([sys.executable, "-m", "fmae.convert", "--help"], capture_output=True, text=True, check=True)
    for words in ("SRC", "DST", "--from", "--to {fmae,hf}", "--num-heads", "weights_only", "MARLIN", "VideoMAE V2"):
        assert words in out.stdout


def test_hf_folder_to_fmae_weights_and_back(tmp_path, capsys):
    hf, folder = _hf_folder(tmp_path)
    dst = tmp_path / "videomae.safetensors"
    assert main([str(folder), str(dst)]) == 0
    assert f"wrote {dst} ({MODEL_KIND})" in capsys.readouterr().out
    meta = json.loads(config_path(dst).read_text())
    assert meta["kind"] == MODEL_KIND and meta["source"]["format"] == "hf"
    assert meta["source"]["layout"] == "VideoMAEForPreTraining"
    encoder = fmae.load_encoder(dst)  # the package's front door
    assert not encoder.training and load_model(dst).has_decoder
    clip = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        want = hf.videomae(clip.transpose(1, 2)).last_hidden_state
        assert float((encoder.forward_features(clip, pool=False) - want).abs().max()) <= 1e-4 * float(want.abs().mean())
        assert encoder.forward_features(clip).shape == (2, 64)
    # ... and out again as a Hugging Face folder, the same weights bit for bit.
    assert main([str(dst), str(tmp_path / "out"), "--to", "hf"]) == 0
    again = transformers.VideoMAEForPreTraining.from_pretrained(tmp_path / "out")
    theirs, mine = hf.state_dict(), again.state_dict()
    assert set(theirs) == set(mine) and all(torch.equal(theirs[k], mine[k]) for k in theirs)
    # --encoder-only; --from forces the format.
    assert main([str(folder), str(tmp_path / "enc.safetensors"), "--encoder-only", "--from", "hf"]) == 0
    assert not load_model(tmp_path / "enc.safetensors").has_decoder
    assert fingerprint(fmae.load_encoder(tmp_path / "enc.safetensors")) == fingerprint(encoder)


def test_fmae_run_to_hf(tmp_path, capsys):
    torch.manual_seed(0)
    model = create("fmae_vit_tiny", img_size=32, num_frames=4).eval()
    with torch.no_grad():  # trained-looking: no bias left at zero
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    save_checkpoint(
        tmp_path / "run" / "checkpoints" / "ckpt-00000005.safetensors",
        {"trainer": {"model": model.state_dict(), "step": 5}, "model_config": model.config.to_dict()},
    )
    assert main([str(tmp_path / "run"), str(tmp_path / "hf"), "--to", "hf"]) == 0
    out = capsys.readouterr().out
    assert "(VideoMAEModel)" in out and "decoder left out" in out  # FMAE's decoder_embed has a bias HF lacks
    hf = transformers.VideoMAEModel.from_pretrained(tmp_path / "hf").eval()
    clip = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        want = hf(clip.transpose(1, 2)).last_hidden_state
        got = model.forward_features(clip, pool=False)
    assert float((got - want).abs().max()) <= 1e-4 * float(want.abs().mean())
    # FMAE to FMAE: a checkpoint becomes exported weights with its decoder.
    assert main([str(tmp_path / "run"), str(tmp_path / "model.safetensors")]) == 0
    assert load_model(tmp_path / "model.safetensors").has_decoder


def test_unknown_layouts_and_bad_paths_are_clear_errors(tmp_path, capsys):
    torch.save(
        {"backbone.conv1.weight": torch.zeros(4, 3, 3, 3), "fc.weight": torch.zeros(2, 4)}, tmp_path / "resnet.pth"
    )
    assert main([str(tmp_path / "resnet.pth"), str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "unknown checkpoint layout" in err
    for expected in (
        "encoder.patch_embed.proj.weight",
        "encoder.patch_embedding.projection.weight",
        "config.json",
        "backbone.conv1.weight",
        "fc.weight",
    ):
        assert expected in err
    # A forced format names the key it looked for.
    assert main([str(tmp_path / "resnet.pth"), str(tmp_path / "x.safetensors"), "--from", "marlin"]) == 2
    assert "not a MARLIN checkpoint: it lacks 'encoder.patch_embedding.projection.weight'" in capsys.readouterr().err
    # Nothing but bookkeeping in the file.
    torch.save({"epoch": 3, "args": {"lr": 0.1}}, tmp_path / "empty.pth")
    assert main([str(tmp_path / "empty.pth"), str(tmp_path / "x.safetensors")]) == 2
    assert "holds no weights" in capsys.readouterr().err
    # Hugging Face weights without their folder's config.
    _, folder = _hf_folder(tmp_path)
    assert main([str(folder / "model.safetensors"), str(tmp_path / "x.safetensors")]) == 2
    assert "give the folder with its config.json" in capsys.readouterr().err
    # A known layout with keys the converter does not understand is refused, not half-converted.
    from safetensors.torch import load_file

    state = load_file(folder / "model.safetensors")
    state["videomae.encoder.layer.0.attention.attention.scale"] = torch.ones(1)
    save_file(state, folder / "model.safetensors")
    assert main([str(folder), str(tmp_path / "x.safetensors")]) == 2
    assert "does not understand" in capsys.readouterr().err
    for argv, words in (
        ([str(tmp_path / "nowhere.pt"), str(tmp_path / "x.safetensors")], "no such file"),
        ([str(tmp_path / "resnet.pth"), str(tmp_path / "x.pt")], "NAME.safetensors"),
        ([str(tmp_path / "resnet.pth")], "give the source and the destination"),
        ([str(tmp_path / "garbage.pt"), str(tmp_path / "x.safetensors")], "not a readable"),
    ):
        (tmp_path / "garbage.pt").write_bytes(b"not a pickle at all" * 4)
        assert main(argv) == 2
        assert words in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists() and not (tmp_path / "x.json").exists()


def test_existing_destination_needs_overwrite(tmp_path, capsys):
    _, folder = _hf_folder(tmp_path, transformers.VideoMAEModel)
    dst = tmp_path / "w.safetensors"
    assert main([str(folder), str(dst)]) == 0
    assert main([str(folder), str(dst)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([str(folder), str(dst), "--overwrite"]) == 0


def test_load_encoder_points_foreign_files_to_the_converter(tmp_path):
    torch.save({"w": torch.zeros(1)}, tmp_path / "model.pt")
    with pytest.raises(ValueError, match="python -m fmae.convert"):
        fmae.load_encoder(tmp_path / "model.pt")
    _, folder = _hf_folder(tmp_path, transformers.VideoMAEModel)
    with pytest.raises(ValueError, match="Hugging Face model folder.*python -m fmae.convert"):
        fmae.load_encoder(folder)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(3)}, str(foreign))
    with pytest.raises(ValueError, match="python -m fmae.convert"):
        fmae.load_encoder(foreign)
    encoder = save_encoder(create("fmae_vit_tiny", img_size=32, num_frames=4), tmp_path / "enc.safetensors")
    assert fmae.load_encoder(encoder, device="cpu").config.img_size == 32


def test_package_top_is_light():
    code = "import fmae, sys; assert 'torch' not in sys.modules; assert 'load_encoder' in dir(fmae); fmae.load_encoder"
    subprocess.run([sys.executable, "-c", code], check=True)
