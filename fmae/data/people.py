"""The per-person cache of a recording with many faces (``python -m fmae.preprocess --faces all``).

Every person that :func:`fmae.face.multi_tracking.track_people` finds in a recording
``SRC/<rel dir>/<stem>.<ext>`` gets what one face gets with ``--faces one``, in a folder
named for the recording::

    OUT/<rel dir>/<stem>/tracks.csv              one row per detection of a person, joinable on
                                                 (frame, person) with everything below:
                                                 frame, time_s, person, x0, y0, x1, y1, score
    OUT/<rel dir>/<stem>/person-00.avi           that person's crops, one per source frame
    OUT/<rel dir>/<stem>/person-00.regions.npz   their region maps, crop windows, has_face
    OUT/<rel dir>/<stem>/person-01.avi           …

``person`` is ``person-NN`` (:func:`person_name`), numbered by first appearance, the same
name as the files; ``x0 … y1`` is the face's tight box in source pixels; ``score`` is how
typical the face is of that person's appearance (cosine similarity of its descriptor to
the person's mean, :class:`fmae.face.multi_tracking.People`), so low scores flag doubtful rows.

Each person's crops follow :mod:`fmae.face.tracking` as one face's do: frames without the
person keep their last box (their region maps are background beyond the gap rule, and
``has_face`` is false), boxes are smoothed, but never across a jump (:func:`fmae.face.tracking.jumps`:
a tile that moved, a person who came back elsewhere). Every person's video has every source
frame, so frame ``t`` of any file is source frame ``t``.

The files are written into a hidden staging folder beside the recording's and moved into
place when all are complete (region maps, then crops, then ``tracks.csv``); person files
of an earlier run that this one no longer has are removed only then. A run that fails or is
killed leaves the earlier files as they were.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

import numpy as np

from fmae.data.region_maps import RegionMapWriter, region_map_path
from fmae.data.video_writer import VideoWriter
from fmae.face.multi_tracking import People
from fmae.face.regions import FaceRegion
from fmae.face.tracking import crop_frame, crop_windows, frame_ranges, hold_gaps, jumps, smooth, to_crop_coords

TRACKS = "tracks.csv"
TRACK_COLUMNS: tuple[str, ...] = ("frame", "time_s", "person", "x0", "y0", "x1", "y1", "score")
PERSON_PREFIX = "person-"


def person_name(p: int) -> str:
    """``person-NN``, the name of person ``p`` in ``tracks.csv`` and of their files."""
    return f"{PERSON_PREFIX}{p:02d}"


def people_folder(video_out: str | os.PathLike) -> Path:
    """The folder of a recording's people: its one-face cache path without the suffix
    (``OUT/<rel dir>/<stem>.avi`` → ``OUT/<rel dir>/<stem>``)."""
    return Path(video_out).with_suffix("")


def person_files(folder: PurePosixPath, name: str, regions: bool) -> dict[str, str | None]:
    """A person's manifest fields ``person``, ``video`` and ``regions`` (``None`` without region
    maps), the paths under ``folder`` (the people's folder relative to OUT)."""
    video = folder / f"{name}.avi"
    return {
        "person": name,
        "video": video.as_posix(),
        "regions": region_map_path(video).as_posix() if regions else None,
    }


@dataclass
class PersonPlan:
    """One person's crops over the whole recording (``T`` frames)."""

    name: str
    windows: np.ndarray
    """``float32 [T, 4]``: crop window per frame (whole numbers, square, may overhang)."""
    detection: np.ndarray
    """``int64 [T]``: index of the person's detection among the frame's, ``-1`` where not seen."""
    source: np.ndarray
    """``int64 [T]``: the frame whose detection each frame's box and landmarks come from."""
    parsed: np.ndarray
    """``bool [T]``: the frame is parsed into regions (within ``max_gap`` of a detection)."""

    @property
    def has_face(self) -> np.ndarray:
        """``bool [T]``: the person was detected in the frame."""
        return self.detection >= 0

    def summary(self) -> dict:
        """The person's manifest fields: face frames, the ranges without them, unparsed frames, windows."""
        T, seen = len(self.detection), self.has_face
        sides = self.windows[:, 2] - self.windows[:, 0]
        return {
            "person": self.name,
            "face_frames": int(seen.sum()),
            "frames_without_face": int(T - seen.sum()),
            "missing_face_ranges": frame_ranges(~seen),
            "unparsed_frames": int(T - self.parsed.sum()),
            "boxes": {
                "mean": [round(float(v), 1) for v in self.windows.mean(0)],
                "side_min": float(sides.min()),
                "side_max": float(sides.max()),
            },
        }


def plan_people(
    boxes: list[np.ndarray],
    people: People,
    frame_hw: tuple[int, int],
    margin: float,
    smooth_window: int,
    max_gap: int,
) -> list[PersonPlan]:
    """Each person's crop windows, in person order.

    boxes: per frame ``float [N_t, 4]``, the detections ``people`` was made from;
    frame_hw: ``(H, W)``; margin, smooth_window, max_gap: as in
    :class:`fmae.data.face_pass.PreprocessConfig`.
    """
    T = len(boxes)
    counts = np.array([len(ids) for ids in people.person], np.int64)
    frame = np.repeat(np.arange(T), counts)  # each detection's frame, all frames' detections in a row
    index = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)  # its place in its frame
    person = np.concatenate([*people.person, np.zeros(0, np.int64)])
    every_box = np.concatenate([*boxes, np.zeros((0, 4))]).astype(np.float32)
    plans = []
    for p in range(people.count):
        mine = person == p  # one a frame at most: a person is never in two places at once
        detection = np.full(T, -1, np.int64)
        detection[frame[mine]] = index[mine]
        own = np.full((T, 4), np.nan, np.float32)
        own[frame[mine]] = every_box[mine]
        filled, source = hold_gaps(own)
        windows = crop_windows(smooth(filled, smooth_window, breaks=jumps(filled)), frame_hw, margin)
        parsed = np.abs(np.arange(T) - source) <= max_gap
        plans.append(PersonPlan(person_name(p), windows, detection, source, parsed))
    return plans


def track_rows(boxes: list[np.ndarray], people: People, fps: float) -> list[list]:
    """``tracks.csv``'s rows (:data:`TRACK_COLUMNS`) in frame order, then person order."""
    rows = []
    for t, (b, ids, score) in enumerate(zip(boxes, people.person, people.score)):
        for i in sorted(np.flatnonzero(ids >= 0), key=lambda i: ids[i]):
            x0, y0, x1, y1 = (f"{float(v):.1f}" for v in b[i])
            rows.append([t, f"{t / fps:.3f}", person_name(int(ids[i])), x0, y0, x1, y1, f"{float(score[i]):.3f}"])
    return rows


def read_tracks(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``tracks.csv`` as columns: ``frame`` int64, ``time_s``, ``x0 … y1``, ``score`` float64,
    ``person`` str, each ``[rows]``."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = {k: [r[k] for r in rows] for k in TRACK_COLUMNS}
    out: dict[str, np.ndarray] = {"frame": np.array(columns["frame"], np.int64), "person": np.array(columns["person"])}
    for k in ("time_s", "x0", "y0", "x1", "y1", "score"):
        out[k] = np.array(columns[k], np.float64)
    return out


def write_people(
    folder: Path,
    frames: Iterable[np.ndarray],
    plans: list[PersonPlan],
    rows: list[list],
    *,
    fps: float,
    size: int,
    qscale: int,
    landmarks: list[list[np.ndarray]] | None = None,
    parse: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> None:
    """Crop every frame for every person and write the recording's folder (see the module docstring).

    folder: ``OUT/<rel dir>/<stem>`` (:func:`people_folder`); frames: the recording's
    ``uint8 [H, W, 3]`` frames, decoded again, in order (the first ``T`` are used); rows: :func:`track_rows`;
    landmarks and parse: per frame the detections' ``float [K, 2]`` landmarks and the face
    backend's ``parse(crop, crop_landmarks) -> uint8 [S, S]``, both ``None`` for crops
    without region maps. Raises ``RuntimeError`` when ``frames`` are fewer than the plans'.
    """
    T, S = len(plans[0].windows), size
    staging = folder.parent / f".{folder.name}.{os.getpid()}.partial"
    shutil.rmtree(staging, ignore_errors=True)  # left by a killed run of this process id
    staging.mkdir(parents=True)
    try:
        background = np.full((1, S, S), FaceRegion.BACKGROUND, np.uint8)
        count = 0
        with contextlib.ExitStack() as files:
            crops = [files.enter_context(VideoWriter(staging / f"{p.name}.avi", fps, (S, S), qscale)) for p in plans]
            maps = (
                [
                    files.enter_context(RegionMapWriter(region_map_path(staging / f"{p.name}.avi"), (S, S)))
                    for p in plans
                ]
                if parse is not None
                else []
            )
            for t, rgb in zip(range(T), frames):
                for k, plan in enumerate(plans):
                    crop = crop_frame(rgb, plan.windows[t], S)
                    crops[k].write(crop)
                    if maps:
                        s = plan.source[t]
                        maps[k].write(
                            parse(crop, to_crop_coords(landmarks[s][plan.detection[s]], plan.windows[t], S))[None]
                            if plan.parsed[t]
                            else background
                        )
                count = t + 1
            if count != T:
                raise RuntimeError(f"the second decoding pass gave {count} frames, the first {T}")
            for writer, plan in zip(maps, plans):
                writer.add(boxes=plan.windows, has_face=plan.has_face)
        with open(staging / TRACKS, "w", newline="") as f:
            table = csv.writer(f, lineterminator="\n")
            table.writerow(TRACK_COLUMNS)
            table.writerows(rows)
        names = [region_map_path(f"{p.name}.avi").name for p in plans if parse is not None]
        names += [f"{p.name}.avi" for p in plans] + [TRACKS]
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:  # maps before crops, the table last: a reader never sees crops without maps
            os.replace(staging / name, folder / name)
        for old in folder.glob(f"{PERSON_PREFIX}*"):
            if old.is_file() and old.name not in names:  # a person of an earlier run that this one does not have
                old.unlink()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
