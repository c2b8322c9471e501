"""The offline default backend: MediaPipe's legacy FaceMesh and SelfieSegmentation.

``mediapipe==0.10.21`` is the last release whose wheel ships these models and the
legacy ``mp.solutions`` API (it needs ``numpy<2``, ``protobuf<5`` and
``opencv-contrib-python==4.11.0.86``). For one face, FaceMesh runs in tracking mode: it
detects a face once, then follows it from frame to frame until it loses it. For several
(``max_faces > 1``) FaceMesh's own detector, MediaPipe's short-range one, is not enough: it
misses faces smaller than about a fifth of the frame's height, which is every face of a
gallery of more than 2×2 webcam tiles or of a classroom camera (measured on the 2×2 gallery
of ``tests/gallery_videos.py`` shrunk to half its size in the frame, faces of 70–85 px in
540: none of 306 found). There MediaPipe's full-range detector
(``FaceDetection(model_selection=1)``) finds the faces (300 of 306 there; 554 of 612 in the
4×4 gallery), and FaceMesh reads each one's landmarks from a square crop around it
(:data:`FINDER_MARGIN`, :data:`FINDER_CROP`) that the face fills. Faces under about a
tenth of the frame's height are still missed (none found at a third of that gallery's size). Regions come from the
landmarks (:func:`fmae.face.landmark_regions.regions_from_landmarks`); hair from
SelfieSegmentation's person mask, run on the crop.
"""

from __future__ import annotations

import os

import numpy as np

from fmae.face.backend import Detection, FaceBackend, check_frame
from fmae.face.landmark_regions import regions_from_landmarks
from fmae.face.tracking import crop_frame

INSTALL_HINT = 'pip install mediapipe==0.10.21 opencv-contrib-python==4.11.0.86 "numpy<2" "protobuf<5"'
FINDER_MARGIN = 2.0
"""Side of the crop FaceMesh reads around a found face, over the side of the detector's box
(which holds brows to mouth; FaceMesh wants the whole head)."""
FINDER_CROP = 192
"""Pixels of that crop's side (FaceMesh's landmark model reads 192²)."""


def _import_mediapipe():
    # MediaPipe's C++ side logs every graph start to stderr, which buries the progress
    # bar; keep warnings and errors only unless the user chose a level.
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        import mediapipe as mp

        return mp.solutions.face_mesh, mp.solutions.selfie_segmentation, mp.solutions.face_detection
    except (ImportError, AttributeError) as e:
        raise ImportError(
            f"the mediapipe face backend needs MediaPipe's legacy solutions API ({e}); {INSTALL_HINT}"
        ) from e


class MediaPipeBackend(FaceBackend):
    """FaceMesh landmarks (``float32 [478, 2]``, or 468 without ``refine_landmarks``) and
    landmark-polygon regions with SelfieSegmentation hair.

    min_detection_confidence / min_tracking_confidence: FaceMesh's thresholds for
    finding a face and for keeping it (below the latter it detects afresh);
    max_faces: most faces :meth:`detect_all` returns (:meth:`detect` returns the first);
    above 1 the full-range detector finds them in every frame and FaceMesh reads each
    (the module docstring says why), so ``min_tracking_confidence`` does not apply;
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
        max_faces: int = 1,
    ) -> None:
        if max_faces < 1:
            raise ValueError(f"max_faces must be at least 1, got {max_faces}")
        face_mesh, selfie, face_detection = _import_mediapipe()
        self.max_faces = max_faces
        self._finder = (
            face_detection.FaceDetection(model_selection=1, min_detection_confidence=min_detection_confidence)
            if max_faces > 1
            else None
        )
        self._mesh = face_mesh.FaceMesh(
            static_image_mode=self._finder is not None,  # each found face's crop is an image of its own
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
        faces = self.detect_all(frame)
        return faces[0] if faces else None

    def detect_all(self, frame: np.ndarray) -> list[Detection]:
        frame = check_frame(frame)
        H, W = frame.shape[:2]
        if self._finder is None:
            found = self._mesh.process(frame).multi_face_landmarks
            return [_detection(found[0], (W, H), (0, 0))] if found else []
        faces = []
        boxes = sorted(self._finder.process(frame).detections or (), key=lambda d: -d.score[0])
        for box in boxes[: self.max_faces]:
            b = box.location_data.relative_bounding_box
            side = max(2, round(FINDER_MARGIN * max(b.width * W, b.height * H)))
            x0 = round((b.xmin + b.width / 2) * W - side / 2)
            y0 = round((b.ymin + b.height / 2) * H - side / 2)
            crop = crop_frame(frame, np.array([x0, y0, x0 + side, y0 + side]), FINDER_CROP)
            found = self._mesh.process(crop).multi_face_landmarks
            if found:  # FaceMesh sees no face where the detector was wrong, or the face is in profile
                faces.append(_detection(found[0], (side, side), (x0, y0)))
        return faces

    @property
    def segments(self) -> bool:
        return self._segmenter is not None

    def parse(self, crop: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        crop = check_frame(crop)
        return self.regions(crop, landmarks, self.segment(crop) if self._segmenter is not None else None)

    def segment(self, crop: np.ndarray) -> np.ndarray:
        """SelfieSegmentation's person mask of ``crop``: ``bool [S, S]``."""
        if self._segmenter is None:
            raise RuntimeError("this backend was made with hair=False: it has no person segmentation")
        return self._segmenter.process(check_frame(crop)).segmentation_mask > self.person_threshold

    def regions(self, crop: np.ndarray, landmarks: np.ndarray, segmentation: np.ndarray | None) -> np.ndarray:
        """Regions from the landmarks, with hair from the person mask ``segmentation`` (``None``: no hair)."""
        return regions_from_landmarks(landmarks, crop.shape[:2], segmentation)

    def close(self) -> None:
        self._mesh.close()
        if self._finder is not None:
            self._finder.close()
        if self._segmenter is not None:
            self._segmenter.close()


def _detection(face, scale: tuple[float, float], offset: tuple[float, float]) -> Detection:
    """A :class:`Detection` from FaceMesh's normalised landmarks of an image of size ``scale``
    (``W, H``) whose top left corner lies at ``offset`` in the frame."""
    landmarks = np.array([(p.x * scale[0] + offset[0], p.y * scale[1] + offset[1]) for p in face.landmark], np.float32)
    return Detection(np.concatenate([landmarks.min(0), landmarks.max(0)]), landmarks)
