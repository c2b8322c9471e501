"""Face detection, tracking and parsing into :class:`FaceRegion` maps.

One face over time: :mod:`fmae.face.tracking`. Every face (``--faces all``): each face's
appearance (:mod:`fmae.face.identity`, an offline descriptor) and who is who over a
recording, or frame by frame for a live source (:mod:`fmae.face.multi_tracking`). The fast
pass runs the models on keyframes only (:mod:`fmae.face.keyframes`).

Backends (:func:`create_backend`: ``"mediapipe"``, the offline default, and
``"facexlib"``, optional) are imported only when created, so this package needs
neither MediaPipe nor torchvision.
"""

from fmae.face.backend import Detection, FaceBackend, available_backends, create_backend, register_backend
from fmae.face.regions import NUM_REGIONS, FaceRegion

__all__ = [
    "Detection",
    "FaceBackend",
    "FaceRegion",
    "NUM_REGIONS",
    "available_backends",
    "create_backend",
    "register_backend",
]
