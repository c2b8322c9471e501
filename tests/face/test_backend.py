"""The backend registry, and what of the facexlib backend runs without facexlib."""

import importlib

import numpy as np
import pytest

from fmae.face import Detection, FaceBackend, FaceRegion, available_backends, create_backend, register_backend
from fmae.face import backend as backend_mod
from fmae.face.backend import check_frame
from fmae.face.facexlib_backend import BISENET_CLASSES, BISENET_TO_REGION, bisenet_to_regions


class _Fixed(FaceBackend):
    name = "fixed"

    def __init__(self, side: int = 10):
        self.side = side

    def detect(self, frame):
        return Detection(np.array([0, 0, self.side, self.side], np.float32), np.zeros((1, 2), np.float32))

    def parse(self, crop, landmarks):
        return np.full(crop.shape[:2], FaceRegion.SKIN, np.uint8)


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.setattr(backend_mod, "_REGISTRY", dict(backend_mod._REGISTRY))


def test_registry_names_and_errors(registry):
    assert {"mediapipe", "facexlib"} <= set(available_backends())
    with pytest.raises(ValueError, match="unknown face backend 'nope'.*mediapipe"):
        create_backend("nope")
    register_backend("fixed", _Fixed)
    b = create_backend("fixed", side=7)
    assert isinstance(b, _Fixed) and b.side == 7 and "fixed" in available_backends()
    register_backend("fixed-by-path", f"{__name__}:_Fixed")
    with create_backend("fixed-by-path") as b2:
        assert b2.detect(np.zeros((4, 4, 3), np.uint8)).box.tolist() == [0, 0, 10, 10]
    with pytest.raises(ValueError, match="non-empty"):
        register_backend("", _Fixed)


def test_check_frame():
    frame = np.zeros((6, 8, 3), np.uint8)[:, ::2]  # not contiguous
    assert check_frame(frame).flags.c_contiguous
    with pytest.raises(TypeError, match="uint8"):
        check_frame(np.zeros((4, 4, 3)))
    with pytest.raises(TypeError, match="uint8"):
        check_frame([[0]])
    with pytest.raises(ValueError, match="RGB"):
        check_frame(np.zeros((4, 4, 4), np.uint8))


def _facexlib_imports() -> bool:
    try:
        importlib.import_module("facexlib.parsing")
        return True
    except Exception:
        return False


@pytest.mark.skipif(_facexlib_imports(), reason="facexlib imports here; this checks the error without it")
def test_facexlib_backend_says_what_to_install(tmp_path):
    with pytest.raises(ImportError, match=r"pip install 'fmae\[facexlib\]'"):
        create_backend("facexlib", weights=tmp_path)


# RetinaFace-style points of an upright face: two eyes (here the image-left one first),
# nose, two mouth corners, in a 100x100 map.
UPRIGHT = np.array([[30, 40], [70, 40], [50, 55], [35, 75], [65, 75]], np.float32)


def _eye_map(left_class: int, right_class: int) -> np.ndarray:
    labels = np.zeros((100, 100), np.uint8)
    labels[36:44, 22:38] = left_class  # the image's left half
    labels[36:44, 62:78] = right_class
    return labels


@pytest.mark.parametrize("classes", [(4, 5), (5, 4), (4, 4)])
def test_bisenet_eyes_go_to_the_subjects_side_whatever_their_class(classes):
    regions = bisenet_to_regions(_eye_map(*classes), UPRIGHT)
    assert (regions[36:44, 62:78] == FaceRegion.LEFT_EYE).all()  # the subject's left: the image's right
    assert (regions[36:44, 22:38] == FaceRegion.RIGHT_EYE).all()
    assert (regions[:30] == FaceRegion.BACKGROUND).all()


def test_bisenet_eye_sides_follow_head_roll():
    # The same face upside down (rotated 180° about the centre): the subject's left eye
    # is now on the image's left.
    flipped = 100 - UPRIGHT
    labels = np.rot90(_eye_map(4, 5), 2)
    regions = bisenet_to_regions(labels, flipped[[1, 0, 2, 4, 3]])
    np.testing.assert_array_equal(regions, np.rot90(bisenet_to_regions(_eye_map(4, 5), UPRIGHT), 2))
    assert (regions[56:64, 22:38] == FaceRegion.LEFT_EYE).all()


def test_bisenet_class_table():
    expected = {
        "background": FaceRegion.BACKGROUND,
        "skin": FaceRegion.SKIN,
        "l_brow": FaceRegion.SKIN,
        "r_brow": FaceRegion.SKIN,
        "eye_g": FaceRegion.SKIN, "l_ear": FaceRegion.SKIN, "r_ear": FaceRegion.SKIN, "ear_r": FaceRegion.SKIN,
        "nose": FaceRegion.NOSE, "mouth": FaceRegion.MOUTH, "u_lip": FaceRegion.MOUTH, "l_lip": FaceRegion.MOUTH,
        "neck": FaceRegion.SKIN, "neck_l": FaceRegion.SKIN, "cloth": FaceRegion.BACKGROUND, "hair": FaceRegion.HAIR,
        "hat": FaceRegion.HAIR,
    }  # fmt: skip
    assert len(BISENET_CLASSES) == len(BISENET_TO_REGION) == 19
    # Every non-eye class, one pixel each, far from the eyes' midline test.
    labels = np.array([[BISENET_CLASSES.index(name) for name in expected]], np.uint8)
    regions = bisenet_to_regions(labels, UPRIGHT)
    assert regions.tolist() == [[int(expected[name]) for name in expected]]


def test_bisenet_to_regions_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\[0, 19\)"):
        bisenet_to_regions(np.full((4, 4), 19, np.uint8), UPRIGHT)
    with pytest.raises(ValueError, match="integer"):
        bisenet_to_regions(np.zeros((4, 4), np.float32), UPRIGHT)
    with pytest.raises(ValueError, match=r"\[5, 2\]"):
        bisenet_to_regions(np.zeros((4, 4), np.uint8), UPRIGHT[:4])


def test_a_one_face_backend_says_it_cannot_find_every_face():
    with pytest.raises(NotImplementedError, match="fixed face backend follows one face.*--faces all"):
        _Fixed().detect_all(np.zeros((4, 4, 3), np.uint8))
