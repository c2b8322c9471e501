"""``python -m fmae.predict --live SOURCE``: a file read at its own rate gives the offline rows, a slow
scorer makes frames drop (counted) while the latency stays bounded, every person gets rows with
``--faces all``, and sources that cannot be opened are one clear error."""

import csv
import functools
import http.server
import json
import math
import signal
import subprocess
import sys
import threading
import time

import av
import numpy as np
import pytest
from gallery_videos import two_faces
from predict_helpers import CLASSES, random_probe

from fmae.data.synthetic import render_segments
from fmae.data.video_writer import write_video
from fmae.downstream.live import LiveCropper, MjpegRoundTrip, first_window, run_live
from fmae.downstream.predict import PredictConfig, run_predict, timeline_columns
from fmae.face.tracking import crop_windows, hold_gaps, jumps, smooth
from fmae.predict import main

pytest.importorskip("mediapipe")

CPU = ["--device", "cpu", "--dtype", "fp32", "--no-progress", "--threads", "1"]
SPAN_S = 8 / 15  # random_probe's window: 4 frames 2 apart = 8 frames, at the clip's 15 fps


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    """A random-init tiny encoder (32², 4 frames, stride 2) and a random 4-class probe on it."""
    return random_probe(tmp_path_factory.mktemp("predictor"), CLASSES)


@pytest.fixture(scope="module")
def talk(tmp_path_factory):
    """Subject 9 acting levels 3, 0, 3 for 0.8 s each: 36 frames at 15 fps, 64² (eight windows)."""
    truth = render_segments([3, 0, 3], 0.8, size=64, seed=9)
    path = tmp_path_factory.mktemp("talk") / "talk.avi"
    write_video(path, truth.rendered.frames, truth.fps)
    return path


def _config(probe, out, **kw) -> PredictConfig:
    return PredictConfig(probe=probe, device="cpu", dtype="fp32", out_dir=str(out), **kw)


def _rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_file_read_at_its_rate_gives_the_offline_rows(probe, talk, tmp_path):
    run_predict(talk, _config(probe, tmp_path / "offline"), progress=False)
    lines: list[str] = []
    started = time.monotonic()
    # Frames may wait as long as they need: nothing is dropped, whatever the machine's load.
    summary = run_live(str(talk), _config(probe, tmp_path / "live"), emit=lines.append, max_age=math.inf)
    assert time.monotonic() - started >= 35 / 15  # paced: the 36th frame comes 35/15 s after the first
    assert summary["frames_read"] == 36 and summary["frames_dropped"] == 0 and summary["windows_skipped"] == 0
    offline, live = _rows(tmp_path / "offline" / "timeline.csv"), _rows(tmp_path / "live" / "timeline.csv")
    assert list(live[0]) == timeline_columns("classification", CLASSES)
    assert len(live) == len(offline) == summary["windows"] == 8
    for a, b in zip(offline, live):
        assert [a[k] for k in ("start_s", "end_s", "face_fraction", "level")] == [
            b[k] for k in ("start_s", "end_s", "face_fraction", "level")
        ]
        for k in ["confidence", *[f"p_{c}" for c in CLASSES]]:
            assert float(b[k]) == pytest.approx(float(a[k]), abs=2e-4), (k, a, b)
    # A line per window as it is decided, then the summary.
    rows = [line for line in lines if " s  " in line and "latency" in line]
    assert len(rows) == 8 and rows[0].strip().startswith("0.00–")
    assert "36 frames read" in lines[-1] and "0 dropped" in lines[-1] and "real-time factor" in lines[-1]
    saved = json.loads((tmp_path / "live" / "live.json").read_text())
    assert saved["windows"] == 8 and saved["latency_max_s"] >= saved["latency_median_s"] > 0


def test_a_stream_url(probe, talk, tmp_path):
    """The clip served over HTTP (a recording with a length: read at its own rate) gives the file's rows."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(talk.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{talk.name}"
        summary = run_live(url, _config(probe, tmp_path / "url"), emit=lambda line: None, max_age=math.inf)
    finally:
        server.shutdown()
        server.server_close()
    run_live(str(talk), _config(probe, tmp_path / "file"), emit=lambda line: None, max_age=math.inf)
    assert summary["source"] == url and summary["frames_read"] == 36 and summary["wall_s"] >= 35 / 15
    url_rows, file_rows = _rows(tmp_path / "url" / "timeline.csv"), _rows(tmp_path / "file" / "timeline.csv")
    assert len(url_rows) == 8 and [r["level"] for r in url_rows] == [r["level"] for r in file_rows]


def test_slow_scorer_drops_frames_and_latency_stays_bounded(probe, talk, tmp_path):
    delay = 0.3  # more than a hop (0.27 s): with the face pass, the loop cannot keep up

    def slow(score):
        def scored(clips):
            time.sleep(delay)
            return score(clips)

        return scored

    lines: list[str] = []
    # Frames may wait 0.15 s (the default is a window's length, 0.53 s here).
    summary = run_live(str(talk), _config(probe, tmp_path), emit=lines.append, wrap_score=slow, max_age=0.15)
    assert summary["frames_dropped"] > 0 and summary["frames_read"] == 36
    assert summary["frames_processed"] == 36 - summary["frames_dropped"]
    assert f"{summary['frames_dropped']} dropped" in lines[-1]
    assert 0 < summary["windows"] < 8 and summary["windows"] == len(_rows(tmp_path / "timeline.csv"))
    # Dropping keeps the delay bounded, not growing with the backlog (8 windows of 0.3 s each are 2.4 s
    # of work on 2.4 s of source): a window that cannot be decided within 2 window lengths of its last
    # frame is skipped as late (counted), and a row past that when made too: no row comes later.
    assert summary["latency_max_s"] <= 2 * SPAN_S
    assert summary["windows_late"] + summary["windows_skipped"] > 0  # rows, not delay, pay for the slowness


def test_every_person_gets_rows_live(probe, tmp_path):
    """Hopper and the astronaut, swapping halves at frame 24, the astronaut away in frames 8-15: two
    people, each with their windows, ``person`` last (as offline)."""
    path = tmp_path / "two.avi"
    write_video(path, two_faces(n=36, swap=24, away=range(8, 16))[0], 12)
    out = tmp_path / "out"
    summary = run_live(
        str(path), _config(probe, out, faces="all", min_track=0.5), emit=lambda line: None, max_age=math.inf
    )
    rows = _rows(out / "timeline.csv")
    assert list(rows[0]) == [*timeline_columns("classification", CLASSES), "person"]
    people = {r["person"] for r in rows}
    assert people == {"person-00", "person-01"} and summary["people"] == 2
    for name in people:  # every window of each person, once: 36 frames, windows of 8 every 4
        starts = [float(r["start_s"]) for r in rows if r["person"] == name]
        assert starts == sorted(set(starts)) and len(starts) >= 6
    # The window of frames 8-15: the astronaut is away (no_face), Hopper is there (scored).
    away = {r["person"]: r["level"] for r in rows if r["start_s"] == f"{8 / 12:.3f}"}
    assert sorted(level == "no_face" for level in away.values()) == [False, True]
    # After the swap, each is still themselves: both seen in every frame of the last window.
    last = [r for r in rows if r["start_s"] == f"{28 / 12:.3f}"]
    assert len(last) == 2 and all(r["face_fraction"] == "1.000" for r in last)


def test_a_person_long_gone_costs_nothing_until_back(probe, tmp_path):
    """The astronaut away for frames 8-43 (3 s at 12 fps, more than RETIRE = 3 windows of 8 frames):
    their crops stop once they have been gone 3 windows, and start again when they are back, as
    the same person."""
    path = tmp_path / "two.avi"
    write_video(path, two_faces(n=60, swap=100, away=range(8, 44))[0], 12)
    out = tmp_path / "out"
    summary = run_live(
        str(path), _config(probe, out, faces="all", min_track=0.5), emit=lambda line: None, max_age=math.inf
    )
    rows = _rows(out / "timeline.csv")
    people = {r["person"] for r in rows}
    assert summary["people"] == 2 and people == {"person-00", "person-01"}
    starts = {name: [round(float(r["start_s"]) * 12) for r in rows if r["person"] == name] for name in people}
    gone = min(people, key=lambda name: len(starts[name]))  # the astronaut
    # Windows start every 4 frames: rows (no_face) while gone up to 3 windows, none after, rows again back.
    assert 0 in starts[gone] and 20 in starts[gone] and not any(24 <= t <= 36 for t in starts[gone])
    assert any(t >= 40 for t in starts[gone])
    assert len(starts[next(n for n in people if n != gone)]) == 14  # Hopper: every window, 0..52


@pytest.mark.parametrize(
    "source, message",
    [
        ("7", "camera 7 cannot be opened"),
        ("rtsp://127.0.0.1:9/none", "cannot open the stream"),
        ("http://127.0.0.1:9/none.mp4", "cannot open the stream"),
        ("{missing}", "no video"),
        ("{text}", "the file"),
    ],
)
def test_bad_sources_give_one_clear_error(probe, tmp_path, capfd, source, message):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 50)
    source = source.format(missing=tmp_path / "gone.mp4", text=text)
    assert main(["--live", source, "--probe", probe, "--out-dir", str(tmp_path / "out"), *CPU]) == 2
    err = capfd.readouterr().err.strip().splitlines()  # the file descriptor's: native libraries' lines too
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "out" / "timeline.csv").exists()


def test_live_and_a_video_together_is_an_error(probe, talk, tmp_path, capsys):
    assert main([str(talk), "--live", str(talk), "--probe", probe, "--out-dir", str(tmp_path), *CPU]) == 2
    assert "either a VIDEO or --live" in capsys.readouterr().err


def test_ctrl_c_ends_cleanly_with_a_summary(probe, talk, tmp_path):
    stop = threading.Event()
    lines: list[str] = []

    def emit(line: str) -> None:
        lines.append(line)
        if "latency" in line and "ms" in line and "median" not in line:
            stop.set()  # what the first Ctrl-C does: the loop ends after the frame in hand

    summary = run_live(str(talk), _config(probe, tmp_path), emit=emit, stop=stop)
    assert summary["frames_read"] < 36 and summary["windows"] >= 1
    assert "real-time factor" in lines[-1] and (tmp_path / "live.json").is_file()


def test_ctrl_c_in_the_command(probe, tmp_path):
    """A real SIGINT to ``python -m fmae.predict --live``: the first ends the run cleanly (exit 0,
    the summary printed, ``live.json`` written), after the rows so far."""
    truth = render_segments([3, 0, 3], 4.0, size=64, seed=9)  # 12 s: Ctrl-C comes long before its end
    video = tmp_path / "long.avi"
    write_video(video, truth.rendered.frames, truth.fps)
    command = [sys.executable, "-m", "fmae.predict", "--live", str(video), "--probe", probe]
    proc = subprocess.Popen(
        [*command, "--out-dir", str(tmp_path / "out"), *CPU], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        for line in proc.stdout:  # wait for the first row
            if "latency" in line:
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "frames read" in out and "real-time factor" in out and "wrote" in out
    summary = json.loads((tmp_path / "out" / "live.json").read_text())
    assert 0 < summary["frames_read"] < len(truth.rendered.frames) and summary["windows"] >= 1


def test_help_tells_about_live(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--live SOURCE" in text and "camera index" in text and "dropped" in text and "--threads" in text


# --------------------------------------------------------------- the incremental parts


def test_mjpeg_round_trip_is_the_crop_caches_pixels(tmp_path):
    rng = np.random.default_rng(0)
    crops = np.clip(rng.normal(128, 40, (5, 32, 32, 3)), 0, 255).astype(np.uint8)
    write_video(tmp_path / "c.avi", crops, 15)
    with av.open(str(tmp_path / "c.avi")) as c:
        cached = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    trip = MjpegRoundTrip(32, qscale=3)
    for a, b in zip(cached, crops):
        assert np.array_equal(a, trip(b))


@pytest.mark.parametrize("breaks", [False, True])
def test_live_cropper_windows_are_the_offline_ones(breaks):
    """Boxes with gaps (before the first detection too) and a jump: the crop window of every frame,
    made frame by frame, is the offline one (hold_gaps, smooth, with breaks at jumps for a person)."""
    rng = np.random.default_rng(1)
    T, hw = 40, (120, 160)
    boxes = np.tile(np.array([40, 30, 80, 70], np.float32), (T, 1)) + rng.normal(0, 2, (T, 4)).astype(np.float32)
    boxes[20:] += np.float32([70, 10, 70, 10])  # a jump to another place
    boxes[:3] = boxes[10:13] = boxes[30] = np.nan
    filled, _ = hold_gaps(boxes)
    expected = crop_windows(smooth(filled, 5, breaks=jumps(filled) if breaks else None), hw, 0.25)
    frame = np.zeros((*hw, 3), np.uint8)
    seen = []
    cropper = LiveCropper(hw, 16, 0.25, 5, None, keep=8, breaks=breaks)
    cropper._make = lambda t, box, make=cropper._make: seen.append((t, box)) or make(t, box)  # noqa: SLF001
    for t in range(T):
        cropper.push(t, frame, boxes[t])
    cropper.finish()
    assert [t for t, _ in seen] == list(range(T))
    got = crop_windows(np.stack([box for _, box in seen]), hw, 0.25)
    np.testing.assert_array_equal(got, expected)


def test_first_window():
    assert [first_window(i, 8, 4) for i in (0, 7, 8, 11, 12)] == [0, 0, 4, 4, 8]
