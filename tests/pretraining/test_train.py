import dataclasses
import json
import shutil

import pytest
import torch
from train_helpers import train_args

from fmae.data import SyntheticConfig, VideoClipDataset, daisee_items, make_loader, prepared_root, region_map_path
from fmae.data.face_pass import PreprocessConfig
from fmae.data.loader import dali_available
from fmae.model import patchify
from fmae.pretraining import train as trainer
from fmae.pretraining.train import TrainConfig, _check_resume
from fmae.train import main
from fmae.weights import load_model
from fmae.weights.checkpoint import load_checkpoint

LOSS_KEYS = ("loss", "rec_loss", "adv_loss", "disc_loss", "lr")


def _args(root, out, steps, *extra):
    return train_args(root, out, steps, "--image-every", "3", *extra)


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_cli_writes_checkpoints_logs_and_images(small_set, tmp_path):
    out = tmp_path / "run"
    assert main(_args(small_set, out, 6)) == 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "ckpt-00000003.safetensors",
        "ckpt-00000006.safetensors",
    ]
    assert (out / "recon-00000006.png").is_file() and any((out / "tb").iterdir())
    rows = _metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(r["clips_per_s"] > 0 and set(LOSS_KEYS) <= set(r) for r in rows)
    assert TrainConfig(**__import__("yaml").safe_load((out / "config.yaml").read_text())).steps == 6


def test_compile_and_threads_settings_reach_the_run(small_set, tmp_path, monkeypatch):
    from fmae.model import FMAE

    compiled, threads = [], torch.get_num_threads()
    # Compiling for real takes minutes on a CPU: record the call, keep the model eager.
    monkeypatch.setattr(FMAE, "compile", lambda self, *a, **k: compiled.append(type(self).__name__))
    monkeypatch.setattr(torch, "set_num_threads", lambda n: compiled.append(f"threads={n}"))
    assert main(_args(small_set, tmp_path / "run", 2, "--compile", "--threads", "1")) == 0
    assert compiled == ["threads=1", "FMAE"] and torch.get_num_threads() == threads
    assert (tmp_path / "run" / "checkpoints" / "ckpt-00000002.safetensors").is_file()


@pytest.mark.parametrize(
    "loader",
    [
        "torch",
        pytest.param("dali", marks=pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI is not installed")),
    ],
)
def test_resume_continues_exactly_where_it_stopped(small_set, tmp_path, monkeypatch, loader):
    straight = tmp_path / "straight"
    # 6 clips, batches of 2 (3 an epoch), a checkpoint every 2 steps, a crash after step 5: the run
    # resumes from step 4, inside epoch 1, whose clips are other windows than epoch 0's.
    # Augmented: a resumed step mirrors, crops and colours its clips as the uninterrupted one did.
    args = ("--num-frames", "4", "--loader", loader, "--ckpt-every", "2", "--augment", "flip,crop,colour")
    assert main(_args(small_set, straight, 6, *args)) == 0

    broken = tmp_path / "broken"
    real_step = trainer.Pretrainer.step

    def crash_after_five(self, *args, **kwargs):
        if self.step_count == 5:
            raise KeyboardInterrupt("simulated crash")
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(trainer.Pretrainer, "step", crash_after_five)
    with pytest.raises(KeyboardInterrupt):
        main(_args(small_set, broken, 6, *args))
    monkeypatch.setattr(trainer.Pretrainer, "step", real_step)
    assert main(_args(small_set, broken, 6, *args, "--resume")) == 0

    # Steps 5 and 6 were redone from the step-4 checkpoint: same losses as the run that never stopped.
    want = {r["step"]: r for r in _metrics(straight)}
    got = {r["step"]: r for r in _metrics(broken)}
    assert sorted(want) == [1, 2, 3, 4, 5, 6]
    for step in (5, 6):
        for key in LOSS_KEYS:
            assert got[step][key] == want[step][key], (step, key)
    a = load_checkpoint(straight / "checkpoints" / "ckpt-00000006.safetensors")["trainer"]["model"]
    b = load_checkpoint(broken / "checkpoints" / "ckpt-00000006.safetensors")["trainer"]["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


BACKENDS = [
    "torch",
    pytest.param("dali", marks=pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI is not installed")),
]


def _keys(loader, epochs):
    """``(epoch, item index, first frame)`` of every clip of ``epochs`` epochs, batch by batch."""
    return [
        [(epoch, i, f[0]) for i, f in zip(b["index"].tolist(), b["frame_index"].tolist())]
        for epoch in range(epochs)
        for b in loader
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_epoch_draws_fresh_clip_windows_and_resumes_mid_epoch(small_set, backend):
    items = trainer.train_items(TrainConfig(data_root=str(small_set)), small_set)
    common = dict(
        items=items, batch_size=2, num_frames=4, stride=2, seed=0, drop_last=True, with_regions=False, backend=backend
    )
    batches = _keys(make_loader(**common), 2)
    per_epoch = len(items) // 2
    assert len(batches) == 2 * per_epoch
    # 24-frame clips, 8-frame spans: 17 possible windows per item, drawn anew each epoch.
    first = {(i, f) for b in batches[:per_epoch] for _, i, f in b}
    second = {(i, f) for b in batches[per_epoch:] for _, i, f in b}
    assert len(first - second) >= len(items) - 1
    # A loader made to resume at the last batch of epoch 0 gives what the uninterrupted one gave.
    resumed = make_loader(**common, epoch=0, start_batch=per_epoch - 1)
    assert _keys(resumed, 2) == batches[per_epoch - 1 :]


@pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI is not installed")
@pytest.mark.parametrize("world", [1, 2])
def test_both_loader_backends_give_the_same_clips_in_the_same_order(small_set, world):
    items = trainer.train_items(TrainConfig(data_root=str(small_set)), small_set)
    common = dict(items=items, batch_size=4 // world, num_frames=4, stride=2, seed=3, drop_last=True, num_shards=world)
    for rank in range(world):
        torch_keys = _keys(make_loader(**common, shard_id=rank, backend="torch"), 2)
        assert _keys(make_loader(**common, shard_id=rank, backend="dali"), 2) == torch_keys
    # The ranks' batches, one after another, are the single process's batches of the global size.
    single = _keys(make_loader(**{**common, "batch_size": 4, "num_shards": 1}, backend="torch"), 2)
    shards = [_keys(make_loader(**common, shard_id=rank, backend="torch"), 2) for rank in range(world)]
    assert [sum((s[k] for s in shards), []) for k in range(len(single))] == single


def test_one_short_recording_fills_a_batch(small_set, tmp_path):
    one = tmp_path / "one"
    video = sorted((small_set / "DataSet" / "Train").rglob("*.avi"))[0]
    one.mkdir()
    shutil.copy(video, one / "rec.avi")
    shutil.copy(region_map_path(video), region_map_path(one / "rec.avi"))
    out = tmp_path / "run"
    assert main(_args(one, out, 2, "--num-frames", "4", "--batch-size", "4")) == 0
    assert [r["step"] for r in _metrics(out)] == [1, 2]


def _plain_folder(small_set, tmp_path):
    """``small_set``'s Train videos (and region maps) in nested folders, without labels."""
    plain = tmp_path / "plain"
    for i, video in enumerate(sorted((small_set / "DataSet" / "Train").rglob("*.avi"))):
        target = plain / f"person{i % 2}" / f"rec{i}.avi"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(video, target)
        if i:  # the first has no region map: skipped, with a warning
            shutil.copy(region_map_path(video), region_map_path(target))
    return plain


def test_train_items_read_daisee_or_any_folder(small_set, tmp_path, caplog):
    daisee = trainer.train_items(TrainConfig(), small_set)
    assert daisee == daisee_items(small_set, "Train") and len(daisee) == 6
    plain = _plain_folder(small_set, tmp_path)
    with caplog.at_level("WARNING"):
        items = trainer.train_items(TrainConfig(window=0), plain)
    assert "1 videos have no region map" in caplog.text
    assert [it.path.relative_to(plain).as_posix() for it in items] == [
        f"person{i % 2}/rec{i}.avi" for i in (2, 4, 1, 3, 5)
    ]
    assert all(it.label is None and it.stop is None for it in items)
    windowed = trainer.train_items(TrainConfig(window=10), plain)  # 24 frames: windows at 0 and 10
    assert [(it.start, it.stop) for it in windowed[:2]] == [(0, 10), (10, 20)] and len(windowed) == 10
    with pytest.raises(FileNotFoundError, match="Labels"):
        trainer.train_items(TrainConfig(dataset="daisee"), plain)


def test_pretraining_on_a_folder_of_unlabelled_videos(small_set, tmp_path):
    out = tmp_path / "run"
    assert main(_args(_plain_folder(small_set, tmp_path), out, 3, "--num-frames", "4", "--window", "12")) == 0
    assert (out / "checkpoints" / "ckpt-00000003.safetensors").is_file()
    assert [r["step"] for r in _metrics(out)] == [1, 2, 3]


def test_raw_videos_get_told_to_preprocess_first(small_set, tmp_path, capsys):
    raw = _plain_folder(small_set, tmp_path)
    for sidecar in raw.rglob("*.regions.npz"):
        sidecar.unlink()
    assert main(_args(raw, tmp_path / "run", 2)) == 2
    assert "python -m fmae.preprocess" in capsys.readouterr().err


def test_cli_refuses_unsafe_restarts(small_set, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_args(small_set, out, 2, "--resume")) == 2
    assert "no usable checkpoint" in capsys.readouterr().err
    assert main(_args(small_set, out, 3)) == 0
    assert main(_args(small_set, out, 3)) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(_args(small_set, out, 6, "--resume", "--mask-strategy", "tube")) == 2
    assert "mask_strategy" in capsys.readouterr().err
    assert main(_args(small_set, out, 6, "--resume", "--position-embedding", "sincos")) == 2
    assert "position_embedding ('sincos_thw' vs 'sincos')" in capsys.readouterr().err
    assert main(_args(small_set, out, 6, "--resume", "--decoder-hint", "none")) == 2
    assert "decoder_hint ('temporal_interp' vs 'none')" in capsys.readouterr().err
    assert main(_args(small_set, out, 6, "--resume", "--augment", "blur")) == 2
    assert "unknown augmentation 'blur'" in capsys.readouterr().err
    # A run made at the paper's ratio (the default before 2026-12-06) never goes on at another one.
    paper = tmp_path / "paper"
    assert main(_args(small_set, paper, 3, "--mask-ratio", "0.9")) == 0
    assert main(_args(small_set, paper, 6, "--resume")) == 2
    assert "mask_ratio (0.9 vs 0.75)" in capsys.readouterr().err
    assert main(_args(small_set, paper, 6, "--resume", "--mask-ratio", "0.9")) == 0
    assert main(_args(tmp_path / "nowhere", tmp_path / "x", 2)) == 2


def test_help_lists_the_settings(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in (
        "--mask-strategy",
        "--mask-ratio",
        "--temporal-stride",
        "--adv-weight",
        "--model",
        "--resume",
        "--config",
    ):
        assert flag in text


def test_default_data_is_the_synthetic_set_through_the_face_pipeline(tmp_path, monkeypatch):
    monkeypatch.setenv("FMAE_DATA", str(tmp_path / "cache"))
    small = lambda size: SyntheticConfig(num_subjects=5, clips_per_subject=1, num_frames=8, size=size)  # noqa: E731
    root = prepared_root("", 96, workers=0, progress=False, synthetic=small(96))
    # Through the default face pass (on keyframes), in a cache named for it.
    assert root.name.endswith(f"-faces96-k{PreprocessConfig().keyframes}") and (root / "manifest.jsonl").is_file()
    records = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    assert len(records) == 5 and all(r["status"] == "ok" for r in records)
    assert {r["config"] for r in records} == {PreprocessConfig(size=96).digest()}
    item = VideoClipDataset(root, "Train", num_frames=4, stride=2)[0]
    assert item["clip"].shape == (3, 4, 96, 96) and item["region_map"].shape == (4, 96, 96)
    # The face pipeline found the face: eyes, nose and mouth are in the parsed maps.
    assert {0, 1, 2, 3} <= set(item["region_map"].unique().tolist())
    assert prepared_root("", 96, workers=0, progress=False, synthetic=small(96)) == root  # cached


def test_init_starts_from_given_weights_not_a_resume(small_set, tmp_path):
    first = tmp_path / "first"
    assert main(_args(small_set, first, 2, "--num-frames", "4")) == 0
    # A learning rate of ~0: the one step leaves the weights where --init put them.
    second = tmp_path / "second"
    assert (
        main(
            _args(
                small_set,
                second,
                1,
                "--num-frames",
                "4",
                "--init",
                str(first),
                "--base-lr",
                "1e-20",
                "--adv-weight",
                "0",
            )
        )
        == 0
    )
    a = load_checkpoint(first / "checkpoints" / "ckpt-00000002.safetensors")["trainer"]["model"]
    b = load_checkpoint(second / "checkpoints" / "ckpt-00000001.safetensors")["trainer"]
    assert b["step"] == 1  # steps start afresh
    for k in a:
        torch.testing.assert_close(b["model"][k], a[k], rtol=0, atol=1e-6)
    assert main(_args(small_set, tmp_path / "third", 1, "--num-frames", "8", "--init", str(first))) == 2


def test_a_checkpoint_older_than_a_setting_resumes_with_what_it_was_made_with():
    # Checkpoints from before --position-embedding used VideoMAE's 1-D table, today's default or not.
    saved = {k: v for k, v in dataclasses.asdict(TrainConfig()).items() if k != "position_embedding"}
    _check_resume(saved, TrainConfig(position_embedding="sincos"))
    with pytest.raises(ValueError, match=r"position_embedding \('sincos' vs 'sincos_thw'\)"):
        _check_resume(saved, TrainConfig())


def test_the_decoder_hint_is_on_by_default_and_off_with_the_paper(small_set, tmp_path):
    out = tmp_path / "hinted"
    assert main(_args(small_set, out, 3)) == 0
    loaded = load_model(out)
    assert loaded.model.config.decoder_hint == "temporal_interp" and "hint_token" in loaded.model.state_dict()
    assert main(_args(small_set, out, 4, "--resume")) == 0
    assert TrainConfig.PRESETS["paper"]["decoder_hint"] == "none"
    plain = tmp_path / "plain"
    assert main(_args(small_set, plain, 3, "--decoder-hint", "none")) == 0
    assert not any(k.startswith(("hint_", "nearest_")) for k in load_model(plain).model.state_dict())


def test_a_checkpoint_older_than_the_decoder_hint_resumes_without_it():
    saved = {k: v for k, v in dataclasses.asdict(TrainConfig()).items() if k != "decoder_hint"}
    _check_resume(saved, TrainConfig(decoder_hint="none"))
    with pytest.raises(ValueError, match=r"resume with --decoder-hint none$"):
        _check_resume(saved, TrainConfig())


def test_a_checkpoint_older_than_decoder_masking_resumes_as_keep_1_and_the_error_names_the_flags():
    saved = {k: v for k, v in dataclasses.asdict(TrainConfig(num_frames=16)).items() if k != "decoder_keep"}
    _check_resume(saved, TrainConfig(num_frames=16, decoder_keep=1.0))
    with pytest.raises(ValueError, match=r"resume with --num-frames 16 --decoder-keep 1\.0$"):
        _check_resume(saved, TrainConfig())


def test_the_decoder_mean_cube_starts_at_the_mean_training_cube(small_set, tmp_path):
    out = tmp_path / "mean-cube"
    # A learning rate of ~0: the one step leaves the mean cube where the run started it.
    flags = ("--num-frames", "4", "--base-lr", "1e-20", "--adv-weight", "0", "--decoder-mean-cube")
    assert main(_args(small_set, out, 1, *flags)) == 0
    loaded = load_model(out)
    assert loaded.model.config.decoder_mean_cube
    items = trainer.train_items(TrainConfig(data_root=str(small_set)), small_set)
    # The centred windows, decoded as the run decodes them (DALI's JPEG decoder differs a little).
    loader = make_loader(
        items=items, batch_size=4, num_frames=4, stride=2, random_start=False, shuffle=False, backend="torch"
    )
    cubes = torch.cat([patchify(batch["clip"], (2, 16, 16)) for batch in loader])
    assert len(cubes) == len(items) > 4  # unshuffled, the last batch is short: each clip once
    want = cubes.mean(0)
    torch.testing.assert_close(loaded.model.decoder_mean_cube, want, rtol=0, atol=1e-5)
    assert main(_args(small_set, out, 2, *flags, "--resume")) == 0
    assert main(_args(small_set, tmp_path / "other", 1, "--num-frames", "4")) == 0
    with pytest.raises(ValueError, match=r"resume with --decoder-mean-cube True$"):
        _check_resume(dataclasses.asdict(TrainConfig(decoder_mean_cube=True)), TrainConfig())
