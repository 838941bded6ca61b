import os
import re

import pytest

from rtresnet.errors import RtresnetError
from rtresnet.fileutil import atomic_path, atomic_write_text, check_output_path, sha256_file


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "model.onnx"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["model.onnx"]  # no temp file left behind


def test_output_path_checks(tmp_path):
    with pytest.raises(RtresnetError, match="is a directory"):
        check_output_path(tmp_path)
    assert check_output_path(tmp_path / "missing" / "x.onnx") == tmp_path / "missing" / "x.onnx"
    assert not (tmp_path / "missing").exists()  # created by the write, not by the check
    (tmp_path / "file").write_text("")
    with pytest.raises(RtresnetError, match="file is a file"):
        check_output_path(tmp_path / "file" / "x.onnx")
    assert check_output_path(tmp_path / "x.onnx") == tmp_path / "x.onnx"


def test_missing_folders_are_created_and_removed_again_on_failure(tmp_path):
    atomic_write_text(tmp_path / "a" / "b" / "x.txt", "ok")
    assert (tmp_path / "a" / "b" / "x.txt").read_text() == "ok"
    with pytest.raises(ValueError), atomic_path(tmp_path / "c" / "d" / "y.txt") as tmp:
        tmp.write_text("half")
        raise ValueError("the write failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_unwritable_folder(tmp_path, monkeypatch):
    # root ignores permission bits, so ask os.access the way an unprivileged user's process would be answered
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(RtresnetError, match="not writable"):
        check_output_path(tmp_path / "x.onnx")


def test_sha256(tmp_path):
    p = tmp_path / "a"
    p.write_bytes(b"abc")
    assert sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_atomic_files_get_the_umask_mode_not_0600(tmp_path):
    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "m.json", "{}")
    finally:
        os.umask(umask)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644


def test_check_input_file_says_what_the_path_is(tmp_path):
    from rtresnet.fileutil import check_input_file

    (tmp_path / "ok").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "ok")
    assert check_input_file(tmp_path / "link") == tmp_path / "link"
    (tmp_path / "broken").symlink_to(tmp_path / "gone")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    os.mkfifo(tmp_path / "fifo")
    for name, words in [("missing", "model not found"), ("broken", "broken symbolic link (to"),
                        ("loop", "symbolic link loop"), ("fifo", "is a FIFO, not a regular file"),
                        (".", "is a folder"), ("ok/x", "Not a directory")]:
        with pytest.raises(RtresnetError, match=re.escape(words)):
            check_input_file(tmp_path / name, "model")


def test_existing_special_output_is_not_replaced(tmp_path):
    os.mkfifo(tmp_path / "out")
    with pytest.raises(RtresnetError, match="is a FIFO, not a regular file"):
        atomic_write_text(tmp_path / "out", "x")
    assert (tmp_path / "out").is_fifo() and os.listdir(tmp_path) == ["out"]
