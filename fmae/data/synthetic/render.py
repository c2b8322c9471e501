"""The renderer: a subject's look acting out a behaviour, drawn as video frames with a
face-region map, landmarks and head boxes (:func:`render_clip`).

Everything is drawn with numpy over whole ``[T, H, W]`` arrays: ellipses and convex
polygons with one-pixel soft edges (:mod:`fmae.data.synthetic.shapes`), composited back to
front, each shape also writing its :class:`fmae.face.FaceRegion` id into the region map
where it covers at least half a pixel. Eyebrows and the neck count as skin; clothes count
as background.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from fmae.data.synthetic.appearance import Appearance
from fmae.data.synthetic.behaviour import Behaviour
from fmae.data.synthetic.shapes import ellipse, polygon, upsample
from fmae.face.regions import FaceRegion


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
    """Draw a subject acting out a behaviour, with lighting and sensor noise from ``rng``.

    Back to front: the backdrop, what is behind the head (long hair, neck, shoulders), the
    head (hair, face), the eyes, the nose and the mouth; then the light and the noise over
    the whole frame. ``rng`` is drawn from twice, in this order: the light's direction
    before anything is painted, the global light and the noise after.
    """
    head = _head_pose(look, motion, size)
    canvas = _Canvas(_background(look, size), len(motion.yaw), size)
    shade = _side_light(head, rng)
    _paint_behind_head(canvas, look, head)
    inside = _paint_head(canvas, look, head, shade)
    points = [
        *_paint_eyes(canvas, look, motion, head, inside),
        _paint_nose(canvas, look, head, inside, shade),
        _paint_mouth(canvas, look, motion, head, inside),
    ]
    _global_light_and_noise(canvas.img, rng)
    landmarks, boxes = _to_pixels(head, np.stack(points, 1).astype(np.float32))
    return RenderedClip(np.clip(canvas.img + 0.5, 0, 255).astype(np.uint8), canvas.reg, landmarks, boxes)


# --------------------------------------------------------------------- the canvas


def _col(a) -> np.ndarray:
    """A per-frame value ``[T]`` as ``float32 [T, 1, 1]``, to broadcast over the frames."""
    return np.asarray(a, np.float32)[:, None, None]


class _Canvas:
    """The frames being drawn (``float32 [T, H, W, 3]``, from the backdrop) and their region
    map (``uint8 [T, H, W]``, all background at first)."""

    def __init__(self, backdrop: np.ndarray, num_frames: int, size: int) -> None:
        self.img = np.broadcast_to(backdrop, (num_frames, size, size, 3)).copy()
        self.reg = np.full((num_frames, size, size), FaceRegion.BACKGROUND, np.uint8)

    def paint(self, alpha: np.ndarray, colour, region: FaceRegion | None = None) -> None:
        """Composite ``colour`` with coverage ``alpha`` over the frames; where it covers at
        least half a pixel, ``region`` (if given) labels the region map."""
        img, reg = self.img, self.reg
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


def _background(look: Appearance, size: int) -> np.ndarray:
    """The static backdrop: ``float32 [H, W, 3]``."""
    rng = np.random.default_rng(look.background_seed)
    c0, c1 = look.background_colours
    y, x = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    if look.background == "gradient":
        w = np.clip(0.5 + 0.5 * (y * np.cos(rng.uniform(0, np.pi)) + x * np.sin(rng.uniform(0, np.pi))), 0, 1)
    elif look.background == "noise":
        w = upsample(rng.random((int(rng.integers(3, 8)),) * 2 + (1,)), size)[..., 0]
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


# ----------------------------------------------------------------------- the head


@dataclass(frozen=True, eq=False)
class _HeadPose:
    """Where the head is in every frame, in frame units (the frame spans [-1, 1]).

    ``A``, ``B``: half width and height of the head ellipse, ``[T]`` (``Ac``, ``Bc``: the
    same as ``[T, 1, 1]``); ``cx``, ``cy``: its centre; ``gx``, ``gy``: every pixel's
    offset from the centre along the image's axes; ``u``, ``v``: the same along the head's
    axes (u along the face's width, v down its height, rotated by roll); ``px``: one pixel.
    """

    px: float
    A: np.ndarray
    B: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    cos_r: np.ndarray
    sin_r: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    gx: np.ndarray
    gy: np.ndarray
    u: np.ndarray
    v: np.ndarray
    Ac: np.ndarray
    Bc: np.ndarray

    def place(self, longitude: float, latitude: float, depth: float = 1.0):
        """Where a point of the face surface lands (u, v) and how foreshortened it is."""
        lon, lat = longitude + self.yaw, latitude + self.pitch
        return 0.95 * self.A * depth * np.sin(lon), 0.95 * self.B * np.sin(lat), np.cos(lon), np.cos(lat)


def _head_pose(look: Appearance, motion: Behaviour, size: int) -> _HeadPose:
    """The head's size, place and axes in every frame of ``motion``, on a ``size²`` grid."""
    px = 2.0 / size  # one pixel in frame units
    coords = (np.arange(size, dtype=np.float32) + 0.5) * px - 1
    Y, X = coords[None, :, None], coords[None, None, :]  # [1, H, 1], [1, 1, W]
    A, B = look.head[0] * motion.scale, look.head[1] * motion.scale  # [T]
    cx, cy = motion.dx, motion.dy
    cos_r, sin_r = np.cos(motion.roll), np.sin(motion.roll)
    gx, gy = X - _col(cx), Y - _col(cy)
    u, v = _col(cos_r) * gx + _col(sin_r) * gy, _col(-sin_r) * gx + _col(cos_r) * gy
    return _HeadPose(px, A, B, cx, cy, cos_r, sin_r, motion.yaw, motion.pitch, gx, gy, u, v, _col(A), _col(B))


def _side_light(head: _HeadPose, rng: np.random.Generator) -> np.ndarray:
    """``[T, H, W]`` shading factor: light falls on the head from one side (two draws of ``rng``)."""
    light = rng.normal(0, 1, 2)
    light *= rng.uniform(0.1, 0.3) / np.linalg.norm(light)
    return 1 + light[0] * head.u / head.Ac + light[1] * head.v / head.Bc


def _paint_behind_head(canvas: _Canvas, look: Appearance, head: _HeadPose) -> None:
    """Behind the head: long hair, the neck, the shoulders (clothes count as background)."""
    u, v, gx, gy, Ac, Bc, px = head.u, head.v, head.gx, head.gy, head.Ac, head.Bc, head.px
    style = look.hair_style
    if style in ("long", "bob", "curly"):
        down, width, height = {"long": (0.4, 1.12, 1.2), "bob": (0.08, 1.18, 0.98), "curly": (0.1, 1.3, 1.1)}[style]
        canvas.paint(ellipse(u, v - down * Bc, width * Ac, height * Bc, px), look.hair * 0.85, FaceRegion.HAIR)
    neck = polygon(gx, gy, [(-0.4 * Ac, 0.0), (0.4 * Ac, 0.0), (0.45 * Ac, 3.0), (-0.45 * Ac, 3.0)], px)
    canvas.paint(neck, look.skin * 0.78, FaceRegion.SKIN)
    canvas.paint(ellipse(gx, gy - (Bc + 0.62), 1.9 * Ac, 0.6, px), look.clothes, FaceRegion.BACKGROUND)


def _paint_head(canvas: _Canvas, look: Appearance, head: _HeadPose, shade: np.ndarray) -> np.ndarray:
    """Hair over the head; then the face, which shifts towards the turn (yaw) while the
    silhouette stays, so a turned head shows hair on the far side. Returns the head
    ellipse's coverage ``[T, H, W]``, which bounds the features drawn on the face."""
    u, v, A, B, Ac, Bc, px = head.u, head.v, head.A, head.B, head.Ac, head.Bc, head.px
    style = look.hair_style
    volume = {"short": 0.05, "long": 0.07, "bob": 0.1, "curly": 0.22, "bun": 0.05}[style]
    if style == "curly":
        angle = np.arctan2(v / Bc, u / Ac)
        radius = np.sqrt((u / Ac) ** 2 + (v / Bc) ** 2)
        edge = 1 + volume + 0.06 * np.sin(9 * angle + look.curl_phase)
        hair = np.clip((edge - radius) * Ac / px + 0.5, 0, 1)
    else:
        hair = ellipse(u, v + 0.6 * volume * Bc, (1 + volume) * Ac, (1 + 0.8 * volume) * Bc, px)
    if style == "bun":
        hair = np.maximum(hair, ellipse(u, v + 1.05 * Bc, 0.38 * Ac, 0.3 * Bc, px))
    canvas.paint(hair, look.hair, FaceRegion.HAIR)

    yaw, pitch = head.yaw, head.pitch
    inside = ellipse(u, v, Ac, Bc, px)
    u_face = _col(0.55 * A * np.sin(yaw))
    face = ellipse(u - u_face, v, _col(0.92 * A * (0.55 + 0.45 * np.cos(yaw))), 0.97 * Bc, px)
    rel = (u - u_face) / Ac
    hairline = Bc * (-look.forehead + 0.5 * rel * rel + look.parting * rel) + _col(0.6 * B * np.sin(pitch))
    below = np.clip((v - hairline) / px + 0.5, 0, 1)
    skin = np.minimum(np.minimum(inside, face), below)
    rim = 1 - 0.15 * np.clip((u / Ac) ** 2 + (v / Bc) ** 2, 0, 1)  # rounder look: darker towards the edge
    canvas.paint(skin, (look.skin * (shade * rim)[..., None]).clip(0, 255), FaceRegion.SKIN)
    return inside


# ------------------------------------------------------------------- the features


def _paint_eyes(
    canvas: _Canvas, look: Appearance, motion: Behaviour, head: _HeadPose, inside: np.ndarray
) -> list[np.ndarray]:
    """Brows, eyelids, whites, irises and pupils; the subject's left eye sits on the image's
    right (+u). Returns the head-local (u, v) ``[T, 2]`` of the left eye, then the right."""
    u, v, A, px = head.u, head.v, head.A, head.px
    ew0, eh0 = 0.24 * A, 0.11 * A
    points = []
    for region, side in ((FaceRegion.LEFT_EYE, 1.0), (FaceRegion.RIGHT_EYE, -1.0)):
        ue, ve, fu, fv = head.place(side * 0.43, -0.1)
        visible = _col(np.clip((fu - 0.15) / 0.15, 0, 1))
        ew, eh = ew0 * np.maximum(fu, 0.05), eh0 * np.maximum(fv, 0.3)
        du, dv = u - _col(ue), v - _col(ve)
        brow = ellipse(du, dv + _col(1.9 * eh), _col(1.15 * ew), _col(0.28 * eh0), px)
        canvas.paint(brow * visible * inside, look.hair * 0.8)
        almond = ellipse(du, dv, _col(ew), _col(eh), px) * visible * inside
        canvas.paint(almond, look.skin * 0.85, region)
        opening = eh * motion.eye_open
        canvas.paint(ellipse(du, dv, _col(0.97 * ew), _col(opening + 0.9 * px), px) * almond, np.float32([40, 30, 30]))
        sclera = ellipse(du, dv, _col(0.92 * ew), _col(np.maximum(opening, 1e-3)), px) * almond
        canvas.paint(sclera, np.float32([235, 235, 228]))
        iu, iv = du - _col(0.45 * ew * motion.gaze_x), dv - _col(0.3 * eh * motion.gaze_y)
        canvas.paint(np.minimum(ellipse(iu, iv, _col(0.5 * eh0), _col(0.5 * eh0), px), sclera), look.iris)
        pupil = ellipse(iu, iv, _col(0.22 * eh0), _col(0.22 * eh0), px)
        canvas.paint(np.minimum(pupil, sclera), np.float32([15, 10, 10]))
        points.append(np.stack([ue, ve], -1))
    return points


def _paint_nose(
    canvas: _Canvas, look: Appearance, head: _HeadPose, inside: np.ndarray, shade: np.ndarray
) -> np.ndarray:
    """A bridge-to-tip wedge and a round tip (the tip stands out, so it turns further), and
    the nostrils. Returns the tip's head-local (u, v) ``[T, 2]``."""
    u, v, A, px = head.u, head.v, head.A, head.px
    ub, vb, _, _ = head.place(0.0, 0.02)
    ut, vt, fu, _ = head.place(0.0, 0.3, depth=1.25)
    nw = 0.17 * A * (0.7 + 0.3 * fu)
    nu, nv = u - _col(ut), v - _col(vt)
    wedge = polygon(
        u,
        v,
        [
            (_col(ub - 0.05 * A), _col(vb)),
            (_col(ub + 0.05 * A), _col(vb)),
            (_col(ut + nw), _col(vt)),
            (_col(ut - nw), _col(vt)),
        ],
        px,
    )
    tip = ellipse(nu, nv, _col(nw), _col(0.5 * nw), px)
    canvas.paint(np.maximum(wedge, tip) * inside, (look.skin * 0.88 * shade[..., None]).clip(0, 255), FaceRegion.NOSE)
    for side in (-1.0, 1.0):
        canvas.paint(
            ellipse(nu - _col(side * 0.45 * nw), nv - _col(0.2 * nw), _col(0.22 * nw), _col(0.14 * nw), px) * inside,
            look.skin * 0.4,
        )
    return np.stack([ut, vt], -1)


def _paint_mouth(
    canvas: _Canvas, look: Appearance, motion: Behaviour, head: _HeadPose, inside: np.ndarray
) -> np.ndarray:
    """Lips, and a dark opening from a closed line to a yawn. Returns the mouth centre's
    head-local (u, v) ``[T, 2]``."""
    u, v, A, B, px = head.u, head.v, head.A, head.B, head.px
    um, vm, fu, fv = head.place(0.0, 0.62, depth=1.05)
    vm = vm + 0.06 * B * motion.mouth_open  # a yawn drops the jaw, the upper lip stays
    mw = 0.3 * A * (0.55 + 0.45 * fu) * (1 - 0.2 * motion.mouth_open)
    mh = (0.07 * B + 0.18 * B * motion.mouth_open) * np.maximum(fv, 0.4)
    mu, mv = u - _col(um), v - _col(vm)
    lips = ellipse(mu, mv, _col(mw), _col(mh), px) * inside
    canvas.paint(lips, look.lips, FaceRegion.MOUTH)
    opening = np.maximum(0.15 * B * motion.mouth_open * np.maximum(fv, 0.4), 0.6 * px)
    canvas.paint(ellipse(mu, mv, _col(0.8 * mw), _col(opening), px) * lips, np.float32([50, 20, 25]))
    return np.stack([um, vm], -1)


# ------------------------------------------------------------- the camera and output


def _global_light_and_noise(img: np.ndarray, rng: np.random.Generator) -> None:
    """In place on ``img`` ``[T, H, W, 3]``: a per-clip gain and colour cast with a little
    flicker, then sensor noise, mostly in luma."""
    T, size = img.shape[0], img.shape[1]
    gain = rng.uniform(0.75, 1.15) * rng.uniform(0.93, 1.07, 3) * (1 + rng.normal(0, 0.01, (T, 1)))
    img *= gain.astype(np.float32)[:, None, None, :]
    img += rng.normal(0, rng.uniform(1.0, 3.0), (T, size, size, 1)).astype(np.float32)


def _to_pixels(head: _HeadPose, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Head-local landmarks ``[T, K, 2]`` back to image pixels, and the head's boxes ``[T, 4]``
    in pixels (both ``float32``)."""
    A, B, cx, cy, cos_r, sin_r, px = head.A, head.B, head.cx, head.cy, head.cos_r, head.sin_r, head.px
    lu, lv = landmarks[..., 0], landmarks[..., 1]
    cr, sr = cos_r[:, None], sin_r[:, None]

    def to_px(z: np.ndarray) -> np.ndarray:
        return (z + 1) / px - 0.5

    landmarks = np.stack([to_px(cx[:, None] + cr * lu - sr * lv), to_px(cy[:, None] + sr * lu + cr * lv)], -1)
    ex, ey = np.hypot(A * cos_r, B * sin_r), np.hypot(A * sin_r, B * cos_r)
    boxes = np.stack([to_px(cx - ex), to_px(cy - ey), to_px(cx + ex), to_px(cy + ey)], -1)
    return landmarks.astype(np.float32), boxes.astype(np.float32)
