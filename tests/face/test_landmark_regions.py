"""Region maps from MediaPipe landmarks, on real face photos that packages ship."""

import numpy as np
import pytest
from PIL import Image

from fmae.face import FaceRegion, create_backend
from fmae.face import landmark_regions as lr
from fmae.face.tracking import crop_frame, crop_windows, to_crop_coords

mp = pytest.importorskip("mediapipe")

SIZE = 224
LEFT_IRIS_CENTRE, RIGHT_IRIS_CENTRE = 473, 468  # refine_landmarks: the subject's left iris is 473..477


def grace_hopper() -> np.ndarray:
    from matplotlib import cbook

    return np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB"))


def astronaut() -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    return data.astronaut()


@pytest.fixture(scope="module")
def backend():
    with create_backend("mediapipe") as b:
        yield b


def _parse(backend, image):
    """Detect, crop and parse a still: ``(crop, crop landmarks [478, 2], regions [S, S])``."""
    backend.start_video()
    det = backend.detect(image)
    assert det is not None and det.landmarks.shape == (478, 2)
    window = crop_windows(det.box[None], image.shape[:2], margin=0.25)[0]
    crop = crop_frame(image, window, SIZE)
    lm = to_crop_coords(det.landmarks, window, SIZE)
    return crop, lm, backend.parse(crop, lm)


def _at(regions, point):
    x, y = np.floor(point).astype(int)
    return FaceRegion(regions[y, x])


def _centroid(regions, region):
    ys, xs = np.nonzero(regions == region)
    assert len(xs) > 0, f"no {region.name} pixels"
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5])


@pytest.mark.parametrize("photo", [grace_hopper, astronaut])
def test_regions_land_where_the_landmarks_say(backend, photo):
    _, lm, regions = _parse(backend, photo())
    assert regions.shape == (SIZE, SIZE) and regions.dtype == np.uint8
    # The iris centres are not vertices of the eye contours: an independent check that
    # each eye polygon is the right one, on the subject's side.
    assert _at(regions, lm[LEFT_IRIS_CENTRE]) == FaceRegion.LEFT_EYE
    assert _at(regions, lm[RIGHT_IRIS_CENTRE]) == FaceRegion.RIGHT_EYE
    assert lm[LEFT_IRIS_CENTRE][0] > lm[RIGHT_IRIS_CENTRE][0]  # the subject's left eye is on the image's right
    left, right = _centroid(regions, FaceRegion.LEFT_EYE), _centroid(regions, FaceRegion.RIGHT_EYE)
    assert left[0] > right[0]
    np.testing.assert_allclose(left, lm[list(lr.LEFT_EYE)].mean(0), atol=3)
    # Inner-lip midpoints (not outer-lip vertices) are in the mouth.
    assert _at(regions, 0.5 * (lm[13] + lm[14])) == FaceRegion.MOUTH
    mouth, nose = _centroid(regions, FaceRegion.MOUTH), _centroid(regions, FaceRegion.NOSE)
    assert right[0] < nose[0] < left[0] and right[0] < mouth[0] < left[0]
    assert max(left[1], right[1]) < nose[1] < mouth[1]  # top to bottom: eyes, nose, mouth
    assert _at(regions, lm[4]) == FaceRegion.NOSE  # the nose tip
    assert _at(regions, lm[50]) == _at(regions, lm[280]) == FaceRegion.SKIN  # the cheeks
    assert _at(regions, (2, 2)) != FaceRegion.SKIN  # a crop corner is off the face
    hair = np.nonzero(regions == FaceRegion.HAIR)
    assert len(hair[0]) > 500, "both portraits show hair (or a hat) above the forehead"
    assert hair[0].mean() + 0.5 < min(left[1], right[1])


def test_face_mesh_topology_matches_mediapipe():
    conn = mp.solutions.face_mesh_connections

    def loop_edges(loop):
        return {frozenset((a, b)) for a, b in zip(loop, loop[1:] + loop[:1])}

    assert loop_edges(lr.FACE_OVAL) == {frozenset(e) for e in conn.FACEMESH_FACE_OVAL}
    assert loop_edges(lr.LEFT_EYE) == {frozenset(e) for e in conn.FACEMESH_LEFT_EYE}
    assert loop_edges(lr.RIGHT_EYE) == {frozenset(e) for e in conn.FACEMESH_RIGHT_EYE}
    assert loop_edges(lr.LIPS_OUTER) <= {frozenset(e) for e in conn.FACEMESH_LIPS}
    assert 0 in lr.LIPS_OUTER and 13 not in lr.LIPS_OUTER  # 0: outer upper lip; 13: inner
    assert set(lr.NOSE) == {i for e in conn.FACEMESH_NOSE for i in e}


@pytest.fixture(scope="module")
def landmarks(backend):
    return _parse(backend, grace_hopper())[1]


def test_without_a_person_mask_there_is_no_hair(landmarks):
    regions = lr.regions_from_landmarks(landmarks, (SIZE, SIZE))
    assert not (regions == FaceRegion.HAIR).any()
    with_mask = lr.regions_from_landmarks(landmarks, (SIZE, SIZE), np.ones((SIZE, SIZE), bool))
    # Only background turns into hair; the face's own regions stay.
    changed = regions != with_mask
    assert (with_mask[changed] == FaceRegion.HAIR).all() and (regions[changed] == FaceRegion.BACKGROUND).all()


@pytest.mark.parametrize("quarter_turns", [1, 2, 3])
def test_regions_follow_a_rolled_face(landmarks, quarter_turns):
    # Rolling the landmarks by a multiple of 90° about the map's centre must roll the map,
    # hair (taken from an all-person mask) included: "above the eyes" is the face's own up.
    full = np.ones((SIZE, SIZE), bool)
    upright = lr.regions_from_landmarks(landmarks, (SIZE, SIZE), full)
    c = SIZE / 2
    turned = landmarks - c
    for _ in range(quarter_turns):
        turned = np.stack([turned[:, 1], -turned[:, 0]], 1)  # np.rot90's direction, in x-right y-down coordinates
    rolled = lr.regions_from_landmarks(turned + c, (SIZE, SIZE), full)
    agree = (np.rot90(upright, quarter_turns) == rolled).mean()
    assert agree > 0.995, agree
    eye_mid, up, left = lr.face_axes(landmarks)
    assert up[1] < -0.9 and left[0] > 0.9  # upright: up is -y, the subject's left is +x


def test_bad_landmarks_are_rejected(landmarks):
    with pytest.raises(ValueError, match="468"):
        lr.regions_from_landmarks(landmarks[:100], (SIZE, SIZE))
    bad = landmarks.copy()
    bad[5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        lr.regions_from_landmarks(bad, (SIZE, SIZE))
    with pytest.raises(ValueError, match="person_mask"):
        lr.regions_from_landmarks(landmarks, (SIZE, SIZE), np.ones((10, 10), bool))


def test_detect_finds_nothing_on_a_blank_frame_and_checks_input(backend):
    backend.start_video()
    assert backend.detect(np.full((120, 160, 3), 128, np.uint8)) is None
    with pytest.raises(TypeError, match="uint8"):
        backend.detect(np.zeros((120, 160, 3), np.float32))
    with pytest.raises(ValueError, match="RGB"):
        backend.detect(np.zeros((120, 160), np.uint8))
