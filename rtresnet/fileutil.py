"""Atomic file writes and hashing: a killed process never leaves a half-written artifact behind."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rtresnet.errors import RtresnetError


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


def check_input_file(path: str | Path, what: str = "file") -> Path:
    """Refuse an input that is not a regular file, saying what it is instead: missing, a broken symlink, a symlink
    loop, a folder, or a FIFO/socket/device (reading those can block forever or never end)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if path.is_symlink():
            raise RtresnetError(f"{what} {path} is a broken symbolic link (to {os.readlink(path)}); "
                                "point it at an existing file") from None
        raise RtresnetError(f"{what} not found: {path}") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise RtresnetError(f"{what} {path} is a symbolic link loop; point it at a file") from None
        raise RtresnetError(f"cannot read {what} {path}: {e.strerror}") from None
    if stat.S_ISDIR(mode):
        raise RtresnetError(f"{what} {path} is a folder; give a file")
    if not stat.S_ISREG(mode):
        raise RtresnetError(f"{what} {path} is a {_kind(mode)}, not a regular file; give a file")
    return path


def _missing_folders(path: Path) -> list[Path]:
    """The folders above ``path`` that do not exist yet, outermost first."""
    missing, parent = [], path.parent if str(path.parent) else Path(".")
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    return missing[::-1]


def check_output_path(path: str | Path) -> Path:
    """Refuse output paths that cannot be written, before any work is done. Missing folders are fine (the write
    creates them) when the nearest existing one is a writable folder."""
    path = Path(path)
    if path.is_dir():
        raise RtresnetError(f"output path {path} is a directory; give a file name")
    if path.exists() and not path.is_file():  # writing would replace e.g. /dev/null or a FIFO with a file
        raise RtresnetError(f"output path {path} is a {_kind(path.stat().st_mode)}, not a regular file; "
                            "give a file name")
    missing = _missing_folders(path)
    existing = (missing[0].parent if missing else path.parent) if str(path.parent) else Path(".")
    existing = existing if str(existing) else Path(".")
    if not existing.is_dir():
        raise RtresnetError(f"cannot create the output folder {path.parent}: {existing} is a file")
    if not os.access(existing, os.W_OK):
        raise RtresnetError(f"output folder {existing} is not writable")
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = check_output_path(path)
    created = _missing_folders(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    os.close(fd)
    tmp_path = Path(tmp)
    done = False
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the result the mode a plain open() would (readable by e.g. Triton)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
        done = True
    finally:
        tmp_path.unlink(missing_ok=True)
        for folder in () if done else reversed(created):  # a failed write leaves no empty folders either
            with contextlib.suppress(OSError):
                folder.rmdir()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())
