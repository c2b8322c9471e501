import json
import shutil

import pytest
import torch

from fmae.data import list_items, make_loader, region_map_path
from fmae.evaluate import main
from fmae.evaluation.baselines import BASELINES, baseline_predictions
from fmae.evaluation.error import REGIONS, evaluate_reconstruction, mean_cubes, target_cubes
from fmae.evaluation.evaluate import evaluation_items
from fmae.evaluation.report import flat_scalars
from fmae.masking import make_mask, mask_generator
from fmae.model import Reconstruction, create
from fmae.model.hint import nearest_visible_index
from fmae.ops import gather_tokens, visible_index
from fmae.pretraining.train import TrainConfig, pretrain
from fmae.weights import load_model, save_encoder

KEYS = ["all", *REGIONS]


def _train_config(small_set, out, **overrides):
    settings = dict(
        img_size=32,
        num_frames=4,
        batch_size=2,
        steps=1,
        warmup_steps=0,
        data_root=str(small_set),
        out_dir=str(out),
        num_workers=0,
        device="cpu",
        dtype="fp32",
    )
    return TrainConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def run_dir(small_set, tmp_path_factory):
    """A real one-step pre-training run of the tiny model on 32×32×4 clips."""
    out = tmp_path_factory.mktemp("pretrain")
    pretrain(_train_config(small_set, out), progress=False)
    return out


def _exact(model, offset=None):
    """``model.forward`` replaced by one that predicts the targets exactly, plus ``offset(masked_index)``."""

    def forward(clip, mask, num_masked=None):
        _, masked = visible_index(mask, num_masked)
        target = gather_tokens(target_cubes(clip, model), masked)
        pred = target if offset is None else target + offset(masked).unsqueeze(-1).float()
        return Reconstruction(pred, target, masked)

    return forward


# ------------------------------------------------------------------------ baselines by hand


def test_baselines_on_a_hand_computed_example():
    # Token grid T'=3, 2×3 spatial: token n = (t·2 + h)·3 + w; spatial position s = h·3 + w.
    grid, N = (3, 2, 3), 18
    v = torch.tensor([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0, 8.0, 9.0, 7.0, 9.0, 3.0, 2.0, 3.0])
    # s=0: hidden at t'=1 only (seen before and after); s=1: hidden at t'=0 and 1 (seen after only);
    # s=2: hidden at every t' (nothing at its position).
    hidden = [6, 1, 7, 2, 8, 14]
    mask = torch.zeros(2, N, dtype=torch.bool)
    mask[:, hidden] = True
    targets = torch.stack([v, 10 * v]).unsqueeze(-1).expand(2, N, 2).clone()  # [B=2, N, P=2]
    targets[:, :, 1] += 1
    preds = baseline_predictions(targets, mask, grid)
    assert list(preds) == list(BASELINES)
    assert all(p.shape == (2, N, 2) for p in preds.values())

    # The nearest visible token (squared distance 1 for all of these; lowest index among ties):
    # 6 (1,0,0): 0, 9, 12 → 0;  1 (0,0,1): 0, 4 → 0;  7 (1,0,1): 10, 13 → 10;
    # 2 (0,0,2): 5;  8 (1,0,2): 11;  14 (2,0,2): 13, 17 → 13.
    nearest = {6: 0, 1: 0, 7: 10, 2: 5, 8: 11, 14: 13}
    assert nearest_visible_index(mask, grid)[:, hidden].tolist() == [[nearest[n] for n in hidden]] * 2
    visible = [n for n in range(N) if n not in hidden]
    interp = {6: (v[0] + v[12]) / 2, 1: v[13], 7: v[13], 2: v[5], 8: v[11], 14: v[13]}
    for b, scale in enumerate((1, 10)):
        for n in hidden:
            want = {"visible_mean": v[visible].mean(), "nearest_visible": v[nearest[n]], "temporal_interp": interp[n]}
            for name, value in want.items():
                torch.testing.assert_close(
                    preds[name][b, n],
                    torch.stack([scale * value, scale * value + 1]),
                    msg=f"{name} of token {n} in clip {b}",
                )


def test_temporal_interpolation_weighs_by_distance_in_time():
    # One spatial position over 5 time slices: seen at t'=0 and t'=4.
    targets = torch.tensor([8.0, 0.0, 0.0, 0.0, 4.0]).view(1, 5, 1)
    mask = torch.tensor([[False, True, True, True, False]])
    interp = baseline_predictions(targets, mask, (5, 1, 1))["temporal_interp"][0, :, 0]
    assert interp[1:4].tolist() == [7.0, 6.0, 5.0]


def test_baselines_need_a_visible_token():
    with pytest.raises(ValueError, match="no visible token"):
        baseline_predictions(torch.zeros(1, 4, 3), torch.ones(1, 4, dtype=torch.bool), (1, 2, 2))


# ------------------------------------------------------------------------ regions and the result


def _region_batch():
    """One 4×32×32 clip whose 8 tokens (grid 2×2×2) lie in regions 0, 1, 2 (mostly skin, with
    a fifth of nose: token_labels gives nose), 4, 5, 6, 0, 1."""
    maps = torch.zeros(1, 4, 32, 32, dtype=torch.uint8)
    for n, region in enumerate([0, 1, 5, 4, 5, 6, 0, 1]):
        t, h, w = n // 4, (n // 2) % 2, n % 2
        maps[0, 2 * t : 2 * t + 2, 16 * h : 16 * h + 16, 16 * w : 16 * w + 16] = region
    maps[0, 0:2, 16:20, 0:16] = 2  # token 2 (t' 0, h 1, w 0): a quarter of its rows nose
    clip = torch.randn(1, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    return {"clip": clip, "region_map": maps}


def test_errors_are_split_by_the_region_that_labels_each_token(monkeypatch):
    model = create("fmae_vit_tiny", img_size=32, num_frames=4)
    # The prediction of masked token n is off by n everywhere: its error is n².
    monkeypatch.setattr(model, "forward", _exact(model, offset=lambda masked: masked))
    # Ratio 0.625 hides 5 of 8 tokens, regions in priority order: left eye (0, 6), right eye (1, 7), nose (2).
    result = evaluate_reconstruction(model, [_region_batch()], ratio=0.625, strategy="facial")
    assert result["clips"] == 1 and result["masked_cubes"] == 5 and result["strategy"] == "facial"
    assert result["model"] == {
        "all": (0 + 36 + 1 + 49 + 4) / 5,
        "left_eye": 18.0,
        "right_eye": 25.0,
        "nose": 4.0,
        "mouth": None,
        "hair": None,
        "skin": None,
        "background": None,
    }
    for name in BASELINES:
        row = result["baselines"][name]
        assert [k for k, value in row.items() if value is None] == ["mouth", "hair", "skin", "background"]
    assert model.training  # the mode it had


def test_result_shape_keys_and_json(monkeypatch):
    model = create("fmae_vit_tiny", img_size=32, num_frames=4)
    result = evaluate_reconstruction(model, [_region_batch(), _region_batch()], ratio=0.5, strategy="random", seed=3)
    assert list(result) == ["clips", "masked_cubes", "ratio", "strategy", "model", "model_spread", "baselines"]
    assert (result["clips"], result["masked_cubes"], result["ratio"], result["strategy"]) == (2, 8, 0.5, "random")
    assert list(result["model"]) == KEYS and list(result["baselines"]) == list(BASELINES)
    assert all(list(row) == KEYS for row in result["baselines"].values())
    assert json.loads(json.dumps(result)) == result
    flat = flat_scalars(result)
    assert {"heldout/all", "heldout/left_eye", "heldout/visible_mean/all", "heldout/temporal_interp/mouth"} <= set(flat)
    # The masks depend on the seed and the clip's position, not on the batch size.
    batch = _region_batch()
    two = {"clip": torch.cat([batch["clip"]] * 2), "region_map": torch.cat([batch["region_map"]] * 2)}
    batched = evaluate_reconstruction(model, [two], ratio=0.5, strategy="random", seed=3)
    assert batched["baselines"] == result["baselines"]
    for key, value in result["model"].items():  # a batch of 2 rounds otherwise
        assert batched["model"][key] == (None if value is None else pytest.approx(value, rel=1e-5))
    with pytest.raises(ValueError, match="hides every token"):
        evaluate_reconstruction(model, [batch], ratio=0.95, strategy="random")


def test_the_mean_face_is_the_mean_cube_at_each_position():
    model = create("fmae_vit_tiny", img_size=32, num_frames=4)
    a, b = _region_batch(), _region_batch()
    b["clip"] = torch.randn_like(b["clip"])
    both = {"clip": torch.cat([a["clip"], b["clip"]])}
    face = mean_cubes(model, [{"clip": a["clip"]}, {"clip": b["clip"]}])
    assert face.shape == (model.config.num_tokens, model.config.cube_dim)
    torch.testing.assert_close(face, target_cubes(both["clip"], model).mean(0))
    # Predicting a clip by its own cubes is exact: zero error; by the mean of two, the
    # squared distance to that mean at the masked positions.
    own = evaluate_reconstruction(
        model, [a], ratio=0.5, strategy="random", seed=3, mean_face=target_cubes(a["clip"], model)[0]
    )
    assert list(own) == [
        "clips",
        "masked_cubes",
        "ratio",
        "strategy",
        "model",
        "model_spread",
        "baselines",
        "mean_face",
    ]
    assert own["mean_face"]["all"] == 0.0 and own["baselines"]["visible_mean"]["all"] > 0.1
    mean = evaluate_reconstruction(model, [a], ratio=0.5, strategy="random", seed=3, mean_face=face)
    masked = (own["masked_cubes"], own["baselines"])  # the same masks with or without the mean face
    assert (mean["masked_cubes"], mean["baselines"]) == masked
    mask = make_mask(
        "random", 0.5, batch=1, grid=model.config.grid, generator=mask_generator(3, 0, torch.device("cpu"))
    )
    _, hidden = visible_index(mask, int(mask.sum()))
    expected = (gather_tokens(target_cubes(a["clip"], model), hidden) - face[hidden[0]]).square().mean()
    assert mean["mean_face"]["all"] == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ValueError, match="mean_face must be"):
        evaluate_reconstruction(model, [a], ratio=0.5, strategy="random", mean_face=face[:3])


def test_a_model_that_predicts_the_target_scores_zero_and_the_baselines_do_not(run_dir, small_set, monkeypatch):
    model = load_model(run_dir).model
    monkeypatch.setattr(model, "forward", _exact(model))
    loader = make_loader(
        small_set, "Test", batch_size=2, num_frames=4, random_start=False, shuffle=False, backend="torch"
    )
    result = evaluate_reconstruction(model, loader, ratio=0.75)
    assert result["clips"] == 2 and result["model"]["all"] == 0.0
    assert all(value in (0.0, None) for value in result["model"].values())
    assert all(row["all"] > 0.01 for row in result["baselines"].values())
    rng = torch.get_rng_state()
    evaluate_reconstruction(model, loader, ratio=0.75)
    assert torch.equal(rng, torch.get_rng_state())


# ------------------------------------------------------------------------ the command


def _args(checkpoint, small_set, out, *extra):
    return [
        str(checkpoint),
        "--data-root",
        str(small_set),
        "--out-dir",
        str(out),
        "--device",
        "cpu",
        "--dtype",
        "fp32",
        "--num-workers",
        "0",
        "--no-progress",
        *extra,
    ]


def test_command_writes_json_and_table(run_dir, small_set, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(_args(run_dir, small_set, out)) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "reconstruction.json").read_text())
    assert list(result) == ["clips", "masked_cubes", "ratio", "strategy", "model", "model_spread", "baselines"]
    # The Test split (2 clips), the checkpoint's ratio: 6 of the 8 tokens of a 4×32×32 clip hidden.
    assert (result["clips"], result["masked_cubes"], result["ratio"], result["strategy"]) == (2, 12, 0.75, "facial")
    assert all(result["model"]["all"] > 0 and row["all"] > 0 for row in result["baselines"].values())
    md = (out / "reconstruction.md").read_text()
    assert md in printed and f"wrote {out / 'reconstruction.json'}" in printed
    rows = [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ")]
    assert rows == ["predictor", "model", *BASELINES]
    assert "ckpt-00000001.safetensors" in md and "clips: 2, masked cubes: 12" in md and "strategy: facial" in md
    header = next(line for line in md.splitlines() if line.startswith("| predictor"))
    assert [c.strip() for c in header.split("|")[2:-1]] == [k.replace("_", " ") for k in KEYS]

    # A checkpoint file, another split, ratio, strategy and clip count.
    ckpt = run_dir / "checkpoints" / "ckpt-00000001.safetensors"
    assert (
        main(
            _args(ckpt, small_set, out, "--split", "Validation", "--ratio", "0.5", "--strategy", "tube", "--clips", "1")
        )
        == 0
    )
    result = json.loads((out / "reconstruction.json").read_text())
    assert (result["clips"], result["masked_cubes"], result["ratio"], result["strategy"]) == (1, 4, 0.5, "tube")


def test_command_measures_the_mean_face_on_request(run_dir, small_set, tmp_path):
    out = tmp_path / "eval"
    assert main(_args(run_dir, small_set, out, "--mean-face")) == 0
    result = json.loads((out / "reconstruction.json").read_text())
    assert list(result["mean_face"]) == KEYS and result["mean_face"]["all"] > 0
    md = (out / "reconstruction.md").read_text()
    assert [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ")][-1] == "mean_face"
    # The same number by hand: the Train split's centred clips, averaged.
    model = load_model(run_dir).model
    train = make_loader(
        small_set, "Train", batch_size=2, num_frames=4, random_start=False, shuffle=False, backend="torch"
    )
    test = make_loader(
        small_set, "Test", batch_size=2, num_frames=4, random_start=False, shuffle=False, backend="torch"
    )
    by_hand = evaluate_reconstruction(model, test, ratio=0.75, mean_face=mean_cubes(model, train))
    assert result["mean_face"]["all"] == pytest.approx(by_hand["mean_face"]["all"], rel=1e-5)


def test_command_cuts_a_plain_folder_into_windows(run_dir, small_set, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for item in list_items("daisee", small_set, "Train")[:3]:
        shutil.copy(item.path, folder / item.path.name)
        shutil.copy(region_map_path(item.path), region_map_path(folder / item.path.name))
    assert main(_args(run_dir, folder, tmp_path / "eval", "--ratio", "0.5")) == 0
    assert json.loads((tmp_path / "eval" / "reconstruction.json").read_text())["clips"] == 3  # 24 < 300 frames
    # 24-frame videos in 8-frame windows, as pre-training's --window cuts them: a centred clip of each.
    assert main(_args(run_dir, folder, tmp_path / "windows", "--ratio", "0.5", "--window", "8")) == 0
    assert json.loads((tmp_path / "windows" / "reconstruction.json").read_text())["clips"] == 9
    items, what = evaluation_items(folder, "folder", window=8)
    assert sorted((item.path.name, item.start, item.stop) for item in items) == sorted(
        (path.name, start, start + 8) for path in folder.glob("*.avi") for start in (0, 8, 16)
    )
    assert "8-frame windows" in what and len(evaluation_items(folder, "folder", clips=4, window=8)[0]) == 4
    assert main(_args(run_dir, folder, tmp_path / "capped", "--window", "8", "--clips", "4")) == 0
    assert json.loads((tmp_path / "capped" / "reconstruction.json").read_text())["clips"] == 4
    assert main(_args(run_dir, folder, tmp_path / "mean", "--mean-face")) == 2  # no Train split to average


def test_command_errors(run_dir, small_set, tmp_path, capsys):
    encoder = save_encoder(load_model(run_dir).model, tmp_path / "encoder.safetensors")
    assert main(_args(encoder, small_set, tmp_path / "a")) == 2
    assert "without the decoder" in capsys.readouterr().err
    assert not (tmp_path / "a" / "reconstruction.json").exists()
    assert main(["--data-root", str(small_set), "--no-progress"]) == 2
    assert "give the CHECKPOINT" in capsys.readouterr().err
    assert main(_args(run_dir, small_set, tmp_path / "b", "--ratio", "1.5")) == 2
    assert "ratio must be in (0, 1)" in capsys.readouterr().err
    assert main(_args(run_dir, small_set, tmp_path / "b", "--split", "Dev")) == 2
    assert "split must be one of" in capsys.readouterr().err


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "Examples:" in text and "CHECKPOINT" in text and "--clips" in text and "temporal_interp" in text


# ------------------------------------------------------------------------ during pre-training


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_pretraining_logs_the_held_out_error_without_changing_training(small_set, tmp_path):
    on, off = tmp_path / "on", tmp_path / "off"
    pretrain(_train_config(small_set, on, steps=4, ckpt_every=2, log_every=1), progress=False)
    pretrain(_train_config(small_set, off, steps=4, ckpt_every=2, log_every=1, eval_clips=0), progress=False)
    with_eval, without = _metrics(on), _metrics(off)
    assert [r["step"] for r in with_eval] == [r["step"] for r in without] == [1, 2, 3, 4]
    for a, b in zip(with_eval, without):
        for key in ("loss", "rec_loss", "adv_loss", "disc_loss", "grad_norm"):
            assert a[key] == b[key], (a["step"], key)  # bit for bit: same batches, masks and RNG
        assert not any(k.startswith("heldout/") for k in b)
        assert ("heldout/all" in a) == (a["step"] in (2, 4))
    last = with_eval[-1]
    assert {f"heldout/{k}" for k in KEYS} <= set(last)
    assert all(f"heldout/{name}/all" in last for name in BASELINES)
    assert last["heldout/all"] > 0 and last["heldout/visible_mean/all"] > 0

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(on / "tb"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "heldout/all" in tags and "heldout/nearest_visible/all" in tags and "pretrain/rec_loss" in tags
    assert [e.step for e in events.Scalars("heldout/all")] == [2, 4]


def test_a_plain_folder_has_no_held_out_set_unless_asked(small_set, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for item in list_items("daisee", small_set, "Train"):
        shutil.copy(item.path, folder / item.path.name)
        shutil.copy(region_map_path(item.path), region_map_path(folder / item.path.name))
    pretrain(_train_config(folder, tmp_path / "auto", steps=1), progress=False)
    assert not any(k.startswith("heldout/") for k in _metrics(tmp_path / "auto")[-1])
    pretrain(_train_config(folder, tmp_path / "asked", steps=1, eval_clips=2), progress=False)
    assert "heldout/all" in _metrics(tmp_path / "asked")[-1]
    with pytest.raises(ValueError, match="eval_clips"):
        TrainConfig(eval_clips=-2)
