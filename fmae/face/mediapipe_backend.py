"""The offline default backend: MediaPipe's legacy FaceMesh and SelfieSegmentation.

``mediapipe==0.10.21`` is the last release whose wheel ships these models and the
legacy ``mp.solutions`` API (it needs ``numpy<2``, ``protobuf<5`` and
``opencv-contrib-python==4.11.0.86``). FaceMesh runs in tracking mode: it detects a face
once, then follows it from frame to frame until it loses it. Regions come from the
landmarks (:func:`fmae.face.landmark_regions.regions_from_landmarks`); hair from
SelfieSegmentation's person mask, run on the crop.
"""

from __future__ import annotations

import os

import numpy as np

from fmae.face.backend import Detection, FaceBackend, check_frame
from fmae.face.landmark_regions import regions_from_landmarks

INSTALL_HINT = 'pip install mediapipe==0.10.21 opencv-contrib-python==4.11.0.86 "numpy<2" "protobuf<5"'


def _import_mediapipe():
    # MediaPipe's C++ side logs every graph start to stderr, which buries the progress
    # bar; keep warnings and errors only unless the user chose a level.
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        import mediapipe as mp

        return mp.solutions.face_mesh, mp.solutions.selfie_segmentation
    except (ImportError, AttributeError) as e:
        raise ImportError(
            f"the mediapipe face backend needs MediaPipe's legacy solutions API ({e}); {INSTALL_HINT}"
        ) from e


class MediaPipeBackend(FaceBackend):
    """FaceMesh landmarks (``float32 [478, 2]``, or 468 without ``refine_landmarks``) and
    landmark-polygon regions with SelfieSegmentation hair.

    min_detection_confidence / min_tracking_confidence: FaceMesh's thresholds for
    finding a face and for keeping it (below the latter it detects afresh);
    hair: run SelfieSegmentation for :attr:`FaceRegion.HAIR` (about half the cost of a
    frame; without it there is no hair region); person_threshold: mask probability that
    counts as person.
    """

    name = "mediapipe"

    def __init__(
        self,
        refine_landmarks: bool = True,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        hair: bool = True,
        person_threshold: float = 0.5,
    ) -> None:
        face_mesh, selfie = _import_mediapipe()
        self._mesh = face_mesh.FaceMesh(
            static_image_mode=False,
            max_num_faces=1,
            refine_landmarks=refine_landmarks,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence,
        )
        # Model 0 is the square (256×256) one, the crops' shape.
        self._segmenter = selfie.SelfieSegmentation(model_selection=0) if hair else None
        self.person_threshold = person_threshold

    def start_video(self) -> None:
        self._mesh.reset()

    def detect(self, frame: np.ndarray) -> Detection | None:
        frame = check_frame(frame)
        result = self._mesh.process(frame)
        if not result.multi_face_landmarks:
            return None
        H, W = frame.shape[:2]
        points = result.multi_face_landmarks[0].landmark
        landmarks = np.array([(p.x * W, p.y * H) for p in points], dtype=np.float32)
        box = np.concatenate([landmarks.min(0), landmarks.max(0)])
        return Detection(box, landmarks)

    def parse(self, crop: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        crop = check_frame(crop)
        person = None
        if self._segmenter is not None:
            person = self._segmenter.process(crop).segmentation_mask > self.person_threshold
        return regions_from_landmarks(landmarks, crop.shape[:2], person)

    def close(self) -> None:
        self._mesh.close()
        if self._segmenter is not None:
            self._segmenter.close()
