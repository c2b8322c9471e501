"""Face detection, tracking and parsing into :class:`FaceRegion` maps."""

from fmae.face.regions import NUM_REGIONS, FaceRegion

__all__ = ["FaceRegion", "NUM_REGIONS"]
