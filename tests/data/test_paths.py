"""Label files and manifests name clips; they never decide which file is opened, so a
hostile or broken one cannot reach outside the data root."""

import numpy as np

from fmae.data import list_clips
from fmae.data.preprocess import find_videos
from fmae.data.video_writer import write_video


def _video(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, np.zeros((2, 16, 16, 3), np.uint8), fps=5)


def test_label_rows_cannot_point_outside_the_root(tmp_path):
    root = tmp_path / "root"
    _video(root / "DataSet" / "Train" / "s1" / "c1" / "c1.avi")
    _video(tmp_path / "outside" / "secret.avi")  # exists, but outside the root
    (root / "Labels").mkdir(parents=True)
    (root / "Labels" / "TrainLabels.csv").write_text(
        "ClipID,Boredom,Engagement,Confusion,Frustration \n"
        "c1.avi,0,2,0,0\n"
        "../../../outside/secret.avi,0,3,0,0\n"
        "/etc/passwd,0,1,0,0\n"
    )
    items = list_clips(root, "Train")
    assert [(p.name, level) for p, level in items] == [("c1.avi", 2)]
    assert all(p.resolve().is_relative_to(root.resolve()) for p, _ in items)


def test_preprocessing_only_finds_videos_under_its_source(tmp_path):
    src = tmp_path / "src"
    _video(src / "a" / "x.avi")
    _video(tmp_path / "elsewhere" / "y.avi")
    (src / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    found = find_videos(src)
    assert [str(p) for p in found] == ["a/x.avi"]
