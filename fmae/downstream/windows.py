"""Windows over a recording: the face pass, window positions, and the encoder's features
of each window.

A recording goes through the project's face pipeline once (:func:`find_faces`: crops of
the encoder's size, one per source frame, and whether each frame shows a face; or
:func:`people_pass`: the same for every person in it; :func:`thumbnail` picks one crop to
show); windows of ``clip frames × temporal stride`` source frames start every hop
(:func:`window_starts`); :func:`encode_windows` decodes the crops in one pass and
batches the windows through the encoder. Prediction (:mod:`fmae.downstream.predict`)
and feature extraction (``python -m fmae.extract``) both stand on this.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, NamedTuple

import av
import numpy as np
import torch
from tqdm import tqdm

from fmae.data.clips import frame_rate, normalise_clip, rgb_array
from fmae.data.face_pass import PreprocessConfig, process_video
from fmae.data.people import TRACKS, people_folder
from fmae.downstream.features import encode_clips, pooled_dim
from fmae.model import FMAE
from fmae.runtime.device import autocast

log = logging.getLogger(__name__)


@dataclass
class Faces:
    """A recording after the face pipeline."""

    crops: Path | None
    """Face-crop video (``img_size²`` MJPEG, one frame per source frame); ``None`` when no frame has a face."""
    has_face: np.ndarray
    """``bool [T]``: a face was detected in source frame ``t``."""
    fps: float


def find_faces(video: str | Path, work_dir: str | Path, img_size: int, cropped: bool = False) -> Faces:
    """Run the face pipeline (MediaPipe) on ``video``, writing crops into ``work_dir``.

    With ``cropped`` the video already is face crops: nothing is detected, every frame
    counts as a face and the video itself is read (resized to ``img_size`` as it is
    decoded). Raises ``FileNotFoundError`` for a missing video and ``ValueError`` for one
    that is unreadable or empty; a video without any face is not an error (``crops`` is
    ``None``).
    """
    video = Path(video).expanduser()
    if not video.is_file():
        raise FileNotFoundError(f"no video {video}")
    if cropped:
        return _cropped(video)
    crops = Path(work_dir) / f"{video.stem}.faces.avi"
    config = PreprocessConfig(size=img_size, regions=False)  # the encoder reads no region maps
    with config.create_backend() as backend:
        record = process_video(video, crops, backend, config)
    if record["status"] == "no_face":
        return Faces(None, np.zeros(record["frames"], bool), record["fps"])
    if record["status"] != "ok":
        raise ValueError(f"{video}: {record['status']}: {record['message']}")
    if record["message"]:
        log.warning("%s: %s", video, record["message"])
    return Faces(crops, _has_face(record["frames"], record["missing_face_ranges"]), record["fps"])


class PeoplePass(NamedTuple):
    """A recording after the face pass over every face (:func:`people_pass`)."""

    people: dict[str, Faces]
    """``{"person-NN": Faces}`` in person order; empty unless ``status`` is ``ok``."""
    status: str
    """``ok``, ``no_face`` (no one seen for ``min_track`` seconds) or ``too_many_faces``."""
    message: str
    frames: int
    """Source frames of the recording."""
    fps: float
    tracks: Path | None
    """The face pass's ``tracks.csv`` (:data:`fmae.data.people.TRACK_COLUMNS`), ``None`` unless ``ok``."""


def people_pass(
    video: str | Path, work_dir: str | Path, img_size: int, max_faces: int = 8, min_track: float = 1.0
) -> PeoplePass:
    """Run the face pipeline on every face of ``video`` (``--faces all``, :mod:`fmae.data.people`),
    each person's crops written into the folder ``work_dir/<stem>.faces/`` beside its ``tracks.csv``.

    No one seen and more than ``max_faces`` people are statuses of the result, not errors: a
    caller records them. Raises ``FileNotFoundError`` for a missing video and ``ValueError`` for
    one that is unreadable, empty or stalls (the message names the status).
    """
    video = Path(video).expanduser()
    if not video.is_file():
        raise FileNotFoundError(f"no video {video}")
    crops = Path(work_dir) / f"{video.stem}.faces.avi"
    config = PreprocessConfig(size=img_size, regions=False, faces="all", max_faces=max_faces, min_track=min_track)
    with config.create_backend() as backend:
        record = process_video(video, crops, backend, config)
    status, message, frames, fps = record["status"], record["message"], record["frames"], record.get("fps", 0.0)
    if status in ("no_face", "too_many_faces"):
        return PeoplePass({}, status, message, frames, fps, None)
    if status != "ok":
        raise ValueError(f"{video}: {status}: {message}")
    if message:
        log.warning("%s: %s", video, message)
    folder = people_folder(crops)
    people = {
        p["person"]: Faces(folder / f"{p['person']}.avi", _has_face(frames, p["missing_face_ranges"]), fps)
        for p in record["persons"]
    }
    return PeoplePass(people, status, message, frames, fps, folder / TRACKS)


def find_people(
    video: str | Path, work_dir: str | Path, img_size: int, max_faces: int = 8, min_track: float = 1.0
) -> dict[str, Faces]:
    """:func:`people_pass`'s people: ``{"person-NN": Faces}``, an empty dict when no one is seen
    (no face, or none for ``min_track`` seconds). Raises ``FileNotFoundError`` for a missing video
    and ``ValueError`` for one that is unreadable, empty, or shows more than ``max_faces`` people
    (the message names the status)."""
    found = people_pass(video, work_dir, img_size, max_faces, min_track)
    if found.status == "too_many_faces":
        raise ValueError(f"{Path(video).expanduser()}: {found.status}: {found.message}")
    return found.people


def thumbnail(faces: Faces) -> np.ndarray | None:
    """``uint8 [S, S, 3]``: the face crop in the middle of the frames that show the face (a
    person's likeness for a report), ``None`` when no frame does."""
    seen = np.flatnonzero(faces.has_face)
    if faces.crops is None or not len(seen):
        return None
    return frame_at(faces.crops, int(seen[len(seen) // 2]))


def frame_at(path: Path, index: int) -> np.ndarray:
    """``uint8 [H, W, 3]``: frame ``index`` of the video at ``path``, found by seeking to its time
    rather than decoding every frame before it (an hour's crops per person would take minutes);
    exact on the face pipeline's crop videos, whose every frame is a key frame."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(frame_rate(stream)[0])
        target = index / fps
        container.seek(int(target / stream.time_base), stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            if frame.time is None or frame.time >= target - 0.5 / fps:
                return rgb_array(frame)
    raise ValueError(f"{path} has no frame {index}")


def _has_face(frames: int, missing: list[list[int]]) -> np.ndarray:
    """``bool [frames]``: False in the ``[start, stop)`` ranges of ``missing``."""
    has_face = np.ones(frames, bool)
    for start, stop in missing:
        has_face[start:stop] = False
    return has_face


def _cropped(video: Path) -> Faces:
    """A video that already is face crops: its frames up to the first that does not decode
    (a damaged tail keeps the good frames before it, as the face pipeline does)."""
    frames, error = 0, None
    try:
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            fps = float(frame_rate(stream)[0])
            try:
                for _ in container.decode(stream):
                    frames += 1
            except av.error.FFmpegError as e:
                error = e
    except (av.error.FFmpegError, IndexError) as e:
        raise ValueError(f"{video}: unreadable: {e}") from e
    if frames == 0:
        raise ValueError(f"{video}: unreadable: {error}" if error else f"{video}: empty: no frames")
    if error is not None:
        log.warning("%s: truncated: decoding stopped after frame %d: %s", video, frames - 1, error)
    return Faces(video, np.ones(frames, bool), fps)


def window_starts(num_frames: int, span: int, hop: int) -> np.ndarray:
    """``int64 [W]``: first frames of the windows of ``span`` frames every ``hop`` frames
    that fit in ``num_frames``; ``ValueError`` when not even one fits."""
    if span < 1 or hop < 1:
        raise ValueError(f"span and hop must be at least one frame, got {span}, {hop}")
    if num_frames < span:
        raise ValueError(f"the video has {num_frames} frames, fewer than one window of {span}")
    return np.arange(0, num_frames - span + 1, hop, dtype=np.int64)


def window_clips(path: Path, starts: np.ndarray, offsets: np.ndarray) -> Iterator[np.ndarray]:
    """``uint8 [len(offsets), H, W, 3]`` frames ``start + offsets`` of each of the sorted
    ``starts``, in order, from one decoding pass holding at most one window's frames; it
    stops at the last window's last frame, never decoding a (perhaps damaged) frame after it."""
    wanted = set((starts[:, None] + offsets).ravel().tolist())
    held: dict[int, np.ndarray] = {}
    w, last = 0, int(offsets[-1])
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                held[i] = rgb_array(frame)
            while w < len(starts) and starts[w] + last <= i:
                yield np.stack([held[int(starts[w] + o)] for o in offsets])
                w += 1
                first = int(starts[w]) if w < len(starts) else i + 1
                for k in [k for k in held if k < first]:
                    del held[k]
            if w == len(starts):
                return
    if w < len(starts):
        raise ValueError(f"{path} ended before frame {int(starts[w]) + last}, which window {w} needs")


@torch.no_grad()
def encode_windows(
    encoder: FMAE,
    crops: Path,
    starts: np.ndarray,
    offsets: np.ndarray,
    *,
    batch_size: int = 16,
    dtype: torch.dtype = torch.float32,
    pool: bool | str = True,
    progress: bool = False,
) -> torch.Tensor:
    """float32 ``[W, D]`` (``pool`` True), ``[W, pooled_dim]`` (``pool`` one of
    :data:`fmae.downstream.features.POOLS`, :func:`~fmae.downstream.features.encode_clips`)
    or ``[W, N, D]`` (``pool`` False): the encoder features
    (:meth:`fmae.model.FMAE.forward_features`) of the clips made of frames
    ``start + offsets`` of the face-crop video ``crops``, for each of the sorted
    ``starts`` (``int64 [W]``). Frames of another size than the encoder's are resized."""
    c = encoder.config
    kind = "mean" if pool is True else (pool or None)  # a POOLS name, or None: every token
    shape = (pooled_dim(encoder, kind),) if kind else (c.num_tokens, c.embed_dim)
    out = torch.empty(len(starts), *shape)
    batch: list[np.ndarray] = []
    done = 0
    with tqdm(total=len(starts), disable=not progress, desc="windows", unit="window", dynamic_ncols=True) as bar:
        for k, frames in enumerate(window_clips(crops, starts, offsets)):
            batch.append(frames)
            if len(batch) == batch_size or k == len(starts) - 1:
                out[done : done + len(batch)] = encode_frames(encoder, batch, dtype=dtype, pool=pool)
                done += len(batch)
                bar.update(len(batch))
                batch.clear()
    return out


@torch.no_grad()
def encode_frames(
    encoder: FMAE, clips: list[np.ndarray], *, dtype: torch.dtype = torch.float32, pool: bool | str = True
) -> torch.Tensor:
    """float32 features of one batch of clips, each ``uint8 [T, H, W, 3]`` RGB face crops (of
    another size than the encoder's: resized): ``[B, D]``, ``[B, pooled_dim]`` or ``[B, N, D]`` as
    ``pool`` says (:func:`encode_windows`, which reads its clips from a crop video; the live loop,
    :mod:`fmae.downstream.live`, passes the crops it holds)."""
    encoder.eval()
    device = next(encoder.parameters()).device
    c = encoder.config
    kind = "mean" if pool is True else (pool or None)  # a POOLS name, or None: every token
    batch = torch.stack([normalise_clip(torch.from_numpy(np.ascontiguousarray(f))) for f in clips]).to(device)
    if batch.shape[-1] != c.img_size or batch.shape[-2] != c.img_size:
        batch = _resize(batch, c.img_size)
    with autocast(device, dtype):
        feats = encode_clips(encoder, batch, kind) if kind else encoder.forward_features(batch, pool=False)
        return feats.float().cpu()


def _resize(clips: torch.Tensor, size: int) -> torch.Tensor:
    """``[B, C, T, H, W]`` → ``[B, C, T, size, size]``, bilinear with antialiasing."""
    B, C, T, H, W = clips.shape
    frames = clips.permute(0, 2, 1, 3, 4).reshape(B * T, C, H, W)
    frames = torch.nn.functional.interpolate(
        frames, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return frames.reshape(B, T, C, size, size).permute(0, 2, 1, 3, 4)
