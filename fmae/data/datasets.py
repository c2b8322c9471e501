"""Data-set adapters: a data set's folder layout and label file → a list of :class:`ClipItem`.

Every loader (:func:`fmae.data.loader.make_loader`, DALI or plain PyTorch) reads the
same items, so an adapter only has to find the videos and their labels:

========  =====================================================================  ==================
name      layout                                                                 label
========  =====================================================================  ==================
daisee    ``DataSet/{Train,Validation,Test}/<subject>/<clip>/<clip>.avi`` and     engagement 0–3
          ``Labels/<split>Labels.csv`` (see :mod:`fmae.data.clips`)               (``int``)
emotiw    EmotiW 2018–2020 engagement ("Engagement in the Wild"):                 0, 0.33, 0.66, 1
          ``{Train,validation}/subject_<n>_Vid_<k>.{wmv,mp4,avi}`` and one label   (``float``)
          file per split (``.xlsx``, ``.csv`` or ``.txt``: video name, level);
          the ~5-minute videos are cut into windows, one item each
folder    any folder of videos, searched recursively (pre-training)               ``None``
fer       folder per class, AFEW / CREMA-D / RAVDESS style:                       class index
          ``<root>/<split>/<class>/*.{mp4,avi,...}``                              (``int``)
========  =====================================================================  ==================

Layout problems raise ``FileNotFoundError`` saying what was expected; bad label files
raise ``ValueError`` naming the file and line; labelled videos that are missing, and
videos without a label, are logged and skipped.
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path
from typing import Callable, Iterator, Sequence

from fmae.data.clips import SPLITS, VIDEO_SUFFIXES, ClipItem, count_frames, label_file, list_clips

log = logging.getLogger(__name__)

DAISEE_LEVELS: tuple[int, ...] = (0, 1, 2, 3)
EMOTIW_LEVELS: tuple[float, ...] = (0.0, 0.33, 0.66, 1.0)
EMOTIW_SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("Train", "train", "Training", "training"),
    "validation": ("validation", "Validation", "val", "Val"),
    "test": ("Test", "test", "Testing", "testing"),
}
"""Split name → the folder names EmotiW releases have used for it, tried in order."""
LABEL_SUFFIXES: tuple[str, ...] = (".xlsx", ".csv", ".txt")


def is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES and not path.name.startswith(".")


def daisee_items(root: str | Path, split: str = "Train", column: str = "Engagement") -> list[ClipItem]:
    """DAiSEE: every labelled clip of ``split`` (one of :data:`fmae.data.clips.SPLITS`),
    labelled with its level 0–3 in ``column``. See :func:`fmae.data.clips.list_clips`."""
    return [ClipItem(path, level) for path, level in list_clips(root, split, column, levels=DAISEE_LEVELS)]


def windows(path: Path, label: int | float | None, window: int | None, hop: int | None = None) -> list[ClipItem]:
    """Cut one video into items of ``window`` frames every ``hop`` (default ``window``).

    A trailing part shorter than ``window`` is dropped, but a video shorter than one
    window is one item. ``window=None`` keeps the whole video as one item (no frame count
    needed).
    """
    if window is None:
        return [ClipItem(path, label)]
    hop = window if hop is None else hop
    if window < 1 or hop < 1:
        raise ValueError(f"window and hop must be >= 1, got {window}, {hop}")
    n = count_frames(path)
    if n < 1:
        raise ValueError(f"{path} has no frames")
    starts = range(0, max(n - window, 0) + 1, hop)
    return [ClipItem(path, label, s, min(s + window, n)) for s in starts]


def _windowed(videos: Sequence[tuple[Path, int | float | None]], window: int | None, hop: int | None) -> list[ClipItem]:
    items: list[ClipItem] = []
    for path, label in videos:
        try:
            items.extend(windows(path, label, window, hop))
        except ValueError as e:  # PyAV cannot read it, or it is empty
            log.warning("skipping %s: %s", path, e)
    return items


def folder_items(root: str | Path, window: int | None = None, hop: int | None = None) -> list[ClipItem]:
    """Every video under ``root`` (recursively, in path order), unlabelled, for
    pre-training; long videos cut into windows when ``window`` is given (see :func:`windows`)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of videos")
    videos = sorted(p for p in root.rglob("*") if is_video(p))
    if not videos:
        raise FileNotFoundError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) under {root}")
    items = _windowed([(p, None) for p in videos], window, hop)
    if not items:
        raise FileNotFoundError(f"none of the {len(videos)} videos under {root} could be read")
    return items


def fer_classes(root: str | Path, split: str) -> list[str]:
    """The class names of a folder-per-class set: ``<root>/<split>``'s subfolders, sorted."""
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise FileNotFoundError(f"expected a folder per class under {split_dir} (<root>/<split>/<class>/*.mp4)")
    classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise FileNotFoundError(f"{split_dir} has no class folders (expected <root>/<split>/<class>/*.mp4)")
    return classes


def fer_items(root: str | Path, split: str, classes: Sequence[str] | None = None) -> list[ClipItem]:
    """Folder-per-class FER sets (AFEW, CREMA-D, RAVDESS prepared as
    ``<root>/<split>/<class>/<video>``): label = the class's index in ``classes``.

    ``classes`` defaults to :func:`fer_classes` of this split; pass the training split's
    list to keep indices the same across splits. A class folder not in ``classes`` raises
    ``ValueError``.
    """
    found = fer_classes(root, split)
    classes = list(found if classes is None else classes)
    unknown = [c for c in found if c not in classes]
    if unknown:
        raise ValueError(f"{Path(root) / split}: class folders {unknown} are not among the classes {classes}")
    items = [
        ClipItem(p, classes.index(c)) for c in found for p in sorted((Path(root) / split / c).iterdir()) if is_video(p)
    ]
    if not items:
        raise FileNotFoundError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) in the class folders of {Path(root) / split}")
    return items


# ------------------------------------------------------------------------------ EmotiW


def emotiw_split_dir(root: str | Path, split: str) -> Path:
    """The folder of an EmotiW split (``"train"``, ``"validation"`` or ``"test"``),
    whichever of the names in :data:`EMOTIW_SPLITS` exists."""
    key = split.lower()
    key = {"val": "validation", "valid": "validation"}.get(key, key)
    if key not in EMOTIW_SPLITS:
        raise ValueError(f"split must be one of {list(EMOTIW_SPLITS)}, got {split!r}")
    root = Path(root)
    for name in EMOTIW_SPLITS[key]:
        if (root / name).is_dir():
            return root / name
    raise FileNotFoundError(
        f"no {key} folder in {root}: expected one of {list(EMOTIW_SPLITS[key])} holding "
        "subject_<n>_Vid_<k>.wmv/.mp4/.avi (the EmotiW 2018-2020 engagement layout), found "
        f"{sorted(p.name for p in root.iterdir()) if root.is_dir() else 'no such folder'}"
    )


def find_emotiw_label_file(root: str | Path, split: str) -> Path | None:
    """The label file of an EmotiW split, searched in ``root``, ``root/Labels`` and the
    split folder: a ``.xlsx``/``.csv``/``.txt`` whose name holds "label" and the split
    ("train", "val"/"validation", "test"). ``None`` if there is none; ``FileNotFoundError``
    if several match (pass ``label_file`` to choose)."""
    root, key = Path(root), split.lower()[:3]  # "tra", "val", "tes"
    split_dir = emotiw_split_dir(root, split)
    candidates = set()
    for folder in (root, root / "Labels", root / "labels", split_dir):
        if folder.is_dir():
            for p in folder.iterdir():
                name = p.name.lower()
                if p.is_file() and p.suffix.lower() in LABEL_SUFFIXES and "label" in name and key in name:
                    candidates.add(p)
    if len(candidates) > 1:
        raise FileNotFoundError(
            f"several label files for split {split} in {root}: {sorted(map(str, candidates))}; pass label_file"
        )
    return candidates.pop() if candidates else None


def _table_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(line, cells)`` of a label table: xlsx (first sheet), csv or whitespace/tab txt."""
    if path.suffix.lower() == ".xlsx":
        try:
            import openpyxl
        except ImportError as e:
            raise ImportError(f"reading {path} needs openpyxl (pip install openpyxl), or save it as .csv") from e
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        try:
            for line, row in enumerate(book.worksheets[0].iter_rows(values_only=True), start=1):
                yield line, ["" if v is None else str(v) for v in row]
        finally:
            book.close()
        return
    with path.open(newline="") as f:
        text = f.read()
    dialect = "excel" if "," in text.split("\n", 1)[0] else None
    for line, raw in enumerate(text.splitlines(), start=1):
        cells = next(csv.reader([raw])) if dialect else raw.split()
        yield line, cells


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_emotiw_labels(path: str | Path) -> dict[str, tuple[float, int]]:
    """``{video stem: (level, line)}`` from an EmotiW engagement label file.

    Two columns: the video's name (with or without extension) and its level, one of
    :data:`EMOTIW_LEVELS` (``1/3``-style spellings such as ``0.333`` are accepted and
    snapped). An optional header row and blank rows are skipped; an extra leading index
    column (pandas' ``to_excel``/``to_csv``) is recognised. Raises ``ValueError`` naming
    the file and line on a short row, a level that is not a number or not a level, or a
    video listed twice.
    """
    path = Path(path)
    labels: dict[str, tuple[float, int]] = {}
    first = True
    for line, cells in _table_rows(path):
        cells = [c.strip() for c in cells]
        while cells and not cells[-1]:
            cells.pop()
        if not cells:
            continue
        if len(cells) >= 3 and _is_number(cells[0]) and not _is_number(cells[1]):
            cells = cells[1:]  # a leading index column
        if len(cells) < 2:
            raise ValueError(f"{path}:{line}: expected '<video>, <level>', got {cells}")
        name, value = cells[0], cells[1]
        if first and not _is_number(value):
            first = False
            continue  # the header
        first = False
        if not _is_number(value):
            raise ValueError(f"{path}:{line}: level {value!r} of {name} is not a number")
        level = min(EMOTIW_LEVELS, key=lambda lv: abs(lv - float(value)))
        if abs(level - float(value)) > 0.011:
            raise ValueError(f"{path}:{line}: level {value} of {name} is not one of {list(EMOTIW_LEVELS)}")
        stem = Path(name).stem if Path(name).suffix.lower() in VIDEO_SUFFIXES else name
        if stem in labels:
            raise ValueError(f"{path}:{line}: {name} is listed twice (first on line {labels[stem][1]})")
        labels[stem] = (level, line)
    if not labels:
        raise ValueError(f"{path}: no labelled videos")
    return labels


_EMOTIW_NAME = re.compile(r"^subject_\d+_vid_\w+$", re.IGNORECASE)


def emotiw_items(
    root: str | Path,
    split: str = "train",
    label_file: str | Path | None = None,
    window: int | None = 64,
    hop: int | None = None,
) -> list[ClipItem]:
    """EmotiW 2018–2020 engagement: the videos of ``split`` ("train", "validation",
    "test") cut into ``window``-frame items (every ``hop`` frames; see :func:`windows`),
    each labelled with its video's level (a ``float`` in :data:`EMOTIW_LEVELS`).

    The label file is ``label_file`` or the one :func:`find_emotiw_label_file` finds; the
    test split may have none (its labels were never released): its items are then
    unlabelled. Videos are matched to label rows by stem; rows without a video and videos
    without a row are logged and skipped. Names that do not look like
    ``subject_<n>_Vid_<k>`` are only mentioned in the log (some releases renamed files).
    """
    split_dir = emotiw_split_dir(root, split)
    videos = sorted(p for p in split_dir.rglob("*") if is_video(p))
    if not videos:
        raise FileNotFoundError(
            f"no videos ({', '.join(VIDEO_SUFFIXES)}) in {split_dir}; expected subject_<n>_Vid_<k>.wmv/.mp4/.avi"
        )
    odd = [p.name for p in videos if not _EMOTIW_NAME.match(p.stem)]
    if odd:
        log.info("%s: %d videos not named subject_<n>_Vid_<k> (e.g. %s)", split_dir, len(odd), odd[0])
    label_path = Path(label_file) if label_file is not None else find_emotiw_label_file(root, split)
    if label_path is None:
        if split.lower().startswith("tes"):
            log.info("%s: no label file, the test items are unlabelled", split_dir)
            return _windowed([(p, None) for p in videos], window, hop)
        raise FileNotFoundError(
            f"no label file for split {split}: expected a .xlsx/.csv/.txt whose name holds 'label' and "
            f"'{split.lower()[:3]}' "
            f"in {Path(root)}, {Path(root) / 'Labels'} or {split_dir} (or pass label_file)"
        )
    labels = read_emotiw_labels(label_path)
    by_stem = {p.stem: p for p in videos}
    missing = [(stem, line) for stem, (_, line) in labels.items() if stem not in by_stem]
    if missing:
        log.warning(
            "%s: %d labelled videos are not in %s (e.g. line %d: %s); skipped",
            label_path,
            len(missing),
            split_dir,
            missing[0][1],
            missing[0][0],
        )
    unlabelled = [p.name for p in videos if p.stem not in labels]
    if unlabelled:
        log.warning(
            "%s: %d videos have no row in %s (e.g. %s); skipped", split_dir, len(unlabelled), label_path, unlabelled[0]
        )
    labelled = [(by_stem[stem], level) for stem, (level, _) in labels.items() if stem in by_stem]
    if not labelled:
        raise FileNotFoundError(f"none of the {len(labels)} videos in {label_path} is in {split_dir}")
    return _windowed(labelled, window, hop)


# ----------------------------------------------------------------------------- registry

ADAPTERS: dict[str, Callable[..., list[ClipItem]]] = {
    "daisee": daisee_items,
    "emotiw": emotiw_items,
    "folder": lambda root, split=None, **kw: folder_items(Path(root) / split if split else root, **kw),
    "fer": fer_items,
}
"""Data-set name → adapter ``(root, split, **options) -> list[ClipItem]``."""


def list_items(dataset: str, root: str | Path, split: str | None = None, **options) -> list[ClipItem]:
    """The items of ``dataset`` (a key of :data:`ADAPTERS`) under ``root``; ``split`` is
    the adapter's (DAiSEE: one of :data:`fmae.data.clips.SPLITS`; ``folder``: an optional
    subfolder), ``options`` its keyword arguments."""
    if dataset not in ADAPTERS:
        raise ValueError(f"dataset must be one of {sorted(ADAPTERS)}, got {dataset!r}")
    if split is None and dataset == "daisee":
        split = SPLITS[0]
    args = (root,) if split is None else (root, split)
    return ADAPTERS[dataset](*args, **options)


def resolve_dataset(root: str | Path, dataset: str, splits: Sequence[str] = SPLITS) -> str:
    """How a command reads ``root`` given its ``--dataset``: ``dataset`` itself unless it is
    ``auto``; ``auto`` is ``daisee`` when ``root`` has the label file
    (``Labels/<split>Labels.csv``) of one of ``splits`` (default: any split), else ``folder``.

    Evaluation reads any labelled split as DAiSEE; pre-training, which reads the Train split,
    passes ``splits=("Train",)``.
    """
    if dataset != "auto":
        return dataset
    return "daisee" if any(label_file(root, split).is_file() for split in splits) else "folder"
