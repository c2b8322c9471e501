"""Data-set adapters on hand-made layouts: DAiSEE, EmotiW engagement, plain folders and
folder-per-class FER sets, with the bad-label and missing-file cases."""

import contextlib
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from fmae.data import clips as clips_mod
from fmae.data import datasets
from fmae.data.clips import ClipItem, label_file
from fmae.data.datasets import (
    daisee_items,
    emotiw_items,
    fer_classes,
    fer_items,
    folder_items,
    list_items,
    read_emotiw_labels,
    windows,
)
from fmae.data.synthetic import SyntheticConfig, ensure_synthetic_daisee
from fmae.data.video_writer import write_video


@contextlib.contextmanager
def warnings_of(*loggers: logging.Logger):
    """Messages of the warnings ``loggers`` emit inside the block (works with ``-p no:logging``)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    for lg in loggers:
        lg.addHandler(handler)
    try:
        yield records
    finally:
        for lg in loggers:
            lg.removeHandler(handler)


def video(path: Path, frames: int = 10) -> Path:
    """A tiny MJPEG video of ``frames`` frames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, np.full((frames, 16, 16, 3), 90, np.uint8), fps=10)
    return path


@pytest.fixture(scope="module")
def daisee(tmp_path_factory) -> Path:
    cfg = SyntheticConfig(
        seed=2, num_subjects=3, clips_per_subject=2, num_frames=6, size=16, split_fractions=(2 / 3, 1 / 3, 0.0)
    )
    return ensure_synthetic_daisee(tmp_path_factory.mktemp("daisee"), cfg)


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory) -> dict[int, bytes]:
    """Encoded tiny videos by frame count, written once and copied into layouts."""
    folder = tmp_path_factory.mktemp("videos")
    return {n: video(folder / f"{n}.avi", n).read_bytes() for n in (5, 10, 40)}


def put(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------ DAiSEE


def test_daisee_items_follow_the_label_csv(daisee):
    items = daisee_items(daisee, "Train")
    labels = clips_mod.read_labels(label_file(daisee, "Train"))
    assert len(items) == 4 and all(isinstance(it, ClipItem) for it in items)
    assert {f"{it.path.stem}.avi": it.label for it in items} == labels
    assert all(it.start == 0 and it.stop is None for it in items)
    assert list_items("daisee", daisee, "Validation") == daisee_items(daisee, "Validation")


def test_daisee_bad_labels_and_missing_files(tmp_path, daisee):
    root = tmp_path / "copy"
    shutil.copytree(daisee, root)
    csv = label_file(root, "Train")
    lines = csv.read_text().splitlines()
    header, rows = lines[0], lines[1:]

    bad_level = rows[1].split(",")
    bad_level[2] = "7"
    csv.write_text("\n".join([header, rows[0], ",".join(bad_level)] + rows[2:]) + "\n")
    with pytest.raises(ValueError, match=r"TrainLabels.csv:3: Engagement level 7 is not one of \[0, 1, 2, 3\]"):
        daisee_items(root, "Train")
    csv.write_text("\n".join([header, rows[0], "oops"] + rows[2:]) + "\n")
    with pytest.raises(ValueError, match=r"TrainLabels.csv:3: bad row"):
        daisee_items(root, "Train")
    csv.write_text("\n".join([header] + rows + [rows[0]]) + "\n")
    with pytest.raises(ValueError, match=r"TrainLabels.csv:6: ClipID .* twice"):
        daisee_items(root, "Train")

    # A missing row (a video without a label) and an extra row (a label without a video): logged, skipped.
    extra = "9999991001.avi,0,1,0,0"
    csv.write_text("\n".join([header] + rows[1:] + [extra]) + "\n")
    with warnings_of(clips_mod.log) as records:
        items = daisee_items(root, "Train")
    assert len(items) == 3
    messages = " ".join(r.getMessage() for r in records)
    assert "have no row in" in messages and rows[0].split(".")[0] in messages
    assert "have no video" in messages and "9999991001" in messages


# ------------------------------------------------------------------------------ EmotiW


@pytest.fixture
def emotiw(tmp_path, clip_bytes) -> Path:
    """EmotiW's layout: Train/ and validation/ folders of subject_<n>_Vid_<k> videos."""
    root = tmp_path / "emotiw"
    put(root / "Train" / "subject_1_Vid_1.avi", clip_bytes[40])
    put(root / "Train" / "subject_2_Vid_3.avi", clip_bytes[10])
    put(root / "Train" / "notes.txt", b"not a video")
    put(root / "validation" / "subject_7_Vid_2.avi", clip_bytes[5])
    return root


def test_emotiw_items_cut_videos_into_labelled_windows(emotiw):
    (emotiw / "Labels").mkdir()
    (emotiw / "Labels" / "train_labels.csv").write_text(
        "chunk,label\nsubject_1_Vid_1.avi,0.66\nsubject_2_Vid_3.wmv,1\n"
    )
    (emotiw / "validation_labels.txt").write_text("subject_7_Vid_2 0.33\n")
    items = emotiw_items(emotiw, "train", window=16, hop=8)
    first = emotiw / "Train" / "subject_1_Vid_1.avi"
    second = emotiw / "Train" / "subject_2_Vid_3.avi"
    # 40 frames, windows of 16 every 8: starts 0, 8, 16, 24; the 10-frame video is one short window.
    assert items == [ClipItem(first, 0.66, s, s + 16) for s in (0, 8, 16, 24)] + [ClipItem(second, 1.0, 0, 10)]
    assert all(isinstance(it.label, float) for it in items)
    assert emotiw_items(emotiw, "validation", window=None) == [
        ClipItem(emotiw / "validation" / "subject_7_Vid_2.avi", 0.33)
    ]
    assert len(list_items("emotiw", emotiw, "val", window=20)) == 1


def test_emotiw_label_file_formats(tmp_path):
    xlsx = pytest.importorskip("openpyxl")
    book = xlsx.Workbook()
    sheet = book.active
    for row in (
        ["Video", "Label"],
        ["subject_1_Vid_1.mp4", 0],
        ["subject_3_Vid_5", 0.333],
        [None, None],
        ["subject_4_Vid_6", 1],
    ):
        sheet.append(row)
    book.save(tmp_path / "labels_train.xlsx")
    want = {"subject_1_Vid_1": (0.0, 2), "subject_3_Vid_5": (0.33, 3), "subject_4_Vid_6": (1.0, 5)}
    assert read_emotiw_labels(tmp_path / "labels_train.xlsx") == want
    # pandas' to_csv keeps its index as a first column.
    (tmp_path / "indexed.csv").write_text(
        ",chunk,label\n0,subject_1_Vid_1.mp4,0.0\n1,subject_3_Vid_5.mp4,0.33\n\n2,subject_4_Vid_6.mp4,1.0\n"
    )
    assert read_emotiw_labels(tmp_path / "indexed.csv") == want
    (tmp_path / "list.txt").write_text(
        "name\tlevel\nsubject_1_Vid_1\t0\nsubject_3_Vid_5\t0.33\n\nsubject_4_Vid_6\t1.0\n"
    )
    assert read_emotiw_labels(tmp_path / "list.txt") == want


@pytest.mark.parametrize(
    "text, match",
    [
        (
            "video,label\nsubject_1_Vid_1,0.66\nsubject_2_Vid_1,0.5\n",
            r"bad.csv:3: level 0.5 of subject_2_Vid_1 is not one of",
        ),
        (
            "video,label\nsubject_1_Vid_1,0.66\nsubject_2_Vid_1,high\n",
            r"bad.csv:3: level 'high' of subject_2_Vid_1 is not a number",
        ),
        (
            "subject_1_Vid_1,0.66\nsubject_1_Vid_1.mp4,1\n",
            r"bad.csv:2: subject_1_Vid_1.mp4 is listed twice \(first on line 1\)",
        ),
        ("video,label\nsubject_1_Vid_1\n", r"bad.csv:2: expected '<video>, <level>'"),
        ("video,label\n\n", r"bad.csv: no labelled videos"),
    ],
)
def test_emotiw_bad_label_files_name_file_and_line(tmp_path, text, match):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(ValueError, match=match):
        read_emotiw_labels(tmp_path / "bad.csv")


def test_emotiw_missing_rows_videos_and_layout_errors(emotiw, tmp_path):
    labels = emotiw / "train_engagement_labels.csv"
    labels.write_text("video,label\nsubject_1_Vid_1,0\nsubject_9_Vid_9,1\n")
    with warnings_of(datasets.log) as records:
        items = emotiw_items(emotiw, "train", window=None)
    assert items == [ClipItem(emotiw / "Train" / "subject_1_Vid_1.avi", 0.0)]
    messages = [r.getMessage() for r in records]
    assert any("subject_9_Vid_9" in m and "line 3" in m and "train_engagement_labels.csv" in m for m in messages)
    assert any("subject_2_Vid_3.avi" in m and "no row" in m for m in messages)

    with pytest.raises(FileNotFoundError, match="several label files"):
        (emotiw / "Labels").mkdir()
        (emotiw / "Labels" / "Train_Labels.csv").write_text("subject_1_Vid_1,0\n")
        emotiw_items(emotiw, "train")
    shutil.rmtree(emotiw / "Labels")
    labels.unlink()
    with pytest.raises(
        FileNotFoundError,
        match=r"no label file for split train: expected a .xlsx/.csv/.txt whose name holds 'label' and 'tra'",
    ):
        emotiw_items(emotiw, "train")
    with pytest.raises(FileNotFoundError, match=r"no test folder .* expected one of \['Test', 'test'"):
        emotiw_items(emotiw, "test")
    (emotiw / "Test").mkdir()
    put(emotiw / "Test" / "subject_5_Vid_1.avi", (emotiw / "validation" / "subject_7_Vid_2.avi").read_bytes())
    assert emotiw_items(emotiw, "test", window=None) == [ClipItem(emotiw / "Test" / "subject_5_Vid_1.avi", None)]
    with pytest.raises(ValueError, match="split must be one of"):
        emotiw_items(emotiw, "dev")
    labels.write_text("subject_9_Vid_9,1\n")
    with pytest.raises(FileNotFoundError, match="none of the 1 videos"):
        emotiw_items(emotiw, "train", label_file=labels)


# ------------------------------------------------------------------- folders and FER sets


def test_folder_items_find_videos_recursively_and_skip_unreadable_ones(tmp_path, clip_bytes):
    root = tmp_path / "videos"
    a = put(root / "a.avi", clip_bytes[10])
    b = put(root / "deep" / "er" / "b.AVI", clip_bytes[40])
    put(root / "b.regions.npz", b"")
    put(root / "readme.md", b"")
    put(root / ".hidden.avi", b"")
    assert folder_items(root) == [ClipItem(a), ClipItem(b)]
    broken = put(root / "c.avi", b"\x00" * 100)
    with warnings_of(datasets.log) as records:
        items = folder_items(root, window=16)
    assert items == [ClipItem(a, None, 0, 10), ClipItem(b, None, 0, 16), ClipItem(b, None, 16, 32)]
    assert any(str(broken) in r.getMessage() for r in records)
    assert list_items("folder", tmp_path, "videos") == folder_items(root)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no videos"):
        folder_items(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        folder_items(tmp_path / "nowhere")


def test_windows(tmp_path, clip_bytes):
    path = put(tmp_path / "v.avi", clip_bytes[40])
    assert windows(path, 1, None) == [ClipItem(path, 1)]
    assert [(it.start, it.stop) for it in windows(path, 1, 16)] == [(0, 16), (16, 32)]
    assert [(it.start, it.stop) for it in windows(path, 1, 40)] == [(0, 40)]
    assert [(it.start, it.stop) for it in windows(path, 1, 64)] == [(0, 40)]
    assert [it.start for it in windows(path, 1, 30, hop=5)] == [0, 5, 10]
    with pytest.raises(ValueError, match="window and hop"):
        windows(path, 1, 0)


def test_fer_items_label_by_class_folder(tmp_path, clip_bytes):
    root = tmp_path / "crema"
    for split, cls, name in (
        ("train", "happy", "1001.avi"),
        ("train", "angry", "1002.avi"),
        ("train", "angry", "1003.mp4"),
        ("val", "happy", "2001.avi"),
    ):
        put(root / split / cls / name, clip_bytes[5])
    put(root / "train" / "angry" / "list.csv", b"")
    (root / "train" / "sad").mkdir()
    assert fer_classes(root, "train") == ["angry", "happy", "sad"]
    items = fer_items(root, "train")
    assert [(it.path.name, it.label) for it in items] == [("1002.avi", 0), ("1003.mp4", 0), ("1001.avi", 1)]
    # The validation split keeps the training split's class indices.
    assert [(it.path.name, it.label) for it in fer_items(root, "val", fer_classes(root, "train"))] == [("2001.avi", 1)]
    assert [it.label for it in fer_items(root, "val")] == [0]
    with pytest.raises(ValueError, match=r"class folders \['sad'\] are not among the classes"):
        fer_items(root, "train", ["angry", "happy"])
    with pytest.raises(FileNotFoundError, match="expected a folder per class"):
        fer_items(root, "test")
    (root / "empty" / "x").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no videos"):
        fer_items(root, "empty")
    assert list_items("fer", root, "val") == fer_items(root, "val")
    with pytest.raises(ValueError, match="dataset must be one of"):
        list_items("kinetics", root, "train")
