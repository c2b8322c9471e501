"""The face-backend interface and the registry that names the implementations.

A backend does two things for the preprocessing pipeline (:mod:`fmae.data.face_pass`):

- :meth:`FaceBackend.detect` finds one face in each frame of a video, in order (it may
  track: :meth:`FaceBackend.start_video` resets it between videos), and returns its box
  and landmarks; :meth:`FaceBackend.detect_all` finds every face, up to the backend's
  ``max_faces`` (for ``--faces all``: :mod:`fmae.face.multi_tracking` tells who is who);
- :meth:`FaceBackend.parse` turns a face crop, with the landmarks moved into the crop,
  into a :class:`fmae.face.FaceRegion` map.

The landmarks are the backend's own (468/478 FaceMesh points, RetinaFace's 5, …): the
pipeline only moves them between frame and crop coordinates and hands them back.
Backends are created by name with :func:`create_backend`; implementations are imported
only then, so ``import fmae.face`` needs neither MediaPipe nor torchvision. Add one with
:func:`register_backend`.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import Callable, NamedTuple

import numpy as np


class Detection(NamedTuple):
    """One face in one frame, in continuous frame coordinates (see :mod:`fmae.face.tracking`).

    box: ``float32 [4]`` ``x0, y0, x1, y1``, the face's tight box;
    landmarks: ``float32 [K, 2]`` ``(x, y)`` points, ``K`` and their meaning the backend's.
    """

    box: np.ndarray
    landmarks: np.ndarray


class FaceBackend(ABC):
    """Detects and tracks one face per frame and parses face crops into regions.

    Use it as a context manager (or call :meth:`close`) to free its models.
    """

    name: str = ""
    max_faces: int = 1
    """Most faces :meth:`detect_all` returns in one frame (a backend that finds several takes it
    as a constructor argument)."""

    def start_video(self) -> None:
        """Forget any tracking state: the next :meth:`detect` call starts a new video."""

    @abstractmethod
    def detect(self, frame: np.ndarray) -> Detection | None:
        """The face in ``frame`` (``uint8 [H, W, 3]`` RGB, the next frame of the video), or ``None``."""

    def detect_all(self, frame: np.ndarray) -> list[Detection]:
        """Every face in ``frame`` (``uint8 [H, W, 3]`` RGB, the next frame of the video), at most
        :attr:`max_faces`, in no particular order. ``NotImplementedError`` for a backend that
        follows one face only."""
        raise NotImplementedError(
            f"the {self.name or type(self).__name__} face backend follows one face; "
            "--faces all needs one that finds several (mediapipe)"
        )

    @abstractmethod
    def parse(self, crop: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Regions of a face crop: ``uint8 [S, S]`` :class:`FaceRegion` ids.

        crop: ``uint8 [S, S, 3]`` RGB; landmarks: ``float32 [K, 2]``, the detection's
        landmarks in the crop's continuous coordinates.
        """

    segments: bool = False
    """Whether :meth:`parse` splits into :meth:`segment` (a costly mask that changes slowly, which
    :class:`fmae.face.keyframes.KeyframeParser` may reuse over a few frames) and :meth:`regions`."""

    def segment(self, crop: np.ndarray) -> np.ndarray:
        """The slow part of :meth:`parse` for a backend that :attr:`segments`: ``bool [S, S]`` of
        ``crop`` ``uint8 [S, S, 3]`` (MediaPipe: the person mask that gives hair)."""
        raise NotImplementedError(f"the {self.name or type(self).__name__} face backend does not split its parse")

    def regions(self, crop: np.ndarray, landmarks: np.ndarray, segmentation: np.ndarray) -> np.ndarray:
        """The rest of :meth:`parse`: ``uint8 [S, S]`` regions from the crop, its landmarks and a
        :meth:`segment` mask (``parse(c, lm) == regions(c, lm, segment(c))``)."""
        raise NotImplementedError(f"the {self.name or type(self).__name__} face backend does not split its parse")

    def close(self) -> None:
        """Release models and graphs; the backend is unusable after."""

    def __enter__(self) -> FaceBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_frame(frame: np.ndarray) -> np.ndarray:
    """``frame`` as a C-contiguous ``uint8 [H, W, 3]`` array; ``TypeError``/``ValueError`` otherwise."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        raise TypeError(f"frame must be a uint8 numpy array, got {type(frame).__name__} {getattr(frame, 'dtype', '')}")
    if frame.ndim != 3 or frame.shape[2] != 3 or min(frame.shape[:2]) < 1:
        raise ValueError(f"frame must be [H, W, 3] RGB, got shape {frame.shape}")
    return np.ascontiguousarray(frame)


BackendFactory = Callable[..., FaceBackend]

_REGISTRY: dict[str, str | BackendFactory] = {
    "mediapipe": "fmae.face.mediapipe_backend:MediaPipeBackend",
    "facexlib": "fmae.face.facexlib_backend:FacexlibBackend",
}


def register_backend(name: str, factory: str | BackendFactory) -> None:
    """Make ``create_backend(name, ...)`` call ``factory`` (a callable or ``"module:attr"``,
    imported on first use). Replaces an existing entry of that name."""
    if not name or not isinstance(name, str):
        raise ValueError(f"backend name must be a non-empty string, got {name!r}")
    _REGISTRY[name] = factory


def available_backends() -> tuple[str, ...]:
    """Registered backend names (whether their dependencies import is only known on creation)."""
    return tuple(sorted(_REGISTRY))


def backend_factory(name: str) -> str | BackendFactory:
    """The registry entry of ``name`` (picklable: a ``"module:attr"`` string or the callable
    itself), for handing to worker processes, which start with the default registry."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown face backend {name!r}; available: {', '.join(available_backends())}")
    return _REGISTRY[name]


def create_backend(name: str, **kwargs) -> FaceBackend:
    """A new backend ``name`` built with ``kwargs``.

    Raises ``ValueError`` for an unknown name and ``ImportError`` (with what to install)
    when the backend's dependencies are missing.
    """
    factory = backend_factory(name)
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory(**kwargs)
