"""Encoder features of whole videos, written to disk: what ``python -m fmae.extract`` runs.

A video goes through the face pipeline (or, with ``cropped``, is read as the face crops
it already is); windows of the encoder's clip length (``num_frames × temporal_stride``
source frames) start every ``hop`` seconds (default: the window's own length, so the
windows tile the video, as MARLIN's ``extract_video`` does) and go through the encoder in
batches (:mod:`fmae.downstream.windows`). :func:`extract_video` returns the features of
one video; :func:`run_extract` does a list of videos and folders into ``out_dir``:

- ``<out_dir>/<video path relative to its input>.features.safetensors``: ``features``
  float32 ``[W, D]`` (``pool="mean"``) or ``[W, N, D]`` (``"tokens"``), ``start_s`` and
  ``end_s`` float64 ``[W]``, ``face_fraction`` float32 ``[W]``;
- ``<…>.features.json`` beside it: the video's status (``ok``, ``no_face``,
  ``unreadable``, ``timeout``: its decoding stalled and was cut off, ``error``) and message,
  its windows, and what made the features (the encoder's fingerprint, hop, pooling): a
  rerun skips a video whose record matches (and is not ``timeout`` or ``error``), so a
  stopped run resumes, and a bad video is recorded, never fatal;
- ``<out_dir>/index.csv``: ``video, window, start_s, end_s, face_fraction, status``, one row
  per window (one row with an empty window for a video without features), rebuilt from
  the records at the end of every run, so shards (``rank``/``world_size``) that share
  ``out_dir`` end with one index.

With ``faces="all"`` (``--faces all``) every person in a video gets features
(:func:`fmae.downstream.windows.find_people`): ``<out_dir>/<video path>.person-NN.features.safetensors``
per person, the same tensors as above (``face_fraction``: that person's), the video's record
listing ``people`` (each ``person`` and its windows), and ``index.csv`` rows per person with a
last column ``person``, the name in the preprocessing cache's ``tracks.csv``. A video with more
people than ``max_faces`` is recorded as ``too_many_faces``.

The face passes run in ``workers`` processes while this process runs the encoder.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import os
import shutil
import tempfile
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from tqdm import tqdm

from fmae.data.clips import VIDEO_SUFFIXES
from fmae.data.face_pass import FACES
from fmae.data.preprocess import find_videos, shard
from fmae.downstream.windows import Faces, encode_windows, find_faces, find_people, window_starts
from fmae.model import FMAE
from fmae.runtime.config import check_choices, setting
from fmae.runtime.device import DTYPES, resolve_device, resolve_dtype
from fmae.runtime.files import out_of_room, write_atomically, write_tensors
from fmae.runtime.lock import folder_lock
from fmae.weights import fingerprint, load_encoder

log = logging.getLogger(__name__)

POOLS: tuple[str, ...] = ("mean", "tokens")
INDEX_COLUMNS: tuple[str, ...] = ("video", "window", "start_s", "end_s", "face_fraction", "status")
_SUFFIX = ".features"


class VideoFeatures(NamedTuple):
    """The features of one video's windows (``W`` of them)."""

    features: torch.Tensor
    """float32 ``[W, D]`` (mean-pooled) or ``[W, N, D]`` (tokens)."""
    start_s: torch.Tensor
    """float64 ``[W]``: window start, seconds from the video's start."""
    end_s: torch.Tensor
    """float64 ``[W]``: window end (exclusive)."""
    face_fraction: torch.Tensor
    """float32 ``[W]``: fraction of the window's frames in which a face was found."""


@dataclass
class ExtractConfig:
    """Features of whole videos from an FMAE encoder (or converted weights)."""

    weights: str = setting(
        "",
        "the encoder: FMAE weights, a pre-training checkpoint or run folder, or weights "
        "converted with python -m fmae.convert",
    )
    out_dir: str = setting("runs/features", "where the .features.safetensors files and index.csv go")
    hop: float = setting(0.0, "seconds between window starts; 0: the window's own length (windows tile the video)")
    temporal_stride: int = setting(2, "take every k-th frame: a window is num_frames × stride source frames")
    pool: str = setting("mean", "mean: one vector per window [W, D]; tokens: every token [W, N, D]", POOLS)
    cropped: bool = setting(False, "the videos already are face crops: skip the face pipeline")
    batch_size: int = setting(16, "windows per encoder batch")
    workers: int = setting(1, "processes running the face pipeline (decoding and tracking) beside the encoder")
    rank: int = setting(0, "this machine's shard: video i goes to rank i % world_size")
    world_size: int = setting(1, "number of shards")
    dtype: str = setting(
        "auto", "compute dtype of the encoder: bf16 where the CPU/GPU is fast in it, else fp32", DTYPES
    )
    device: str = setting("auto", "cpu, cuda, cuda:N or auto")
    faces: str = setting(
        "one", "one: the face the pipeline follows; all: every person, features per person (fmae.data.people)", FACES
    )
    max_faces: int = setting(8, "with --faces all: most people a video may show; more is the status too_many_faces")
    min_track: float = setting(1.0, "with --faces all: seconds a person must be seen for; briefer faces are dropped")

    def __post_init__(self) -> None:
        check_choices(self)
        if self.faces == "all" and self.cropped:
            raise ValueError("--cropped videos are one face's crops already; --faces all reads the recordings")
        if self.max_faces < 1 or self.min_track < 0:
            raise ValueError(f"need max_faces >= 1 and min_track >= 0, got {self.max_faces}, {self.min_track}")
        if self.hop < 0:
            raise ValueError(f"hop must be >= 0 seconds (0: the window's length), got {self.hop}")
        for name in ("temporal_stride", "batch_size", "workers", "world_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {self.rank}, world_size {self.world_size}")


def window_frames(
    encoder: FMAE, num_video_frames: int, fps: float, temporal_stride: int, hop_s: float = 0.0
) -> tuple[np.ndarray, np.ndarray, int]:
    """``(starts int64 [W], offsets int64 [num_frames], span)`` of a video of
    ``num_video_frames`` frames at ``fps``: windows of ``span = num_frames ×
    temporal_stride`` frames every ``hop_s`` seconds (0: every ``span`` frames)."""
    offsets = temporal_stride * np.arange(encoder.config.num_frames, dtype=np.int64)
    span = encoder.config.num_frames * temporal_stride
    hop = max(1, round(hop_s * fps)) if hop_s > 0 else span
    return window_starts(num_video_frames, span, hop), offsets, span


def features_of(
    encoder: FMAE,
    faces: Faces,
    *,
    temporal_stride: int = 2,
    hop_s: float = 0.0,
    pool: bool = True,
    batch_size: int = 16,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
) -> VideoFeatures:
    """The windows' features of a video after the face pass (``faces``); ``ValueError``
    when the video has no face or is shorter than one window."""
    if faces.crops is None:
        raise ValueError("no face in any frame")
    starts, offsets, span = window_frames(encoder, len(faces.has_face), faces.fps, temporal_stride, hop_s)
    cumulative = np.concatenate([[0], np.cumsum(faces.has_face)])
    fraction = (cumulative[starts + span] - cumulative[starts]) / span
    feats = encode_windows(
        encoder, faces.crops, starts, offsets, batch_size=batch_size, dtype=dtype, pool=pool, progress=progress
    )
    return VideoFeatures(
        feats,
        torch.from_numpy(starts / faces.fps),
        torch.from_numpy((starts + span) / faces.fps),
        torch.from_numpy(fraction.astype(np.float32)),
    )


def extract_video(
    encoder: FMAE,
    video: str | os.PathLike,
    *,
    hop_s: float = 0.0,
    temporal_stride: int = 2,
    pool: bool = True,
    cropped: bool = False,
    batch_size: int = 16,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
) -> VideoFeatures:
    """Features of a whole video: the face pipeline (unless ``cropped``), then windows of
    ``num_frames × temporal_stride`` frames every ``hop_s`` seconds (0: tiled) through
    ``encoder`` (on its device). See :class:`VideoFeatures` for the shapes."""
    with tempfile.TemporaryDirectory(prefix="fmae-extract-") as work:
        faces = find_faces(video, work, encoder.config.img_size, cropped=cropped)
        return features_of(
            encoder,
            faces,
            temporal_stride=temporal_stride,
            hop_s=hop_s,
            pool=pool,
            batch_size=batch_size,
            dtype=dtype,
            progress=progress,
        )


# ---------------------------------------------------------------------------- the run


class _Video(NamedTuple):
    source: Path
    rel: PurePosixPath  # its path relative to the input it was found under


def list_videos(inputs: Sequence[str | os.PathLike]) -> list[_Video]:
    """Every video named in ``inputs`` (files) or found under them (folders, recursively),
    in order, each with the path its outputs are named after."""
    found: list[_Video] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found += [_Video(path / rel, rel) for rel in find_videos(path)]
        elif path.is_file():
            found.append(_Video(path, PurePosixPath(path.name)))
        else:
            raise FileNotFoundError(f"no video or folder {path}")
    if not found:
        raise FileNotFoundError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) in {', '.join(map(str, inputs))}")
    return found


def output_path(out_dir: str | os.PathLike, rel: PurePosixPath, suffix: str) -> Path:
    """``<out_dir>/<rel>.features<suffix>``."""
    return Path(out_dir) / f"{rel}{_SUFFIX}{suffix}"


def person_output_path(out_dir: str | os.PathLike, rel: PurePosixPath, person: str) -> Path:
    """``<out_dir>/<rel>.<person>.features.safetensors``: one person's features (``--faces all``)."""
    return Path(out_dir) / f"{rel}.{person}{_SUFFIX}.safetensors"


def _settings(config: ExtractConfig, encoder_id: str) -> dict[str, Any]:
    settings = {
        "encoder": encoder_id,
        "hop": config.hop,
        "temporal_stride": config.temporal_stride,
        "pool": config.pool,
        "cropped": config.cropped,
    }
    if config.faces == "all":  # only then: the records of one-face runs stay valid
        settings.update(faces="all", max_faces=config.max_faces, min_track=config.min_track)
    return settings


def _is_done(record_file: Path, settings: dict[str, Any]) -> bool:
    try:
        record = json.loads(record_file.read_text())
    except (OSError, ValueError):
        return False
    if record.get("settings") != settings or record.get("status") in (None, "timeout", "error"):
        return False
    if record["status"] == "ok" and "people" in record:
        rel = PurePosixPath(record_file.name.removesuffix(f"{_SUFFIX}.json"))
        return all(person_output_path(record_file.parent, rel, p["person"]).is_file() for p in record["people"])
    return record["status"] != "ok" or record_file.with_suffix(".safetensors").is_file()


def _face_pass(
    source: Path, work_dir: str, img_size: int, config: ExtractConfig
) -> Faces | dict[str, Faces] | BaseException:
    # In a worker process: any failure comes back as a value, so one bad video stops nothing.
    try:
        if config.faces == "all":
            return find_people(source, work_dir, img_size, config.max_faces, config.min_track)
        return find_faces(source, work_dir, img_size, cropped=config.cropped)
    except Exception as e:  # noqa: BLE001 - recorded per video
        return e


def _face_passes(
    videos: list[_Video], work_dir: str, img_size: int, config: ExtractConfig
) -> Iterator[tuple[_Video, Faces | dict[str, Faces] | BaseException]]:
    """Each video's face pass (a person's each, with ``--faces all``), in order; with ``workers > 1``
    up to ``2 × workers`` run ahead."""
    if config.workers <= 1:
        for video in videos:
            yield video, _face_pass(video.source, work_dir, img_size, config)
        return
    with ProcessPoolExecutor(config.workers) as pool:
        pending: list[tuple[_Video, Future]] = []
        for video in videos:
            pending.append((video, pool.submit(_face_pass, video.source, work_dir, img_size, config)))
            if len(pending) >= 2 * config.workers:
                done, future = pending.pop(0)
                yield done, future.result()
        for video, future in pending:
            yield video, future.result()


def _describe(error: BaseException) -> tuple[str, str]:
    status = "unreadable" if isinstance(error, (ValueError, FileNotFoundError)) else "error"
    if isinstance(error, ValueError) and "no face" in str(error):
        status = "no_face"
    if isinstance(error, ValueError) and ": timeout: " in str(error):  # find_faces names the face pass's status
        status = "timeout"
    if isinstance(error, ValueError) and ": too_many_faces: " in str(error):  # find_people's, likewise
        status = "too_many_faces"
    return status, f"{type(error).__name__}: {error}"


def run_extract(inputs: Sequence[str | os.PathLike], config: ExtractConfig, progress: bool = True) -> dict[str, int]:
    """Extract the features of every video in ``inputs`` (this rank's share) into
    ``config.out_dir`` (see the module docstring); returns ``{status: count}`` with
    ``skipped`` for videos already done. Holds the folder's lock (:func:`fmae.runtime.lock.folder_lock`;
    one per rank when sharded): a second run into it raises ``FolderInUseError``."""
    if not config.weights:
        raise ValueError("give the encoder's weights (--weights)")
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    encoder = load_encoder(config.weights, device).eval()
    out = Path(config.out_dir).expanduser()
    videos = shard(list_videos(inputs), config.rank, config.world_size)
    with folder_lock(out, _share(config)):
        settings = _settings(config, fingerprint(encoder))
        todo = [v for v in videos if not _is_done(output_path(out, v.rel, ".json"), settings)]
        counts = {"skipped": len(videos) - len(todo)}
        log.info(
            "features of %d videos (%d done before) with %s into %s",
            len(videos),
            counts["skipped"],
            config.weights,
            out,
        )
        _extract_all(todo, out, encoder, settings, config, dtype, counts, progress)
        write_index(out)
    return counts


def _share(config: ExtractConfig) -> str:
    """The lock name of this run's share of ``out_dir``: ranks of a sharded run write side by side."""
    return f"rank{config.rank}" if config.world_size > 1 else ""


def _extract_all(
    todo: list[_Video],
    out: Path,
    encoder: FMAE,
    settings: dict[str, Any],
    config: ExtractConfig,
    dtype: torch.dtype,
    counts: dict[str, int],
    progress: bool,
) -> None:
    """Extract and write each video of ``todo``, recording it; a bad video is recorded, a failed
    write (a full disk) stops the run."""
    work = tempfile.mkdtemp(prefix="fmae-extract-")
    try:
        bar = tqdm(total=len(todo), disable=not progress, desc="extract", unit="video", dynamic_ncols=True)
        for video, faces in _face_passes(todo, work, encoder.config.img_size, config):
            tick = time.perf_counter()
            record: dict[str, Any] = {"source": str(video.source), "settings": settings, "windows": []}
            got = None
            try:
                if isinstance(faces, BaseException):
                    raise faces
                if faces == {}:
                    raise ValueError(f"no face seen for {config.min_track:g} s in any frame")
                encode = functools.partial(
                    features_of,
                    encoder,
                    temporal_stride=config.temporal_stride,
                    hop_s=config.hop,
                    pool=config.pool == "mean",
                    batch_size=config.batch_size,
                    dtype=dtype,
                )
                got = {p: encode(f) for p, f in faces.items()} if isinstance(faces, dict) else encode(faces)
            except Exception as e:  # noqa: BLE001 - a bad video is recorded and the run goes on
                if out_of_room(e):  # its face pass could not write its crops: every next one would fail so
                    raise
                record["status"], record["message"] = _describe(e)
                log.warning("%s: %s", video.source, record["message"])
            finally:
                if isinstance(faces, dict) and faces:  # every person's crops lie in one folder
                    shutil.rmtree(next(iter(faces.values())).crops.parent, ignore_errors=True)
                elif isinstance(faces, Faces) and faces.crops is not None and not config.cropped:
                    faces.crops.unlink(missing_ok=True)
            if isinstance(got, dict):
                _write_people(out, video.rel, got, faces, record)
            elif got is not None:
                tensors = {
                    "features": got.features.contiguous(),
                    "start_s": got.start_s,
                    "end_s": got.end_s,
                    "face_fraction": got.face_fraction,
                }
                write_tensors(output_path(out, video.rel, ".safetensors"), tensors)
                record.update(
                    status="ok",
                    message="",
                    fps=faces.fps,
                    frames=len(faces.has_face),
                    windows=[
                        [float(s), float(e), float(f)] for s, e, f in zip(got.start_s, got.end_s, got.face_fraction)
                    ],
                )
            record["seconds"] = round(time.perf_counter() - tick, 3)
            write_atomically(
                output_path(out, video.rel, ".json"), lambda tmp, r=record: tmp.write_text(json.dumps(r) + "\n")
            )
            counts[record["status"]] = counts.get(record["status"], 0) + 1
            bar.update(1)
        bar.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _write_people(
    out: Path, rel: PurePosixPath, got: dict[str, VideoFeatures], faces: dict[str, Faces], record: dict[str, Any]
) -> None:
    """Write each person's features (:func:`person_output_path`) and complete the video's ``ok``
    record with ``people``: each person's name and windows."""
    for person, features in got.items():
        tensors = {
            "features": features.features.contiguous(),
            "start_s": features.start_s,
            "end_s": features.end_s,
            "face_fraction": features.face_fraction,
        }
        write_tensors(person_output_path(out, rel, person), tensors)
    first = next(iter(faces.values()))
    record.update(
        status="ok",
        message="",
        fps=first.fps,
        frames=len(first.has_face),
        people=[
            {"person": person, "windows": [[float(s), float(e), float(f)] for s, e, f in zip(*windows)]}
            for person, (_, *windows) in got.items()
        ],
    )


def write_index(out_dir: str | os.PathLike) -> Path:
    """Rebuild ``<out_dir>/index.csv`` from every video's record under ``out_dir``; where a video
    has features per person (``--faces all``), the index gains a last column ``person``
    (empty for one-face videos)."""
    out = Path(out_dir)
    rows: list[list[Any]] = []
    by_person = False
    for record_file in sorted(out.rglob(f"*{_SUFFIX}.json")):
        try:
            record = json.loads(record_file.read_text())
        except (OSError, ValueError):
            continue
        video = record_file.relative_to(out).as_posix().removesuffix(f"{_SUFFIX}.json")
        if record.get("status") == "ok" and record.get("people"):
            by_person = True
            rows += [
                [video, w, f"{s:.4f}", f"{e:.4f}", f"{f:.4f}", "ok", p["person"]]
                for p in record["people"]
                for w, (s, e, f) in enumerate(p["windows"])
            ]
        elif record.get("status") == "ok" and record.get("windows"):
            rows += [
                [video, w, f"{s:.4f}", f"{e:.4f}", f"{f:.4f}", "ok"] for w, (s, e, f) in enumerate(record["windows"])
            ]
        else:
            rows.append([video, "", "", "", "", record.get("status", "error")])

    columns = (*INDEX_COLUMNS, "person") if by_person else INDEX_COLUMNS
    rows = [row + [""] * (len(columns) - len(row)) for row in rows]

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(columns)
            w.writerows(rows)

    out.mkdir(parents=True, exist_ok=True)
    return write_atomically(out / "index.csv", write)
