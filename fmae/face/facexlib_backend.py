"""The optional higher-quality backend: facexlib's RetinaFace detector and BiSeNet face parser.

Install with ``pip install 'fmae[facexlib]'`` (facexlib 0.3.0 and a torchvision that
matches your torch: ``import facexlib`` imports torchvision). Nothing is downloaded:
the weights folder must already hold the detector's and the parser's files (their
names are in :data:`WEIGHT_FILES`; facexlib publishes them on its GitHub releases), and
is passed to facexlib as ``model_rootpath``, where it finds them without fetching.

BiSeNet parses a 512×512 crop into the 19 CelebAMask-HQ classes; :func:`bisenet_to_regions`
maps them to the 7 :class:`FaceRegion` ids. The two eye classes are assigned to the
subject's left and right by where they lie relative to the face's midline (from
RetinaFace's five landmarks), not by class id, so the mapping does not depend on which
side the training set called "left".
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fmae.face.backend import Detection, FaceBackend, check_frame
from fmae.face.regions import FaceRegion

WEIGHT_FILES: dict[str, str] = {
    "retinaface_resnet50": "detection_Resnet50_Final.pth",
    "retinaface_mobile0.25": "detection_mobilenet0.25_Final.pth",
    "bisenet": "parsing_bisenet.pth",
}
"""facexlib model name → the file it loads from ``model_rootpath``."""

BISENET_CLASSES: tuple[str, ...] = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
    "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
)  # fmt: skip
_EYE_CLASSES = (4, 5)
_R = FaceRegion
BISENET_TO_REGION = np.array(
    [
        _R.BACKGROUND,  # background
        _R.SKIN, _R.SKIN, _R.SKIN,  # skin, brows (eyebrows count as skin, as in the synthetic set)
        _R.LEFT_EYE, _R.LEFT_EYE,  # eyes: split by side in bisenet_to_regions
        _R.SKIN,  # eyeglasses lie on the face
        _R.SKIN, _R.SKIN, _R.SKIN,  # ears, earrings
        _R.NOSE,
        _R.MOUTH, _R.MOUTH, _R.MOUTH,  # mouth, upper lip, lower lip
        _R.SKIN, _R.SKIN,  # neck, necklace
        _R.BACKGROUND,  # clothes
        _R.HAIR, _R.HAIR,  # hair, hat
    ],
    dtype=np.uint8,
)  # fmt: skip
"""``uint8 [19]``: BiSeNet class → :class:`FaceRegion` id (eyes resolved by side later)."""

PARSE_SIZE = 512
_PARSE_MEAN, _PARSE_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # BiSeNet's input normalisation (ImageNet's)
INSTALL_HINT = "pip install 'fmae[facexlib]' (facexlib==0.3.0 and the torchvision built for your torch)"


def bisenet_to_regions(labels: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """BiSeNet's 19-class map → :class:`FaceRegion` ids.

    labels: ``uint8 [H, W]`` class ids in ``[0, 19)``; landmarks: ``float [5, 2]``,
    RetinaFace's points in the map's continuous coordinates: the two eyes, the nose
    tip, the two mouth corners (either eye first). Eye pixels on the subject's left of
    the midline (the line through the eyes' midpoint, perpendicular to the eye axis)
    become :attr:`FaceRegion.LEFT_EYE`, the others :attr:`FaceRegion.RIGHT_EYE`; the
    subject's left is found from the mouth-to-eyes direction, so any head roll works.
    Returns ``uint8 [H, W]``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an integer [H, W] map, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= len(BISENET_CLASSES)):
        raise ValueError(f"labels must be in [0, {len(BISENET_CLASSES)}), got [{labels.min()}, {labels.max()}]")
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (5, 2):
        raise ValueError(f"landmarks must be RetinaFace's [5, 2], got {lm.shape}")
    regions = BISENET_TO_REGION[labels]
    eye_mid = lm[:2].mean(0)
    up = eye_mid - lm[3:].mean(0)
    left = np.array([-up[1], up[0]])  # up turned a quarter clockwise on screen
    ys, xs = np.nonzero(np.isin(labels, _EYE_CLASSES))
    on_left = (xs + 0.5 - eye_mid[0]) * left[0] + (ys + 0.5 - eye_mid[1]) * left[1] > 0
    regions[ys, xs] = np.where(on_left, FaceRegion.LEFT_EYE, FaceRegion.RIGHT_EYE)
    return regions


def _import_facexlib():
    try:
        import torch
        from facexlib.detection import init_detection_model
        from facexlib.parsing import init_parsing_model
    except Exception as e:  # torchvision built for another torch fails with RuntimeError/OSError too
        raise ImportError(
            f"the facexlib face backend cannot import facexlib and torchvision ({type(e).__name__}: {e}); "
            f"{INSTALL_HINT}"
        ) from e
    return torch, init_detection_model, init_parsing_model


class FacexlibBackend(FaceBackend):
    """RetinaFace boxes and five landmarks (``float32 [5, 2]``) and BiSeNet regions.

    weights: folder holding :data:`WEIGHT_FILES` of ``detector`` and ``"bisenet"``;
    device: torch device for both models (default: CUDA if available); conf_threshold:
    RetinaFace's score threshold; half: run the detector in float16 (GPU). RetinaFace
    works on single images: across frames the face that overlaps the previous frame's
    most is followed (the largest one on the first frame, after a frame without a face,
    or when none overlaps).
    """

    name = "facexlib"

    def __init__(
        self,
        weights: str | Path | None = None,
        device: str | None = None,
        detector: str = "retinaface_resnet50",
        conf_threshold: float = 0.8,
        half: bool = False,
    ) -> None:
        torch, init_detection_model, init_parsing_model = _import_facexlib()
        if weights is None:
            raise ValueError(
                "the facexlib backend needs weights=<folder> (--weights DIR) holding its model files; "
                "it never downloads"
            )
        if detector not in ("retinaface_resnet50", "retinaface_mobile0.25"):
            raise ValueError(f"detector must be retinaface_resnet50 or retinaface_mobile0.25, got {detector!r}")
        weights = Path(weights).expanduser()
        missing = [name for name in (WEIGHT_FILES[detector], WEIGHT_FILES["bisenet"]) if not (weights / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{weights} lacks {', '.join(missing)} (facexlib would download them; FMAE does not)"
            )
        self._torch = torch
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.conf_threshold = conf_threshold
        self._detector = init_detection_model(detector, half=half, device=self.device, model_rootpath=str(weights))
        self._parser = init_parsing_model("bisenet", device=self.device, model_rootpath=str(weights))
        self._mean = torch.tensor(_PARSE_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(_PARSE_STD, device=self.device).view(1, 3, 1, 1)
        self._previous: np.ndarray | None = None

    def start_video(self) -> None:
        self._previous = None

    def detect(self, frame: np.ndarray) -> Detection | None:
        frame = check_frame(frame)
        with self._torch.inference_mode():
            # [N, 15]: x0, y0, x1, y1, score, then five (x, y) landmarks; it wants BGR.
            faces = self._detector.detect_faces(
                np.ascontiguousarray(frame[..., ::-1]), conf_threshold=self.conf_threshold
            )
        if len(faces) == 0:
            self._previous = None
            return None
        boxes = faces[:, :4].astype(np.float64)
        overlap = _iou(boxes, self._previous) if self._previous is not None else np.zeros(len(boxes))
        pick = int(np.argmax(overlap)) if overlap.max() > 0 else int(np.argmax(_area(boxes)))
        self._previous = boxes[pick]
        return Detection(faces[pick, :4].astype(np.float32), faces[pick, 5:15].reshape(5, 2).astype(np.float32))

    def parse(self, crop: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        crop = check_frame(crop)
        S = crop.shape[0]
        x = cv2.resize(crop, (PARSE_SIZE, PARSE_SIZE), interpolation=cv2.INTER_LINEAR)
        torch = self._torch
        with torch.inference_mode():
            t = torch.from_numpy(x).to(self.device).permute(2, 0, 1)[None].float().div_(255)
            t = (t - self._mean) / self._std
            logits = self._parser(t)[0]  # [1, 19, 512, 512]; BiSeNet also returns two auxiliary heads
            labels = logits.argmax(1)[0].to(torch.uint8).cpu().numpy()
        labels = cv2.resize(labels, (S, S), interpolation=cv2.INTER_NEAREST)
        return bisenet_to_regions(labels, landmarks)

    def close(self) -> None:
        self._detector = self._parser = None


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def _iou(boxes: np.ndarray, ref: np.ndarray) -> np.ndarray:
    lo, hi = np.maximum(boxes[:, :2], ref[:2]), np.minimum(boxes[:, 2:], ref[2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    return inter / (_area(boxes) + _area(ref[None]) - inter + 1e-9)
