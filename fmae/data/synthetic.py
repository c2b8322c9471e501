"""A deterministic synthetic face-video set in DAiSEE's layout, for the default run and tests.

No real data ships with FMAE and nothing is downloaded, so the default pre-training
run and the tests use procedurally drawn faces instead. Each subject has a look (skin
tone, head shape, hair style and colour, clothes, background); each clip animates it
with an engagement level 0–3 (DAiSEE's scale) that decides the behaviour:

====  ==================================================================================
3     faces and looks at the camera, eyes wide open, blinks normally, upright, leans in
2     mostly at the camera, short glances away, eyes a little lower
1     often looks away or down, droopy eyelids, head tilted, may yawn or close the eyes
0     looks away most of the time (head partly out of frame), eyes half shut or closed
      for long, yawns, head tilted and drooping
====  ==================================================================================

Everything is drawn with numpy over whole ``[T, H, W]`` arrays: ellipses and convex
polygons with one-pixel soft edges, composited back to front, each shape also writing
its :class:`fmae.face.FaceRegion` id into the region map where it covers at least half
a pixel. Eyebrows and the neck count as skin; clothes count as background.

:func:`ensure_synthetic_daisee` writes the set once (MJPEG ``.avi`` via PyAV, region
maps as ``.regions.npz``) under ``<root>/daisee-<config hash>/`` and reuses it after.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from fmae.data.clips import LABEL_COLUMNS, SPLITS, label_file
from fmae.data.region_maps import region_map_path, save_region_maps
from fmae.data.video_writer import write_video
from fmae.face.regions import FaceRegion

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
"""Part of the cache key: bump it whenever the drawing or the behaviour changes."""
NUM_LEVELS = 4
MANIFEST = "manifest.json"
DYNAMICS_VERSION = 2
"""Part of the dynamics set's cache key (:meth:`SyntheticConfig.digest`): bump it whenever
:func:`sample_dynamics` changes."""


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate. The defaults make 50 clips of 48 frames at 112×112, 15 fps.

    Subjects are split subject-disjointly (as in DAiSEE) by ``split_fractions``
    (train, validation, test), rounded, train taking the rest. Clip ``j`` of subject
    ``s`` has engagement level ``(s + j) % 4``, so the levels are balanced and every
    subject with four or more clips shows all of them. ``qscale`` is MJPEG's quantiser
    (2 best … 31 worst).

    ``dynamics`` (off by default) makes the *dynamics set* instead (:func:`sample_dynamics`):
    a clip's level decides only how fast its eyelids, gaze and mouth move, with every
    frame, pose, scale, light and look drawn from one distribution for all levels, so the
    level is in no single frame and in no time average. Off, the set is the same as before
    the option existed, byte for byte, under the same :meth:`digest`.
    """

    seed: int = 0
    num_subjects: int = 10
    clips_per_subject: int = 5
    num_frames: int = 48
    fps: int = 15
    size: int = 112
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    qscale: int = 3
    dynamics: bool = False

    def __post_init__(self) -> None:
        for name in ("num_subjects", "clips_per_subject", "num_frames", "fps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.size < 16 or self.size % 2:
            raise ValueError(f"size must be even and >= 16 (4:2:0 video), got {self.size}")
        if not 2 <= self.qscale <= 31:
            raise ValueError(f"qscale must be in [2, 31], got {self.qscale}")
        if len(self.split_fractions) != 3 or min(self.split_fractions) < 0 or abs(sum(self.split_fractions) - 1) > 1e-6:
            raise ValueError(
                f"split_fractions must be three non-negative numbers summing to 1, got {self.split_fractions}"
            )

    def digest(self) -> str:
        """12 hex digits of a hash of the fields and :data:`GENERATOR_VERSION`."""
        fields = dataclasses.asdict(self)
        if not self.dynamics:  # the sets made before the option keep their digest (and cache folder)
            del fields["dynamics"]
        else:
            fields["dynamics_version"] = DYNAMICS_VERSION
        key = json.dumps({"version": GENERATOR_VERSION, **fields}, sort_keys=True)
        return hashlib.sha256(key.encode()).hexdigest()[:12]

    def subject_splits(self) -> list[str]:
        """The split (one of :data:`fmae.data.clips.SPLITS`) of each subject, in order."""
        n = self.num_subjects
        n_val, n_test = (round(n * f) for f in self.split_fractions[1:])
        n_train = n - n_val - n_test
        if n_train < 1:
            raise ValueError(f"split_fractions {self.split_fractions} leave no training subject of {n}")
        return ["Train"] * n_train + ["Validation"] * n_val + ["Test"] * n_test

    def engagement(self, subject: int, clip: int) -> int:
        return (subject + clip) % NUM_LEVELS


def pretraining_set(size: int = 112) -> SyntheticConfig:
    """The built-in pre-training set: 200 people, one clip each (seed 1, so no subject is a
    subject of :func:`probing_set`), split 120/40/40 by subject.

    A masked autoencoder that may reconstruct a hidden face only from what the mask left
    (at ratio 0.9 with the facial mask: the background) learns what faces share when it
    sees many people, and learns who is in front of which background when it sees few:
    on the 6 training subjects of the 10-subject set, held-out error rose with every
    step after the first hundred, above the visible-mean baseline on the eyes.
    """
    return SyntheticConfig(seed=1, num_subjects=200, clips_per_subject=1, size=size)


def probing_set(size: int = 112) -> SyntheticConfig:
    """The built-in engagement set the probe trains and tests on: 40 subjects with 5 clips
    each (every subject shows every level), 24/8/8 subjects, so 40 test videos."""
    return SyntheticConfig(num_subjects=40, size=size)


def subject_id(subject: int) -> str:
    """DAiSEE-style six-digit subject id; the leading 9 marks it synthetic."""
    return f"9{subject + 1:05d}"


def clip_id(subject: int, clip: int) -> str:
    """Ten-digit clip id: the subject id then the clip number from 1001, as in DAiSEE."""
    return f"{subject_id(subject)}{1001 + clip}"


# --------------------------------------------------------------------------- looks

_SKIN_TONES = np.array(
    [[255, 224, 196], [241, 194, 165], [224, 172, 130], [198, 134, 96], [161, 102, 70], [120, 76, 52], [88, 57, 40]],
    np.float32,
)
_HAIR_COLOURS = np.array(
    [[25, 20, 18], [60, 40, 28], [105, 70, 40], [190, 150, 90], [150, 60, 30], [150, 150, 150]], np.float32
)
_IRIS_COLOURS = np.array([[60, 35, 20], [100, 70, 40], [60, 100, 140], [70, 110, 70]], np.float32)
HAIR_STYLES: tuple[str, ...] = ("short", "long", "bob", "curly", "bun")
BACKGROUNDS: tuple[str, ...] = ("gradient", "noise", "stripes", "window")


@dataclass(frozen=True, eq=False)
class Appearance:
    """One subject's look. Colours are ``float32 [3]`` RGB in 0–255; lengths are in
    half frame widths (the frame spans [-1, 1] on both axes)."""

    skin: np.ndarray
    hair: np.ndarray
    iris: np.ndarray
    lips: np.ndarray
    clothes: np.ndarray
    hair_style: str
    head: tuple[float, float]  # half width, half height of the head ellipse
    forehead: float  # hairline height above the head centre, in head half heights
    parting: float  # slope of the hairline: a side parting
    curl_phase: float  # where the curls of curly hair fall
    background: str
    background_colours: np.ndarray  # float32 [2, 3]
    background_seed: int


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """Draw a subject's look."""

    def jitter(colour: np.ndarray, amount: float) -> np.ndarray:
        return np.clip(colour + rng.normal(0, amount, 3), 0, 255).astype(np.float32)

    skin = jitter(_SKIN_TONES[rng.integers(len(_SKIN_TONES))], 6)
    lips = np.clip(0.65 * skin + 0.35 * np.array([170, 60, 70]), 0, 255).astype(np.float32)
    return Appearance(
        skin=skin,
        hair=jitter(_HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))], 8),
        iris=jitter(_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))], 8),
        lips=lips,
        clothes=rng.uniform(30, 220, 3).astype(np.float32),
        hair_style=HAIR_STYLES[rng.integers(len(HAIR_STYLES))],
        head=(float(rng.uniform(0.54, 0.62)), float(rng.uniform(0.72, 0.8))),
        forehead=float(rng.uniform(0.4, 0.62)),
        parting=float(rng.uniform(-0.25, 0.25)),
        curl_phase=float(rng.uniform(0, 2 * np.pi)),
        background=BACKGROUNDS[rng.integers(len(BACKGROUNDS))],
        background_colours=rng.uniform(40, 230, (2, 3)).astype(np.float32),
        background_seed=int(rng.integers(2**31)),
    )


# ----------------------------------------------------------------------- behaviour


class _Level(NamedTuple):
    away: float  # chance that a segment of the clip looks away
    away_yaw: tuple[float, float]  # head turn of a look-away, radians
    out_of_frame: float  # how far a look-away may shift the head sideways
    eye_open: float  # resting eyelid opening, 1 = wide
    long_close: float  # chance of a long eye closure in the clip
    yawn: float  # chance of a yawn in the clip
    roll: tuple[float, float]  # head tilt, radians
    droop: float  # head pitched down, radians
    sway: float  # amplitude of the head's slow sideways sway
    scale: float  # face size: engaged subjects lean in


_LEVELS = (
    _Level(0.65, (0.6, 1.05), 0.35, 0.42, 0.7, 0.6, (0.15, 0.3), 0.22, 0.07, 0.9),
    _Level(0.40, (0.5, 0.9), 0.15, 0.62, 0.3, 0.4, (0.07, 0.17), 0.12, 0.05, 0.95),
    _Level(0.12, (0.3, 0.55), 0.0, 0.85, 0.0, 0.08, (0.0, 0.07), 0.04, 0.03, 1.0),
    _Level(0.0, (0.3, 0.5), 0.0, 1.0, 0.0, 0.0, (0.0, 0.04), 0.0, 0.02, 1.05),
)


@dataclass(frozen=True, eq=False)
class Behaviour:
    """Per-frame pose and expression, each ``float32 [T]``.

    ``yaw`` > 0 turns the face towards the image's right, ``pitch`` > 0 looks down,
    ``roll`` > 0 tilts clockwise; ``dx``/``dy`` move the head (half frame widths),
    ``scale`` sizes it; ``eye_open`` and ``mouth_open`` run from 0 (shut) to 1 (wide);
    ``gaze_x``/``gaze_y`` move the irises within the eyes (-1 … 1).
    """

    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    scale: np.ndarray
    eye_open: np.ndarray
    mouth_open: np.ndarray
    gaze_x: np.ndarray
    gaze_y: np.ndarray


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Hann-window moving average with edge padding: turns steps into head movements."""
    if width < 2:
        return x
    w = np.hanning(width + 2)[1:-1]
    w /= w.sum()
    padded = np.pad(x, (width // 2, width - 1 - width // 2), mode="edge")
    return np.convolve(padded, w, mode="valid")


def _bump(t: np.ndarray, centre: float, half_width: float) -> np.ndarray:
    """Raised-cosine pulse: 1 at ``centre``, 0 beyond ``half_width`` frames."""
    z = np.clip((t - centre) / half_width, -1, 1)
    return 0.5 + 0.5 * np.cos(np.pi * z)


def sample_behaviour(level: int, num_frames: int, fps: float, rng: np.random.Generator) -> Behaviour:
    """Draw a clip's motion for engagement ``level`` (0–3)."""
    if not 0 <= level < NUM_LEVELS:
        raise ValueError(f"level must be in [0, {NUM_LEVELS}), got {level}")
    p, T = _LEVELS[level], num_frames
    t = np.arange(T, dtype=np.float64)

    # The clip is cut into segments of about a second; each looks at the camera or away
    # (to a side, or down as at a phone), as a step that _smooth turns into a head turn.
    yaw, pitch, dx = np.zeros(T), np.zeros(T), np.zeros(T)
    gaze_x, gaze_y = rng.normal(0, 0.08, T), rng.normal(0, 0.08, T)
    start = 0
    while start < T:
        stop = min(T, start + int(rng.uniform(0.5, 1.3) * fps) + 1)
        seg = slice(start, stop)
        if rng.random() < p.away:
            side = rng.choice([-1.0, 1.0])
            if rng.random() < 0.7:
                yaw[seg] = side * rng.uniform(*p.away_yaw)
                gaze_x[seg] += side * rng.uniform(0.5, 0.9)
                dx[seg] = side * rng.uniform(0, p.out_of_frame)
            else:
                pitch[seg] = rng.uniform(0.3, 0.5)
                gaze_y[seg] += rng.uniform(0.5, 0.9)
                yaw[seg] = side * rng.uniform(0, 0.2)
        else:
            yaw[seg] = rng.normal(0, 0.05)
            pitch[seg] = rng.normal(0, 0.03)
        start = stop
    turn = max(2, int(0.3 * fps))
    yaw, pitch, dx = _smooth(yaw, turn), _smooth(pitch, turn), _smooth(dx, turn)

    eye_open = np.full(T, np.clip(p.eye_open + rng.normal(0, 0.04), 0.15, 1.0))
    blink = rng.uniform(0, 3.5) * fps  # first blink; then every 2.5–4 s
    while blink < T + fps:
        eye_open *= 1 - 0.95 * _bump(t, blink, max(1.0, 0.12 * fps))
        blink += rng.uniform(2.5, 4.0) * fps
    if rng.random() < p.long_close:
        length = rng.uniform(0.8, 1.6) * fps
        centre = rng.uniform(0, T)
        eye_open *= 1 - 0.93 * np.clip(1.5 * _bump(t, centre, length / 2 + 2), 0, 1)

    mouth_open = np.full(T, 0.02)
    if rng.random() < p.yawn:
        half = rng.uniform(0.6, 1.0) * fps
        env = _bump(t, rng.uniform(0.2 * T, 0.8 * T), half)
        mouth_open = np.maximum(mouth_open, rng.uniform(0.8, 1.0) * env)
        eye_open *= 1 - 0.6 * env
        pitch -= 0.15 * env  # the head tips back

    roll_side = rng.choice([-1.0, 1.0])
    roll = roll_side * rng.uniform(*p.roll) + 0.03 * np.sin(
        2 * np.pi * t / (rng.uniform(3, 6) * fps) + rng.uniform(0, 2 * np.pi)
    )
    pitch += p.droop
    sway = p.sway * np.sin(2 * np.pi * t / (rng.uniform(2, 5) * fps) + rng.uniform(0, 2 * np.pi))
    dx = dx + rng.normal(0, 0.04) + sway
    dy = rng.normal(0.06, 0.03) + 0.25 * pitch + 0.3 * sway**2
    scale = p.scale * rng.uniform(0.97, 1.03) * (1 + 0.01 * np.sin(2 * np.pi * t / (rng.uniform(3, 5) * fps)))

    f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
    return Behaviour(
        yaw=f32(yaw), pitch=f32(pitch), roll=f32(roll), dx=f32(dx), dy=f32(dy), scale=f32(scale),
        eye_open=f32(np.clip(eye_open, 0, 1)), mouth_open=f32(np.clip(mouth_open, 0, 1)),
        gaze_x=f32(np.clip(gaze_x, -1, 1)), gaze_y=f32(np.clip(gaze_y, -1, 1)),
    )  # fmt: skip


# ------------------------------------------------------------------- dynamics set

DYNAMICS_WIDTHS_S: tuple[float, ...] = (0.2, 0.4, 0.8, 1.6)
"""Level ``k``'s time scale in seconds (the dynamics set): the width of the window that
smooths the eyelid, gaze and mouth processes. Level 0 is restless (blinks, glances and
mouth movements come about eight times as often as at level 3), level 3 is steady."""
DYNAMICS_HEAD_WIDTHS_S: tuple[float, float] = (0.8, 1.6)
"""Range (log-uniform) of the head sway's time scale, the same for every level: the head
drifts slowly at every level, so how much the whole image changes says little about the
level (a head sway as fast as the fast levels hides their faces' motion even from a probe
told where the eyes and mouth are)."""
DYNAMICS_SWAY = 0.5
"""Amplitude of the head sway (1: about ±6° of yaw and a pixel or two of drift at 64²)."""


def smoothing_taps(width: int) -> np.ndarray:
    """A Hann window of ``width`` taps scaled to unit L2 norm: white N(0, 1) noise filtered
    with it is N(0, 1) in every frame, whatever the width."""
    w = np.hanning(width + 2)[1:-1]
    return w / np.sqrt(np.sum(w * w))


def unit_process(noise: np.ndarray, width: int, num_frames: int) -> np.ndarray:
    """``[..., num_frames]`` stationary Gaussian process with an N(0, 1) marginal in every
    frame and a time scale of ``width`` frames: the last ``num_frames + width - 1`` samples
    of ``noise`` (white, N(0, 1), ``[..., L]``) filtered with :func:`smoothing_taps`
    (``valid`` convolution: every frame sees a full window)."""
    taps = smoothing_taps(width)
    tail = noise[..., noise.shape[-1] - (num_frames + width - 1) :]
    return np.apply_along_axis(lambda x: np.convolve(x, taps, mode="valid"), -1, tail)


def sample_dynamics(
    level: int, num_frames: int, fps: float, pose_rng: np.random.Generator, face_rng: np.random.Generator
) -> Behaviour:
    """A clip's motion for tempo ``level`` (0–3) of the dynamics set.

    The level sets one thing: the time scale (:data:`DYNAMICS_WIDTHS_S`) of four facial
    processes, each an N(0, 1) Gaussian process (:func:`unit_process`) mapped through a
    fixed function that does not depend on the level:

    - eyelids: they open wide where the eyelid process is low and shut where it passes 1.3
      (about 10 % of the frames), squinting in between, times a resting opening;
    - gaze: the irises follow two processes sideways and up/down;
    - mouth: it opens (as in speaking) where its process passes -0.5.

    So every frame's eyelid, gaze and mouth values have the same distribution at every
    level (and so do time averages); only how fast they change differs: short blinks and
    darting glances at level 0, slow closures and drifts at level 3. The head's pose,
    place, size and slow sway, and the resting eyelid opening, come from ``pose_rng`` and do
    not depend on the level; the sway's time scale is drawn from
    :data:`DYNAMICS_HEAD_WIDTHS_S` at every level. Both generators are consumed the same way
    at every level.
    """
    if not 0 <= level < len(DYNAMICS_WIDTHS_S):
        raise ValueError(f"level must be in [0, {len(DYNAMICS_WIDTHS_S)}), got {level}")
    T = num_frames
    widest = max(2, round(max(DYNAMICS_WIDTHS_S + DYNAMICS_HEAD_WIDTHS_S) * fps))

    # Pose: a static offset per clip plus a slow sway, none of it tied to the level.
    lo, hi = (np.log(max(1.0, s * fps)) for s in DYNAMICS_HEAD_WIDTHS_S)
    head_width = int(round(np.exp(pose_rng.uniform(lo, hi))))
    sway = unit_process(pose_rng.standard_normal((5, T + widest - 1)), max(1, head_width), T)
    a = DYNAMICS_SWAY
    yaw = pose_rng.uniform(-0.15, 0.15) + 0.1 * a * sway[0]
    pitch = pose_rng.uniform(-0.08, 0.08) + 0.05 * a * sway[1]
    roll = pose_rng.uniform(-0.1, 0.1) + 0.03 * a * sway[2]
    # Framed like a face crop (the face fills most of the frame), at a place and size of its own.
    dx = pose_rng.uniform(-0.12, 0.12) + 0.03 * a * sway[3]
    dy = pose_rng.uniform(-0.08, 0.06) + 0.02 * a * sway[4]
    scale = pose_rng.uniform(1.1, 1.35) * np.ones(T)
    rest = pose_rng.uniform(0.75, 1.0)

    # Face: the level's time scale, the same per-frame distribution at every level.
    width = max(1, round(DYNAMICS_WIDTHS_S[level] * fps))
    blink, gx, gy, mouth = unit_process(face_rng.standard_normal((4, T + widest - 1)), width, T)
    eye_open = rest * np.clip(1 - 0.5 * (blink + 0.6), 0.05, 1)
    mouth_open = np.clip(0.3 * (mouth + 0.5), 0, 1)

    f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
    return Behaviour(
        yaw=f32(yaw),
        pitch=f32(pitch),
        roll=f32(roll),
        dx=f32(dx),
        dy=f32(dy),
        scale=f32(scale),
        eye_open=f32(eye_open),
        mouth_open=f32(mouth_open),
        gaze_x=f32(np.clip(0.8 * gx, -1, 1)),
        gaze_y=f32(np.clip(0.6 * gy, -1, 1)),
    )


# ------------------------------------------------------------------------- drawing


def _ellipse(u: np.ndarray, v: np.ndarray, a, b, px: float) -> np.ndarray:
    """Coverage (0–1) of the ellipse ``(u/a)² + (v/b)² <= 1`` with a one-pixel soft edge.

    ``u``, ``v``: offsets from the centre; ``px``: the pixel size in the same units.
    The signed distance is the first-order estimate ``(1 - q) / |∇q|``.
    """
    ua, vb = u / a, v / b
    q = ua * ua + vb * vb
    grad = 2 * np.sqrt((ua / a) ** 2 + (vb / b) ** 2) + 1e-6
    return np.clip((1 - q) / (grad * px) + 0.5, 0, 1)


def _polygon(u: np.ndarray, v: np.ndarray, corners: list[tuple], px: float) -> np.ndarray:
    """Coverage of a convex polygon (corners in either winding) with a soft edge."""
    area2 = sum(corners[i - 1][0] * corners[i][1] - corners[i][0] * corners[i - 1][1] for i in range(len(corners)))
    sign = np.sign(area2)
    dist = None
    for (u0, v0), (u1, v1) in zip(corners, corners[1:] + corners[:1]):
        eu, ev = u1 - u0, v1 - v0
        d = sign * (eu * (v - v0) - ev * (u - u0)) / (np.sqrt(eu * eu + ev * ev) + 1e-9)
        dist = d if dist is None else np.minimum(dist, d)
    return np.clip(dist / px + 0.5, 0, 1)


def _upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of ``[k, k, C]`` to ``[size, size, C]``."""
    k = grid.shape[0]
    pos = np.linspace(0, k - 1, size)
    i0 = np.minimum(pos.astype(int), k - 2)
    w = (pos - i0)[:, None, None]
    rows = grid[i0] * (1 - w) + grid[i0 + 1] * w
    w = w[:, 0][None, :, None]
    return rows[:, i0] * (1 - w) + rows[:, i0 + 1] * w


def _background(look: Appearance, size: int) -> np.ndarray:
    """The static backdrop: ``float32 [H, W, 3]``."""
    rng = np.random.default_rng(look.background_seed)
    c0, c1 = look.background_colours
    y, x = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    if look.background == "gradient":
        w = np.clip(0.5 + 0.5 * (y * np.cos(rng.uniform(0, np.pi)) + x * np.sin(rng.uniform(0, np.pi))), 0, 1)
    elif look.background == "noise":
        w = _upsample(rng.random((int(rng.integers(3, 8)),) * 2 + (1,)), size)[..., 0]
    elif look.background == "stripes":
        angle, freq = rng.uniform(0, np.pi), rng.uniform(2, 7)
        w = 0.5 + 0.5 * np.tanh(3 * np.sin(np.pi * freq * (x * np.cos(angle) + y * np.sin(angle)) + rng.uniform(0, 6)))
    else:  # a wall with a bright window
        x0, y0 = rng.uniform(-1, 0.3, 2)
        w = ((x > x0) & (x < x0 + rng.uniform(0.4, 0.9)) & (y > y0) & (y < y0 + rng.uniform(0.4, 0.9))).astype(float)
        c1 = np.array([235, 240, 245], np.float32)
    img = c0 * (1 - w[..., None]) + c1 * w[..., None]
    img += rng.normal(0, 4, (size, size, 1)) * rng.uniform(0.3, 2.5)  # paper, plaster, sensor grain
    return img.astype(np.float32)


class RenderedClip(NamedTuple):
    """A drawn clip.

    - ``frames``: ``uint8 [T, H, W, 3]`` RGB;
    - ``regions``: ``uint8 [T, H, W]`` :class:`fmae.face.FaceRegion` ids;
    - ``landmarks``: ``float32 [T, 4, 2]`` pixel (x, y) of the left eye, right eye,
      nose tip and mouth centre (left = the subject's, on the image's right);
    - ``boxes``: ``float32 [T, 4]`` pixel (x0, y0, x1, y1) around the head ellipse,
      not clipped to the frame.
    """

    frames: np.ndarray
    regions: np.ndarray
    landmarks: np.ndarray
    boxes: np.ndarray


def render_clip(look: Appearance, motion: Behaviour, size: int, rng: np.random.Generator) -> RenderedClip:
    """Draw a subject acting out a behaviour, with lighting and sensor noise from ``rng``."""
    T = len(motion.yaw)
    px = 2.0 / size  # one pixel in frame units
    coords = (np.arange(size, dtype=np.float32) + 0.5) * px - 1
    Y, X = coords[None, :, None], coords[None, None, :]  # [1, H, 1], [1, 1, W]
    col = lambda a: np.asarray(a, np.float32)[:, None, None]  # noqa: E731  per-frame value → [T, 1, 1]

    img = np.broadcast_to(_background(look, size), (T, size, size, 3)).copy()
    reg = np.full((T, size, size), FaceRegion.BACKGROUND, np.uint8)

    def paint(alpha: np.ndarray, colour, region: FaceRegion | None = None) -> None:
        a = np.broadcast_to(alpha, reg.shape)
        # Blend only inside the box the shape touches in any frame: most shapes are small.
        rows, cols = np.flatnonzero(a.any(axis=(0, 2))), np.flatnonzero(a.any(axis=(0, 1)))
        if rows.size == 0:
            return
        box = (slice(None), slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        a = a[box]
        if np.ndim(colour) > 1:
            colour = np.broadcast_to(colour, img.shape)[box]
        img[box] += a[..., None] * (colour - img[box])
        if region is not None:
            reg[box][a >= 0.5] = region

    A, B = look.head[0] * motion.scale, look.head[1] * motion.scale  # [T]
    cx, cy = motion.dx, motion.dy
    cos_r, sin_r = np.cos(motion.roll), np.sin(motion.roll)
    # Head-local axes: u along the face's width, v down its height (rotated by roll).
    gx, gy = X - col(cx), Y - col(cy)
    u, v = col(cos_r) * gx + col(sin_r) * gy, col(-sin_r) * gx + col(cos_r) * gy
    Ac, Bc = col(A), col(B)

    light = rng.normal(0, 1, 2)
    light *= rng.uniform(0.1, 0.3) / np.linalg.norm(light)
    shade = 1 + light[0] * u / Ac + light[1] * v / Bc  # [T, H, W]: light falls from one side

    # Behind the head: long hair, the neck, the shoulders (clothes count as background).
    style = look.hair_style
    if style in ("long", "bob", "curly"):
        down, width, height = {"long": (0.4, 1.12, 1.2), "bob": (0.08, 1.18, 0.98), "curly": (0.1, 1.3, 1.1)}[style]
        paint(_ellipse(u, v - down * Bc, width * Ac, height * Bc, px), look.hair * 0.85, FaceRegion.HAIR)
    neck = _polygon(gx, gy, [(-0.4 * Ac, 0.0), (0.4 * Ac, 0.0), (0.45 * Ac, 3.0), (-0.45 * Ac, 3.0)], px)
    paint(neck, look.skin * 0.78, FaceRegion.SKIN)
    paint(_ellipse(gx, gy - (Bc + 0.62), 1.9 * Ac, 0.6, px), look.clothes, FaceRegion.BACKGROUND)

    # Hair over the head; then the face, which shifts towards the turn (yaw) while the
    # silhouette stays, so a turned head shows hair on the far side.
    volume = {"short": 0.05, "long": 0.07, "bob": 0.1, "curly": 0.22, "bun": 0.05}[style]
    if style == "curly":
        angle = np.arctan2(v / Bc, u / Ac)
        radius = np.sqrt((u / Ac) ** 2 + (v / Bc) ** 2)
        edge = 1 + volume + 0.06 * np.sin(9 * angle + look.curl_phase)
        hair = np.clip((edge - radius) * Ac / px + 0.5, 0, 1)
    else:
        hair = _ellipse(u, v + 0.6 * volume * Bc, (1 + volume) * Ac, (1 + 0.8 * volume) * Bc, px)
    if style == "bun":
        hair = np.maximum(hair, _ellipse(u, v + 1.05 * Bc, 0.38 * Ac, 0.3 * Bc, px))
    paint(hair, look.hair, FaceRegion.HAIR)

    yaw, pitch = motion.yaw, motion.pitch
    head = _ellipse(u, v, Ac, Bc, px)
    u_face = col(0.55 * A * np.sin(yaw))
    face = _ellipse(u - u_face, v, col(0.92 * A * (0.55 + 0.45 * np.cos(yaw))), 0.97 * Bc, px)
    rel = (u - u_face) / Ac
    hairline = Bc * (-look.forehead + 0.5 * rel * rel + look.parting * rel) + col(0.6 * B * np.sin(pitch))
    below = np.clip((v - hairline) / px + 0.5, 0, 1)
    skin = np.minimum(np.minimum(head, face), below)
    rim = 1 - 0.15 * np.clip((u / Ac) ** 2 + (v / Bc) ** 2, 0, 1)  # rounder look: darker towards the edge
    paint(skin, (look.skin * (shade * rim)[..., None]).clip(0, 255), FaceRegion.SKIN)

    def place(longitude: float, latitude: float, depth: float = 1.0):
        """Where a point of the face surface lands (u, v) and how foreshortened it is."""
        lon, lat = longitude + yaw, latitude + pitch
        return 0.95 * A * depth * np.sin(lon), 0.95 * B * np.sin(lat), np.cos(lon), np.cos(lat)

    # Eyes: the subject's left eye sits on the image's right (+u).
    ew0, eh0 = 0.24 * A, 0.11 * A
    landmarks = np.zeros((T, 4, 2), np.float32)
    for k, (region, side) in enumerate(((FaceRegion.LEFT_EYE, 1.0), (FaceRegion.RIGHT_EYE, -1.0))):
        ue, ve, fu, fv = place(side * 0.43, -0.1)
        visible = col(np.clip((fu - 0.15) / 0.15, 0, 1))
        ew, eh = ew0 * np.maximum(fu, 0.05), eh0 * np.maximum(fv, 0.3)
        du, dv = u - col(ue), v - col(ve)
        paint(_ellipse(du, dv + col(1.9 * eh), col(1.15 * ew), col(0.28 * eh0), px) * visible * head, look.hair * 0.8)
        almond = _ellipse(du, dv, col(ew), col(eh), px) * visible * head
        paint(almond, look.skin * 0.85, region)
        opening = eh * motion.eye_open
        paint(_ellipse(du, dv, col(0.97 * ew), col(opening + 0.9 * px), px) * almond, np.float32([40, 30, 30]))
        sclera = _ellipse(du, dv, col(0.92 * ew), col(np.maximum(opening, 1e-3)), px) * almond
        paint(sclera, np.float32([235, 235, 228]))
        iu, iv = du - col(0.45 * ew * motion.gaze_x), dv - col(0.3 * eh * motion.gaze_y)
        paint(np.minimum(_ellipse(iu, iv, col(0.5 * eh0), col(0.5 * eh0), px), sclera), look.iris)
        paint(np.minimum(_ellipse(iu, iv, col(0.22 * eh0), col(0.22 * eh0), px), sclera), np.float32([15, 10, 10]))
        landmarks[:, k] = np.stack([ue, ve], -1)

    # Nose: a bridge-to-tip wedge and a round tip; the tip stands out, so it turns further.
    ub, vb, _, _ = place(0.0, 0.02)
    ut, vt, fu, _ = place(0.0, 0.3, depth=1.25)
    nw = 0.17 * A * (0.7 + 0.3 * fu)
    nu, nv = u - col(ut), v - col(vt)
    wedge = _polygon(
        u,
        v,
        [
            (col(ub - 0.05 * A), col(vb)),
            (col(ub + 0.05 * A), col(vb)),
            (col(ut + nw), col(vt)),
            (col(ut - nw), col(vt)),
        ],
        px,
    )
    tip = _ellipse(nu, nv, col(nw), col(0.5 * nw), px)
    paint(np.maximum(wedge, tip) * head, (look.skin * 0.88 * shade[..., None]).clip(0, 255), FaceRegion.NOSE)
    for side in (-1.0, 1.0):
        paint(
            _ellipse(nu - col(side * 0.45 * nw), nv - col(0.2 * nw), col(0.22 * nw), col(0.14 * nw), px) * head,
            look.skin * 0.4,
        )
    landmarks[:, 2] = np.stack([ut, vt], -1)

    # Mouth: lips, and a dark opening from a closed line to a yawn.
    um, vm, fu, fv = place(0.0, 0.62, depth=1.05)
    vm = vm + 0.06 * B * motion.mouth_open  # a yawn drops the jaw, the upper lip stays
    mw = 0.3 * A * (0.55 + 0.45 * fu) * (1 - 0.2 * motion.mouth_open)
    mh = (0.07 * B + 0.18 * B * motion.mouth_open) * np.maximum(fv, 0.4)
    mu, mv = u - col(um), v - col(vm)
    lips = _ellipse(mu, mv, col(mw), col(mh), px) * head
    paint(lips, look.lips, FaceRegion.MOUTH)
    inner = np.maximum(0.15 * B * motion.mouth_open * np.maximum(fv, 0.4), 0.6 * px)
    paint(_ellipse(mu, mv, col(0.8 * mw), col(inner), px) * lips, np.float32([50, 20, 25]))
    landmarks[:, 3] = np.stack([um, vm], -1)

    # Global light: a per-clip gain and colour cast with a little flicker, then noise.
    gain = rng.uniform(0.75, 1.15) * rng.uniform(0.93, 1.07, 3) * (1 + rng.normal(0, 0.01, (T, 1)))
    img *= gain.astype(np.float32)[:, None, None, :]
    img += rng.normal(0, rng.uniform(1.0, 3.0), (T, size, size, 1)).astype(np.float32)  # sensor noise, mostly in luma

    # Head-local landmarks back to image pixels.
    lu, lv = landmarks[..., 0], landmarks[..., 1]
    cr, sr = cos_r[:, None], sin_r[:, None]
    to_px = lambda z: (z + 1) / px - 0.5  # noqa: E731
    landmarks = np.stack([to_px(cx[:, None] + cr * lu - sr * lv), to_px(cy[:, None] + sr * lu + cr * lv)], -1)
    ex, ey = np.hypot(A * cos_r, B * sin_r), np.hypot(A * sin_r, B * cos_r)
    boxes = np.stack([to_px(cx - ex), to_px(cy - ey), to_px(cx + ex), to_px(cy + ey)], -1)
    return RenderedClip(
        np.clip(img + 0.5, 0, 255).astype(np.uint8), reg, landmarks.astype(np.float32), boxes.astype(np.float32)
    )


# ------------------------------------------------------------------------ data set


class GeneratedClip(NamedTuple):
    """One clip of the set: its ids, split, engagement level, motion and drawing."""

    subject_id: str
    clip_id: str
    split: str
    engagement: int
    behaviour: Behaviour
    rendered: RenderedClip


def generate_clip(config: SyntheticConfig, subject: int, clip: int) -> GeneratedClip:
    """Clip ``clip`` of subject ``subject``, the same for the same config on any machine
    with the same numpy."""
    if not (0 <= subject < config.num_subjects and 0 <= clip < config.clips_per_subject):
        raise IndexError(
            f"no clip ({subject}, {clip}) in {config.num_subjects} subjects × {config.clips_per_subject} clips"
        )
    look = sample_appearance(np.random.default_rng([config.seed, 0, subject]))
    rng = np.random.default_rng([config.seed, 1, subject, clip])
    level = config.engagement(subject, clip)
    if config.dynamics:  # pose and face motion from streams of their own: rng (light, noise) never sees the level
        motion = sample_dynamics(
            level,
            config.num_frames,
            config.fps,
            np.random.default_rng([config.seed, 3, subject, clip]),
            np.random.default_rng([config.seed, 4, subject, clip]),
        )
    else:
        motion = sample_behaviour(level, config.num_frames, config.fps, rng)
    rendered = render_clip(look, motion, config.size, rng)
    split = config.subject_splits()[subject]
    return GeneratedClip(subject_id(subject), clip_id(subject, clip), split, level, motion, rendered)


class SegmentedVideo(NamedTuple):
    """One subject whose engagement changes in known segments (:func:`render_segments`)."""

    rendered: RenderedClip
    levels: np.ndarray
    """``int64 [T]``: the engagement level acted out in each frame."""
    fps: int


def render_segments(
    levels: Sequence[int], seconds_per_segment: float, size: int = 112, seed: int = 0, fps: int = 15
) -> SegmentedVideo:
    """One long video of one subject acting out engagement ``levels[0]``, then ``levels[1]``, …,
    each for ``seconds_per_segment`` seconds (rounded to whole frames): a recording whose
    ground truth over time is known, for :mod:`fmae.predict` and its tests.

    Each segment's motion is drawn with :func:`sample_behaviour` for its level; the whole
    video is drawn in one :func:`render_clip`, so the look, light and noise stay the same
    across segment borders and only the behaviour changes. The same arguments give the
    same video (on the same numpy).
    """
    if not levels:
        raise ValueError("levels must name at least one segment")
    if any(not 0 <= int(level) < NUM_LEVELS for level in levels):
        raise ValueError(f"levels must be in [0, {NUM_LEVELS}), got {list(levels)}")
    if fps < 1:
        raise ValueError(f"fps must be >= 1, got {fps}")
    frames_per_segment = round(seconds_per_segment * fps)
    if frames_per_segment < 1:
        raise ValueError(f"seconds_per_segment {seconds_per_segment} at {fps} fps is less than one frame")
    if size < 16 or size % 2:
        raise ValueError(f"size must be even and >= 16 (4:2:0 video), got {size}")
    look = sample_appearance(np.random.default_rng([seed, 0]))
    rng = np.random.default_rng([seed, 1])
    parts = [sample_behaviour(int(level), frames_per_segment, fps, rng) for level in levels]
    motion = Behaviour(
        **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(Behaviour)}
    )
    per_frame = np.repeat(np.asarray(levels, np.int64), frames_per_segment)
    return SegmentedVideo(render_clip(look, motion, size, rng), per_frame, fps)


def _label_row(clip: GeneratedClip, rng: np.random.Generator) -> list:
    # The other three affects loosely follow engagement; nothing reads them but DAiSEE has them.
    e = clip.engagement
    boredom = int(np.clip(3 - e - rng.integers(0, 2), 0, 3))
    confusion = int(rng.integers(0, 2)) if e in (1, 2) else 0
    frustration = int(rng.integers(0, 2)) if e == 0 else 0
    return [f"{clip.clip_id}.avi", boredom, e, confusion, frustration]


def write_dataset(out: str | Path, config: SyntheticConfig) -> dict:
    """Write every clip, the label CSVs and ``manifest.json`` into ``out``; return the manifest.

    The manifest is written last, so its presence marks a finished set.
    """
    out = Path(out)
    rows: dict[str, list] = {s: [] for s in SPLITS}
    clips = []
    for subject in range(config.num_subjects):
        for c in range(config.clips_per_subject):
            g = generate_clip(config, subject, c)
            folder = out / "DataSet" / g.split / g.subject_id / g.clip_id
            folder.mkdir(parents=True)
            video = folder / f"{g.clip_id}.avi"
            write_video(video, g.rendered.frames, config.fps, config.qscale)
            save_region_maps(
                region_map_path(video), g.rendered.regions, landmarks=g.rendered.landmarks, boxes=g.rendered.boxes
            )
            rows[g.split].append(_label_row(g, np.random.default_rng([config.seed, 2, subject, c])))
            clips.append(
                {
                    "split": g.split,
                    "subject": g.subject_id,
                    "clip": g.clip_id,
                    "engagement": g.engagement,
                    "video": video.relative_to(out).as_posix(),
                }
            )
    (out / "Labels").mkdir()
    for split in SPLITS:
        with label_file(out, split).open("w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(LABEL_COLUMNS)
            writer.writerows(rows[split])
    manifest = {
        "generator_version": GENERATOR_VERSION,
        "digest": config.digest(),
        "config": dataclasses.asdict(config),
        "clips": clips,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def default_root() -> Path:
    """``$FMAE_DATA`` if set, else ``$XDG_CACHE_HOME/fmae/synthetic`` (``~/.cache/fmae/synthetic``)."""
    if os.environ.get("FMAE_DATA"):
        return Path(os.environ["FMAE_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "fmae" / "synthetic"


def is_complete(path: str | Path, config: SyntheticConfig) -> bool:
    """Whether ``path`` holds a finished set for ``config``: its manifest has the config's
    digest and every video and region map it lists exists."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("digest") != config.digest():
        return False
    return all(
        (path / c["video"]).is_file() and region_map_path(path / c["video"]).is_file() for c in manifest["clips"]
    )


def _partial_prefix(final: Path) -> str:
    return f".{final.name}.partial-"


def _remove_abandoned(final: Path) -> None:
    """Delete half-written sets whose writing process is gone (killed mid-way)."""
    prefix = _partial_prefix(final)
    for tmp in final.parent.glob(prefix + "*"):
        pid = tmp.name[len(prefix) :].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def ensure_synthetic_daisee(root: str | Path | None = None, config: SyntheticConfig | None = None) -> Path:
    """The synthetic set for ``config`` (default :func:`pretraining_set`), generated on first use.

    Returns ``<root>/daisee-<config.digest()>``, a DAiSEE-layout folder (see
    :mod:`fmae.data.clips`) with a ``manifest.json``; ``root`` defaults to
    :func:`default_root`. The set is written into a hidden temporary folder beside it
    and renamed into place only when finished, so an interrupted run never looks done;
    leftovers of killed runs are removed. Concurrent callers may both generate; the
    first rename wins and the other's copy is discarded.
    """
    config = config or pretraining_set()
    base = Path(root).expanduser() if root is not None else default_root()
    final = base / f"daisee-{config.digest()}"
    if is_complete(final, config):
        return final
    if final.exists():
        raise FileExistsError(
            f"{final} exists but is not a complete synthetic set for this config; delete it to regenerate"
        )
    base.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(final)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_partial_prefix(final)}{os.getpid()}-", dir=base))
    n = config.num_subjects * config.clips_per_subject
    log.info(
        "generating %d synthetic clips (%d frames, %dx%d) into %s",
        n,
        config.num_frames,
        config.size,
        config.size,
        final,
    )
    try:
        write_dataset(tmp, config)
        try:
            tmp.rename(final)
        except OSError:
            if not is_complete(final, config):
                raise
            shutil.rmtree(tmp)  # another process finished first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
