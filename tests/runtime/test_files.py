"""Atomic writes fail whole: the file asked for is untouched, the temporary is gone, and the
error names the file asked for; safetensors' failed writes are ``OSError`` like Python's."""

import errno

import pytest
import torch
from safetensors.torch import load_file

from fmae.runtime.files import (
    out_of_room,
    remove_temporaries,
    save_tensors,
    write_atomically,
    write_json,
    write_tensors,
)


def test_a_failed_write_leaves_the_old_file_and_names_it(tmp_path):
    path = write_json(tmp_path / "result.json", {"good": 1})

    def fill_up(tmp):
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))

    with pytest.raises(OSError) as failed:
        write_atomically(path, fill_up)
    assert failed.value.errno == errno.ENOSPC and failed.value.filename == str(path)
    assert out_of_room(failed.value)
    assert path.read_text() == '{\n "good": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_errors_of_other_files_keep_their_names(tmp_path):
    def read_elsewhere(tmp):
        (tmp_path / "missing").read_text()

    with pytest.raises(FileNotFoundError) as failed:
        write_atomically(tmp_path / "out.txt", read_elsewhere)
    assert failed.value.filename == str(tmp_path / "missing")
    assert not out_of_room(failed.value)


def test_safetensors_write_errors_are_os_errors(tmp_path):
    with pytest.raises(FileNotFoundError) as failed:  # safetensors itself raises SafetensorError
        save_tensors(tmp_path / "no-such-folder" / "x.safetensors", {"x": torch.zeros(3)})
    assert failed.value.filename == str(tmp_path / "no-such-folder" / "x.safetensors")


def test_write_tensors_writes_whole_files(tmp_path):
    path = write_tensors(tmp_path / "t.safetensors", {"x": torch.arange(4.0)}, metadata={"note": "a"})
    assert torch.equal(load_file(path)["x"], torch.arange(4.0))
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]


def test_remove_temporaries_removes_a_files_leftovers_only(tmp_path):
    names = [".crops.avi.4242.tmp", ".crops.avi.77.tmp", "crops.avi", ".other.avi.4242.tmp", ".crops.avi.4242"]
    for name in names:
        (tmp_path / name).write_text("x")
    remove_temporaries(tmp_path / "crops.avi")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".crops.avi.4242", ".other.avi.4242.tmp", "crops.avi"]
