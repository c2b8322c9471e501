"""Every defect that the fuzzer (``benchmarks/reliability/fuzz.py``) found, kept as the case that
failed before its fix, made small and explicit (no fuzzing here: each test builds its one bad input).

Videos: a header frame rate that the face-crop cache cannot hold (the AVI writer failed
mid-video), a video stream with no decoder (``AttributeError``), a decoder that gives no frame
(no bound), face crops with a damaged tail (``extract --cropped`` dropped every good frame).
Weights: exported weights and their JSON had no digest (a flipped bit or an edited value loaded
silently), a JSON without its config (``KeyError``), a Hugging Face ``config.json`` that is not
an object (``AttributeError``), a damaged pickle (``KeyError``, or torch's many-line message
advising ``weights_only=False``). Settings: YAML that does not parse, YAML values of the wrong
type (``TypeError`` from deep inside, or taken silently), a folder as the YAML file (exit
status 1), ``nan`` and ``inf`` flags (taken).
"""

from __future__ import annotations

import json
import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from fmae.data import face_pass
from fmae.data.clips import count_frames, read_frames
from fmae.data.face_pass import PreprocessConfig, process_video
from fmae.data.preprocess import preprocess, read_manifest
from fmae.data.video_writer import VideoWriter, write_video
from fmae.downstream.head import LinearProbe, load_probe, save_probe
from fmae.downstream.windows import find_faces, window_clips, window_starts
from fmae.extract import main as extract_main
from fmae.face import Detection, FaceBackend, FaceRegion, register_backend
from fmae.face import backend as backend_mod
from fmae.interop import ConvertConfig, convert
from fmae.interop.hf import write_hf
from fmae.interop.safe_load import load_pickle
from fmae.model import FMAE, get_config
from fmae.preprocess import main as preprocess_main
from fmae.pretraining.train import TrainConfig
from fmae.runtime.config import load_yaml
from fmae.weights import ENCODER_KIND, config_path, load_encoder, save_encoder

H, W = 48, 64


class SquareBackend(FaceBackend):
    """The "face" is the bright square the tests draw: its box, its corners as landmarks."""

    name = "square"

    def detect(self, frame):
        ys, xs = np.nonzero(frame[..., 0] > 150)
        if len(xs) == 0:
            return None
        box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
        return Detection(box, box.reshape(2, 2))

    def parse(self, crop, landmarks):
        return np.where(crop[..., 0] > 150, FaceRegion.SKIN, FaceRegion.BACKGROUND).astype(np.uint8)


@pytest.fixture(autouse=True)
def square_backend(monkeypatch):
    monkeypatch.setattr(backend_mod, "_REGISTRY", dict(backend_mod._REGISTRY))
    register_backend("square", SquareBackend)


CONFIG = PreprocessConfig(size=32, backend="square")


def square_frames(n: int = 6) -> np.ndarray:
    frames = np.full((n, H, W, 3), 30, np.uint8)
    for t in range(n):
        frames[t, 12:32, 10 + t : 30 + t] = (220, 40, 40)
    return frames


def write_mp4(path: Path, rate: int, frames: np.ndarray) -> Path:
    """An MPEG-4 Part 2 video in MP4 at ``rate`` frames per second (any rate: MP4's time scale is free)."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for t, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = t
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


# ------------------------------------------------------------------------ videos


def test_a_header_frame_rate_the_cache_cannot_hold_is_replaced_and_said(tmp_path):
    # A truncated Matroska file claimed 24000 fps; the AVI writer then failed on its 21st frame.
    video = write_mp4(tmp_path / "fast.mp4", 24000, square_frames())
    with av.open(str(video)) as container:
        assert container.streams.video[0].average_rate == 24000  # the header's claim
    with SquareBackend() as backend:
        record = process_video(video, tmp_path / "fast.avi", backend, CONFIG)
    assert record["status"] == "ok" and record["fps"] == 25.0
    assert "frame rate 24000 is outside" in record["message"] and not record["truncated"]
    assert count_frames(tmp_path / "fast.avi") == 6


def test_the_writer_refuses_rates_an_avi_cannot_hold(tmp_path):
    for fps in (1001, 24000, 0.0005):
        with pytest.raises(ValueError, match="an AVI holds"):
            VideoWriter(tmp_path / "v.avi", fps, (16, 16))
    write_video(tmp_path / "ok.avi", square_frames(3), 1000)  # the edges hold
    write_video(tmp_path / "slow.avi", square_frames(3), 0.001)
    with av.open(str(tmp_path / "slow.avi")) as container:
        assert container.streams.video[0].average_rate == Fraction(1, 1000)


def test_a_stream_without_a_decoder_is_unreadable_everywhere(tmp_path):
    # A damaged sample-description box ("stsd") leaves the stream without a codec.
    good = write_mp4(tmp_path / "good.mp4", 15, square_frames())
    broken = tmp_path / "nodecoder.mp4"
    broken.write_bytes(good.read_bytes().replace(b"stsd", b"zzzz"))
    with SquareBackend() as backend:
        record = process_video(broken, tmp_path / "out.avi", backend, CONFIG)
    assert record["status"] == "unreadable" and "no decoder" in record["message"]
    for read in (lambda: read_frames(broken, np.arange(2)), lambda: count_frames(broken)):
        with pytest.raises(ValueError, match="no decoder"):
            read()
    with pytest.raises(ValueError, match="unreadable"):
        find_faces(broken, tmp_path, 32, cropped=True)


def test_extract_cropped_keeps_the_good_frames_before_a_damaged_tail(tmp_path):
    # A crops video cut inside a JPEG was "unreadable" as a whole: every good frame lost.
    frames = np.random.default_rng(0).integers(0, 255, (24, H, W, 3), dtype=np.uint8)
    write_video(tmp_path / "crops.avi", frames, 15)
    data = (tmp_path / "crops.avi").read_bytes()
    chunks = [i for i in range(len(data)) if data[i : i + 4] == b"00dc"]
    (tmp_path / "cut.avi").write_bytes(data[: chunks[15] + 50])  # 50 bytes into a frame's JPEG
    faces = find_faces(tmp_path / "cut.avi", tmp_path, 32, cropped=True)
    assert 10 <= len(faces.has_face) < 24 and faces.has_face.all()
    starts = window_starts(len(faces.has_face), 8, 8)
    clips = list(window_clips(faces.crops, starts, 2 * np.arange(4)))  # never reads the damaged frame
    assert len(clips) == len(starts) > 0 and clips[0].shape == (4, H, W, 3)


def test_a_stalled_decoder_is_cut_off(tmp_path):
    video = write_mp4(tmp_path / "v.mp4", 15, square_frames())
    with face_pass._Video(video) as opened:
        opened._stall_s = 0.0  # any wait for a frame is now too long
        with pytest.raises(face_pass._Stalled, match="cut off"):
            next(iter(opened))


def test_a_timed_out_video_is_recorded_and_redone_by_the_next_run(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    write_video(src / "a.avi", square_frames(), 15)
    write_mp4(src / "b.mp4", 15, square_frames())
    monkeypatch.setattr(face_pass, "STALL_S", 0.0)  # opening takes longer than that
    counts = preprocess(src, tmp_path / "out", CONFIG, progress=False)
    assert counts["timeout"] == 2 and counts["error"] == 0
    records = read_manifest(tmp_path / "out")
    assert {r["status"] for r in records.values()} == {"timeout"} and "cut off" in records["a.avi"]["message"]
    monkeypatch.setattr(face_pass, "STALL_S", 60.0)
    assert preprocess(src, tmp_path / "out", CONFIG, progress=False)["ok"] == 2


# ------------------------------------------------------------------------ weights


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return FMAE(get_config("fmae_vit_tiny", img_size=32, num_frames=4, depth=1, decoder_depth=1)).eval()


def test_a_flipped_bit_in_exported_weights_is_refused(encoder, tmp_path):
    path = save_encoder(encoder, tmp_path / "enc.safetensors")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10  # inside the last tensor's bytes: a valid file, one weight changed
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256 differs"):
        load_encoder(path)


def test_an_edited_weights_json_is_refused(encoder, tmp_path):
    path = save_encoder(encoder, tmp_path / "enc.safetensors")
    meta = json.loads(config_path(path).read_text())
    meta["config"]["layer_norm_eps"] = 1e-3  # no shape changes: it loaded, as another model
    config_path(path).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="SHA-256 differs"):
        load_encoder(path)
    probe = save_probe(LinearProbe(8, 2), tmp_path / "probe.safetensors", {"class_names": ["low", "high"]})
    meta = json.loads(config_path(probe).read_text())
    meta["config"]["meta"]["class_names"] = ["high", "low"]  # every prediction named wrongly
    config_path(probe).write_text(json.dumps(meta, indent=1))
    with pytest.raises(ValueError, match="SHA-256 differs"):
        load_probe(probe)
    meta["config"]["meta"]["class_names"] = ["low", "high"]
    config_path(probe).write_text(json.dumps(meta))  # the same values, spaced otherwise: intact
    assert load_probe(probe)[1]["class_names"] == ["low", "high"]


def test_weights_that_lost_their_digest_are_refused(encoder, tmp_path):
    path = save_encoder(encoder, tmp_path / "enc.safetensors")
    save_file(load_file(str(path)), str(path))  # the same tensors, without the metadata
    with pytest.raises(ValueError, match="lacks the digest"):
        load_encoder(path)


def test_weights_written_before_the_digest_load_with_a_warning(encoder, tmp_path, caplog):
    path = tmp_path / "old.safetensors"
    state = {
        k: v.contiguous() for k, v in encoder.state_dict().items() if k.startswith(("patch_embed", "blocks", "norm"))
    }
    save_file(state, str(path))
    old = {"kind": ENCODER_KIND, "format_version": 1, "config": encoder.config.to_dict()}
    config_path(path).write_text(json.dumps(old))
    with caplog.at_level(logging.WARNING, logger="fmae.weights.format"):
        loaded = load_encoder(path)
    assert "cannot be checked" in caplog.text
    assert torch.equal(loaded.state_dict()["norm.weight"], encoder.state_dict()["norm.weight"])
    del old["config"]  # a JSON without its config: a KeyError before
    config_path(path).write_text(json.dumps(old))
    with pytest.raises(ValueError, match="no config"):
        load_encoder(path)


def test_a_hugging_face_config_that_is_not_an_object_is_refused(encoder, tmp_path):
    write_hf(encoder, tmp_path / "hf", with_decoder=False)
    (tmp_path / "hf" / "config.json").write_text("0\n")
    with pytest.raises(ValueError, match="not a JSON object"):
        convert(ConvertConfig(src=str(tmp_path / "hf"), dst=str(tmp_path / "out.safetensors")))


def test_a_damaged_pickle_is_one_line_without_unsafe_advice(tmp_path):
    path = tmp_path / "weights.pt"
    path.write_bytes(b"\x80\x02\xff")  # a pickle whose first opcode does not exist
    with pytest.raises(ValueError) as refused:
        load_pickle(path)
    message = str(refused.value)
    assert "\n" not in message and "weights_only" not in message and "Unsupported operand 255" in message


# ------------------------------------------------------------------------ settings


def run_preprocess(tmp_path: Path, *flags: str) -> int:
    return preprocess_main([str(tmp_path / "src"), str(tmp_path / "out"), *flags])


@pytest.mark.parametrize(
    "text, says",
    [
        ("size: [\n", "not valid YAML"),
        ("size:\n\t- 1\n", "not valid YAML"),
        ("? [a, b]\n: 1\n", "not valid YAML"),
        ("1: 2\n", "unknown settings ['1']"),
        ("size: [64]\n", "size must be a whole number, got [64]"),
        ("size: 64.5\n", "size must be a whole number"),
        ("size: null\n", "size must be a whole number, got None"),
        ("margin: .nan\n", "margin must be a finite number"),
        ("margin: abc\n", "margin must be a finite number, got 'abc'"),
        ("regions: 2\n", "regions must be true or false"),
        ("backend: [mediapipe]\n", "backend must be text"),
    ],
)
def test_bad_yaml_is_one_error_line(tmp_path, capsys, text, says):
    (tmp_path / "bad.yaml").write_text(text)
    assert run_preprocess(tmp_path, "--config", str(tmp_path / "bad.yaml")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and says in err


def test_a_folder_or_bytes_as_the_yaml_file_are_refused(tmp_path, capsys):
    (tmp_path / "dir.yaml").mkdir()
    (tmp_path / "bytes.yaml").write_bytes(bytes(range(256)))
    for path, says in ((tmp_path / "dir.yaml", "is a folder"), (tmp_path / "bytes.yaml", "not a text file")):
        assert run_preprocess(tmp_path, "--config", str(path)) == 2
        assert says in capsys.readouterr().err


def test_yaml_numbers_without_a_dot_are_numbers(tmp_path):
    # YAML 1.1 reads 1e-4 as text; a number field takes it as the number it is.
    (tmp_path / "lr.yaml").write_text("base_lr: 1e-4\n")
    assert load_yaml(TrainConfig, tmp_path / "lr.yaml") == {"base_lr": 1e-4}


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
def test_non_finite_flags_are_refused(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as refused:  # argparse's refusal: usage, then one error line
        extract_main(["video.mp4", f"--hop={value}"])
    assert refused.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"--hop: expected a finite number, got {value!r}")
