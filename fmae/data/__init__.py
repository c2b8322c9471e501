"""Face-video data: DAiSEE-layout clip folders and the synthetic set that stands in for them.

:mod:`fmae.data.clips` reads any DAiSEE-layout folder (label CSVs, videos, region-map
sidecars) into a torch ``Dataset``; :mod:`fmae.data.synthetic` draws and writes the
deterministic synthetic set that the default run and the tests use.
"""

from fmae.data.clips import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LABEL_COLUMNS,
    SPLITS,
    VideoClipDataset,
    list_clips,
    read_frames,
    read_labels,
    region_map_path,
)
from fmae.data.synthetic import SyntheticConfig, default_root, ensure_synthetic_daisee, generate_clip

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LABEL_COLUMNS",
    "SPLITS",
    "SyntheticConfig",
    "VideoClipDataset",
    "default_root",
    "ensure_synthetic_daisee",
    "generate_clip",
    "list_clips",
    "read_frames",
    "read_labels",
    "region_map_path",
]
