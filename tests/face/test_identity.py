"""The appearance descriptor: its parts checked against plain loops, the eye alignment against
known points, and what it must tell apart on real face photos (no face model involved)."""

import cv2
import numpy as np
import pytest

from fmae.face import identity
from fmae.face.identity import (
    ALIGNED_SIZE,
    DESCRIPTOR_DIM,
    EYE_LEFT_X,
    EYE_RIGHT_X,
    EYE_Y,
    align_face,
    describe_aligned,
    descriptor_distance,
    eye_centres,
    face_descriptor,
)


def _transitions(code: int) -> int:
    bits = [(code >> i) & 1 for i in range(8)]
    return sum(bits[i] != bits[(i + 1) % 8] for i in range(8))


def test_uniform_table_gives_each_uniform_pattern_its_own_code_and_the_rest_one():
    table = identity._UNIFORM
    uniform = [c for c in range(256) if _transitions(c) <= 2]
    assert len(uniform) == 58 and sorted(table[uniform].tolist()) == list(range(58))
    assert set(table[[c for c in range(256) if _transitions(c) > 2]].tolist()) == {58}


def test_lbp_matches_a_loop_over_pixels():
    gray = np.random.default_rng(0).integers(0, 256, (9, 11), dtype=np.uint8)
    got = identity._lbp(gray)
    offsets = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))
    for i in range(1, 8):
        for j in range(1, 10):
            code = sum(int(gray[i + dy, j + dx] >= gray[i, j]) << bit for bit, (dy, dx) in enumerate(offsets))
            assert got[i - 1, j - 1] == identity._UNIFORM[code]


def test_descriptor_is_a_unit_float32_vector_of_both_cues():
    crop = np.random.default_rng(1).integers(0, 256, (ALIGNED_SIZE, ALIGNED_SIZE, 3), dtype=np.uint8)
    d = describe_aligned(crop)
    assert d.dtype == np.float32 and d.shape == (DESCRIPTOR_DIM,)
    assert np.linalg.norm(d) == pytest.approx(1.0, abs=1e-5)
    colour = identity.HUE_BINS * identity.SAT_BINS
    assert np.linalg.norm(d[:colour]) == pytest.approx(np.sqrt(0.5), abs=1e-5)  # each cue weighs the same
    # A grey crop has no hue: the colour cue is one bin, the texture cue still works.
    grey = np.repeat(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    assert np.count_nonzero(describe_aligned(grey)[:colour]) == 1
    with pytest.raises(ValueError, match="square"):
        describe_aligned(crop[:, :40])


def test_eye_centres_of_facemesh_and_retinaface_points():
    mesh = np.zeros((478, 2), np.float32)
    mesh[[33, 133]] = [[10, 20], [20, 22]]  # the subject's right eye: image left
    mesh[[362, 263]] = [[40, 22], [50, 20]]
    np.testing.assert_allclose(eye_centres(mesh), [[15, 21], [45, 21]])
    five = np.array([[50, 20], [10, 21], [30, 40], [15, 60], [45, 60]], np.float32)  # eyes in either order
    np.testing.assert_allclose(eye_centres(five), [[10, 21], [50, 20]])
    assert eye_centres(np.zeros((68, 2))) is None
    with pytest.raises(ValueError, match=r"\[K, 2\]"):
        eye_centres(np.zeros(10))


def test_alignment_puts_the_eyes_where_it_says_whatever_the_roll_and_size():
    frame = np.zeros((200, 300, 3), np.uint8)
    centre, half, angle = np.array([170.0, 90.0]), 30.0, np.deg2rad(25)
    direction = np.array([np.cos(angle), np.sin(angle)])
    eyes = np.stack([centre - half * direction, centre + half * direction])
    for (x, y), colour in zip(eyes, ((255, 0, 0), (0, 255, 0))):
        cv2.circle(frame, (int(round(x)), int(round(y))), 3, colour, -1)
    five = np.concatenate([eyes, [[170, 130], [150, 150], [190, 150]]]).astype(np.float32)
    crop = align_face(frame, np.array([120, 40, 220, 160]), five, size=100)
    for channel, want_x in ((0, EYE_LEFT_X), (1, EYE_RIGHT_X)):
        ys, xs = np.nonzero(crop[..., channel] > 128)
        assert abs(xs.mean() + 0.5 - want_x * 100) < 1.5 and abs(ys.mean() + 0.5 - EYE_Y * 100) < 1.5


def _scene(photo: np.ndarray, x: int, y: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The photo scaled and pasted on a grey wall: ``(frame uint8 [240, 360, 3], box float [4])``."""
    small = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    frame = np.full((240, 360, 3), 120, np.uint8)
    frame[y : y + small.shape[0], x : x + small.shape[1]] = small
    h, w = small.shape[:2]
    return frame, np.array([x + 0.2 * w, y + 0.15 * h, x + 0.8 * w, y + 0.85 * h], np.float32)


def test_the_same_face_moved_and_scaled_stays_close_and_another_face_is_far():
    """Two real portraits (matplotlib's Grace Hopper, scikit-image's astronaut), cut by their
    boxes (landmarks that :func:`eye_centres` does not know: no alignment on the eyes)."""
    from matplotlib import cbook

    skimage_data = pytest.importorskip("skimage.data")
    hopper = cv2.cvtColor(cv2.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)), cv2.COLOR_BGR2RGB)
    hopper = cv2.resize(hopper, (150, 176), interpolation=cv2.INTER_AREA)
    astronaut = cv2.resize(skimage_data.astronaut()[20:280, 100:320], (150, 176), interpolation=cv2.INTER_AREA)
    none = np.zeros((1, 2), np.float32)
    a = face_descriptor(*_scene(hopper, 20, 10, 1.0), none)
    a_moved = face_descriptor(*_scene(hopper, 180, 40, 1.1), none)
    b = face_descriptor(*_scene(astronaut, 20, 10, 1.0), none)
    assert descriptor_distance(a, a_moved) < 0.25  # measured 0.19: rescaling resamples the texture
    assert descriptor_distance(a, b) > 0.55  # measured 0.66; TrackerConfig links and merges up to 0.45
    np.testing.assert_allclose(descriptor_distance(np.stack([a, b]), a), [0.0, descriptor_distance(a, b)], atol=1e-6)
