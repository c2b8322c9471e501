"""Face-video data: clip caches, data-set adapters, the DALI and plain PyTorch loaders,
and the synthetic set that stands in for real data.

:mod:`fmae.data.clips` reads cached clips (PyAV decoding, frame sampling, region maps)
into a torch ``Dataset``; :mod:`fmae.data.datasets` turns DAiSEE, EmotiW engagement,
plain folders and folder-per-class FER sets into :class:`ClipItem` lists;
:mod:`fmae.data.region_maps` writes and reads the per-frame face-region maps beside the
videos; :func:`make_loader` (:mod:`fmae.data.loader`) batches them with DALI
(:mod:`fmae.data.dali`, imported only when used) or plain PyTorch;
:mod:`fmae.data.synthetic` draws and writes the deterministic synthetic set that the
default run and the tests use; :mod:`fmae.data.preprocess` puts videos through the face
pass (:mod:`fmae.data.face_pass`) into the cache that all of these read (every person's part of it, with
``--faces all``, written by :mod:`fmae.data.people`), and :func:`prepared_root` is where every
command gets its data set (the user's folder, or the synthetic default).
"""

from fmae.data.clips import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LABEL_COLUMNS,
    NO_LABEL,
    SPLITS,
    ClipDataset,
    ClipItem,
    ClipSampler,
    VideoClipDataset,
    epoch_order,
    list_clips,
    read_frames,
    read_labels,
)
from fmae.data.datasets import daisee_items, emotiw_items, fer_classes, fer_items, folder_items, list_items
from fmae.data.face_pass import PreprocessConfig
from fmae.data.loader import TorchClipLoader, dali_available, make_loader
from fmae.data.preprocess import prepared_root, preprocess
from fmae.data.region_maps import RegionMapWriter, load_region_maps, region_map_path, save_region_maps
from fmae.data.synthetic import (
    SyntheticConfig,
    default_root,
    ensure_synthetic_daisee,
    generate_clip,
    pretraining_set,
    probing_set,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LABEL_COLUMNS",
    "PreprocessConfig",
    "NO_LABEL",
    "SPLITS",
    "ClipDataset",
    "ClipItem",
    "ClipSampler",
    "RegionMapWriter",
    "SyntheticConfig",
    "TorchClipLoader",
    "VideoClipDataset",
    "daisee_items",
    "dali_available",
    "default_root",
    "emotiw_items",
    "ensure_synthetic_daisee",
    "epoch_order",
    "fer_classes",
    "fer_items",
    "folder_items",
    "generate_clip",
    "list_clips",
    "list_items",
    "load_region_maps",
    "make_loader",
    "prepared_root",
    "preprocess",
    "pretraining_set",
    "probing_set",
    "read_frames",
    "read_labels",
    "region_map_path",
    "save_region_maps",
]
