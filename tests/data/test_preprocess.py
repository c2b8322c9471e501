"""``python -m fmae.preprocess`` end to end with MediaPipe, on short videos made from a real
face photo (matplotlib's ``grace_hopper.jpg``) moved by known shifts, and on bad input."""

import dataclasses
import os
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from fmae.data import VideoClipDataset, load_region_maps, region_map_path
from fmae.data.face_pass import PreprocessConfig, process_video
from fmae.data.preprocess import read_manifest
from fmae.data.video_writer import write_video
from fmae.face import FaceRegion
from fmae.preprocess import main

pytest.importorskip("mediapipe")

H, W = 240, 320
SHIFT = (3.0, 1.5)  # pixels per frame, x and y
CONFIG = PreprocessConfig(size=96, max_gap=2)  # small crops keep the tests fast


def face_photo() -> np.ndarray:
    """Grace Hopper, 200 px wide, ``uint8 [234, 200, 3]``."""
    from matplotlib import cbook

    photo = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    return np.asarray(photo.resize((200, 234), Image.BILINEAR))


def moving_face(n: int = 12, shift=SHIFT, hw=(H, W)) -> np.ndarray:
    """``uint8 [n, H, W, 3]``: the photo on a grey-blue wall, moved by ``shift`` per frame."""
    photo = face_photo()
    frames = []
    for t in range(n):
        m = np.float32([[1, 0, 30 + shift[0] * t], [0, 1, 0 + shift[1] * t]])
        frames.append(cv2.warpAffine(photo, m, (hw[1], hw[0]), flags=cv2.INTER_LINEAR, borderValue=(110, 120, 135)))
    return np.stack(frames)


def no_face(n: int = 8) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.repeat(cv2.GaussianBlur(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), (0, 0), 8)[None], n, 0)


def write_h264(path: Path, frames: np.ndarray, fps: int = 15) -> None:
    # faststart puts the index first, so a cut file still decodes up to the cut.
    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode(None))


def write_gray(path: Path, frames: np.ndarray, fps: int = 15) -> None:
    with av.open(str(path), "w", format="matroska") as c:
        s = c.add_stream("ffv1", rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "gray"
        for f in frames:
            gray = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
            c.mux(s.encode(av.VideoFrame.from_ndarray(gray, format="gray")))
        c.mux(s.encode(None))


def write_no_frames(path: Path) -> None:
    with av.open(str(path), "w", format="avi") as c:
        s = c.add_stream("mjpeg", rate=15)
        s.width, s.height, s.pix_fmt = 64, 64, "yuvj420p"
        c.start_encoding()


def cut(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


LABELS = "ClipID,Boredom,Engagement,Confusion,Frustration \n1000001.avi,0,3,0,0\n1000002.avi,1,2,0,0\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One DAiSEE-layout source with two good clips, a folder of bad files, and one CLI run."""
    src = tmp_path_factory.mktemp("src")
    out = src.parent / (src.name + "-out")
    clip = lambda c: src / "DataSet" / "Train" / "100000" / c  # noqa: E731
    for c in ("1000001", "1000002"):
        clip(c).mkdir(parents=True)
    frames = moving_face()
    write_video(clip("1000001") / "1000001.avi", frames, 15)
    write_h264(clip("1000002") / "1000002.mp4", moving_face(shift=(-2.0, 0.5)))
    (src / "Labels").mkdir()
    (src / "Labels" / "TrainLabels.csv").write_text(LABELS)

    bad = src / "bad"
    bad.mkdir()
    (bad / "random.mp4").write_bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (bad / "zero_bytes.avi").write_bytes(b"")
    write_no_frames(bad / "no_frames.avi")
    write_video(bad / "no_face.avi", no_face(), 15)
    write_video(
        bad / "tiny.avi", np.stack([cv2.resize(f, (16, 12), interpolation=cv2.INTER_AREA) for f in frames[:6]]), 15
    )
    write_gray(bad / "gray.mkv", frames[:6])
    # Face in frames 0-5 only; then a wall without a face.
    write_video(bad / "face_then_none.avi", np.concatenate([frames[:6], no_face(6)]), 15)
    write_h264(bad / "cut.mp4", moving_face(24))
    cut(bad / "cut.mp4", 0.8)  # the first (key) frame is most of the file: keep it whole
    write_video(bad / "cut_mjpeg.avi", frames, 15)
    cut(bad / "cut_mjpeg.avi", 0.6)

    argv = [str(src), str(out), "--size", str(CONFIG.size), "--max-gap", str(CONFIG.max_gap), "--no-progress"]
    assert main(argv) == 0
    return src, out, argv


def _npz(out: Path, rel: str) -> dict:
    with np.load(region_map_path(out / rel)) as z:
        return {**z, "regions": load_region_maps(out / rel)}


def test_statuses_of_every_input(run):
    _, out, _ = run
    status = {k: (r["status"], r["message"]) for k, r in read_manifest(out).items()}
    assert status["DataSet/Train/100000/1000001/1000001.avi"][0] == "ok"
    assert status["DataSet/Train/100000/1000002/1000002.mp4"][0] == "ok"
    assert status["bad/random.mp4"][0] == "unreadable" and "cannot open" in status["bad/random.mp4"][1]
    assert status["bad/zero_bytes.avi"][0] == "unreadable"
    assert status["bad/no_frames.avi"] == ("empty", "the video has no frames")
    assert status["bad/no_face.avi"] == ("no_face", "no frame has a face")
    assert status["bad/tiny.avi"][0] == "no_face"
    assert status["bad/gray.mkv"][0] == "ok"
    assert status["bad/face_then_none.avi"][0] == "ok"
    assert status["bad/cut.mp4"][0] == "ok" and status["bad/cut.mp4"][1].startswith("truncated: decoding stopped")
    assert status["bad/cut_mjpeg.avi"][0] == "ok" and status["bad/cut_mjpeg.avi"][1].startswith(
        "truncated: the header says 12 frames"
    )
    for name in ("random", "zero_bytes", "no_frames", "no_face", "tiny"):
        assert not any((out / "bad").glob(f"{name}.*")), f"nothing is cached for {name}"
    assert not list(out.rglob(".*.tmp")), "no temporary file is left behind"


def test_crop_follows_the_moving_face(run):
    _, out, _ = run
    for rel, shift in (
        ("DataSet/Train/100000/1000001/1000001.avi", SHIFT),
        ("DataSet/Train/100000/1000002/1000002.avi", (-2.0, 0.5)),
    ):
        z = _npz(out, rel)
        assert z["has_face"].all()
        boxes = z["boxes"]
        centre = 0.5 * (boxes[:, :2] + boxes[:, 2:])
        expected = centre[0] + np.arange(len(boxes))[:, None] * np.array(shift)
        # Whole-pixel windows and landmark jitter: within two pixels of the known path.
        np.testing.assert_allclose(centre, expected, atol=2.0)
        sides = boxes[:, 2] - boxes[:, 0]
        assert sides.max() - sides.min() <= 4 and 100 < sides.mean() < 200


def test_cache_is_a_daisee_folder_that_the_dataset_reads(run):
    src, out, _ = run
    assert (out / "Labels" / "TrainLabels.csv").read_text() == LABELS
    ds = VideoClipDataset(out, "Train", num_frames=4, stride=2, random_start=False)
    assert len(ds) == 2
    for i in range(2):
        item = ds[i]
        assert item["clip"].shape == (3, 4, CONFIG.size, CONFIG.size)
        assert item["region_map"].shape == (4, CONFIG.size, CONFIG.size)
        present = set(np.unique(item["region_map"].numpy()).tolist())
        assert {
            FaceRegion.LEFT_EYE,
            FaceRegion.RIGHT_EYE,
            FaceRegion.NOSE,
            FaceRegion.MOUTH,
            FaceRegion.SKIN,
        } <= present
    z = _npz(out, "DataSet/Train/100000/1000001/1000001.avi")
    assert z["regions"].shape == (12, CONFIG.size, CONFIG.size) and z["regions"].dtype == np.uint8
    assert z["boxes"].shape == (12, 4) and z["boxes"].dtype == np.float32 and z["has_face"].dtype == bool
    rec = read_manifest(out)["DataSet/Train/100000/1000001/1000001.avi"]
    assert (rec["frames"], rec["fps"], rec["width"], rec["height"], rec["frames_without_face"]) == (12, 15.0, W, H, 0)
    assert rec["video"] == "DataSet/Train/100000/1000001/1000001.avi" and rec["regions"].endswith(".regions.npz")


@pytest.mark.parametrize("backend", ["torch", "dali"])
def test_cache_feeds_the_clip_loader(run, backend):
    from fmae.data.loader import dali_available, make_loader

    if backend == "dali" and not dali_available():
        pytest.skip("nvidia-dali is not installed")
    _, out, _ = run
    loader = make_loader(
        out, "Train", batch_size=2, num_frames=4, stride=2, shuffle=False, random_start=False, backend=backend
    )
    batch = next(iter(loader))
    assert batch["clip"].shape == (2, 3, 4, CONFIG.size, CONFIG.size)
    assert batch["region_map"].shape == (2, 4, CONFIG.size, CONFIG.size)
    for b, i in enumerate(batch["index"].tolist()):
        np.testing.assert_array_equal(
            batch["region_map"][b].numpy(), load_region_maps(loader.items[i][0], batch["frame_index"][b].numpy())
        )


def test_face_in_some_frames_follows_the_gap_rule(run):
    _, out, _ = run
    rec = read_manifest(out)["bad/face_then_none.avi"]
    assert rec["missing_face_ranges"] == [[6, 12]] and rec["frames_without_face"] == 6
    z = _npz(out, "bad/face_then_none.avi")
    assert z["has_face"].tolist() == [True] * 6 + [False] * 6
    # The last good box is held (then smoothed, so the held run settles within half a window).
    boxes = z["boxes"]
    np.testing.assert_array_equal(boxes[6 + CONFIG.smooth // 2 :], boxes[[-1] * (6 - CONFIG.smooth // 2)])
    np.testing.assert_allclose(boxes[6:], boxes[[5] * 6], atol=2)
    eyes = [(r == FaceRegion.LEFT_EYE).any() for r in z["regions"]]
    # Frames 6 and 7 are within max_gap=2 of frame 5 and borrow its landmarks; later ones are background.
    assert eyes == [True] * 8 + [False] * 4
    assert (z["regions"][8:] == FaceRegion.BACKGROUND).all()
    assert rec["unparsed_frames"] == 4


def test_crops_alone_skip_the_parse_not_the_face_record(run, tmp_path):
    src, out, _ = run
    crops = tmp_path / "crops.avi"
    config = dataclasses.replace(CONFIG, regions=False)
    # As before the field (and the keyframes field: keyframes=1 is the pass those caches were made with).
    assert config.digest() != CONFIG.digest() and PreprocessConfig(keyframes=1).digest() == "69c6442135a8"
    with config.create_backend() as backend:
        rec = process_video(src / "bad" / "face_then_none.avi", crops, backend, config)
    assert rec["status"] == "ok" and rec["missing_face_ranges"] == [[6, 12]] and rec["frames"] == 12
    assert not region_map_path(crops).exists() and not list(tmp_path.glob(".*"))  # no map, no temporary left
    assert crops.read_bytes() == (out / "bad" / "face_then_none.avi").read_bytes()  # the full pipeline's crops


def test_cli_crops_only_cache_is_skipped_on_rerun_and_redone_with_regions(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    write_video(src / "a.avi", moving_face(), 15)
    argv = [str(src), str(out), "--size", str(CONFIG.size), "--no-progress"]
    assert main([*argv, "--no-regions"]) == 0
    rec = read_manifest(out)["a.avi"]
    assert rec["status"] == "ok" and rec["regions"] is None and (out / "a.avi").is_file()
    assert not region_map_path(out / "a.avi").exists()
    capsys.readouterr()
    assert main([*argv, "--no-regions"]) == 0 and capsys.readouterr().out.strip() == "done: 1 skipped"
    assert main(argv) == 0 and capsys.readouterr().out.strip() == "done: 1 ok"  # other config: parsed now
    assert load_region_maps(out / "a.avi").shape[0] == read_manifest(out)["a.avi"]["frames"]


def test_grayscale_and_truncated_videos_are_cached(run):
    _, out, _ = run
    with av.open(str(out / "bad" / "gray.avi")) as c:
        frame = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert frame.shape == (CONFIG.size, CONFIG.size, 3)
    manifest = read_manifest(out)
    cut_mp4 = manifest["bad/cut.mp4"]
    assert cut_mp4["truncated"] and 0 < cut_mp4["frames"] < 24
    assert _npz(out, "bad/cut.mp4")["regions"].shape[0] == cut_mp4["frames"]
    assert manifest["bad/cut_mjpeg.avi"]["frames"] < 12


def test_rerun_skips_finished_videos(run, capsys):
    _, out, argv = run
    lines = (out / "manifest.jsonl").read_text().count("\n")
    mtime = os.stat(out / "bad" / "gray.avi").st_mtime_ns
    capsys.readouterr()
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == "done: 11 skipped"
    assert (out / "manifest.jsonl").read_text().count("\n") == lines
    assert os.stat(out / "bad" / "gray.avi").st_mtime_ns == mtime


def test_cli_errors(tmp_path, capsys):
    assert main([str(tmp_path / "missing"), str(tmp_path / "out"), "--no-progress"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main([str(tmp_path), str(tmp_path / "out"), "--size", "15"]) == 2
    assert "size must be even" in capsys.readouterr().err
    assert main([str(tmp_path), str(tmp_path / "out"), "--weights", str(tmp_path)]) == 2
    assert "ships its models" in capsys.readouterr().err
