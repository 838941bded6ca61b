"""What calibration data a build uses, known before a single image is decoded: the engine cache key's data part.

``describe_calib_data`` lists the source and fingerprints it cheaply: an image folder or list by its files'
relative paths, sizes and modification times, a .npy/.npz by its bytes, ``digits``/``synthetic`` by name. A
changed, added or removed image changes the fingerprint, so a cached engine is never reused for other data; and
nothing is decoded, so a cache hit stays fast. (The calibration ranges cache keys on the decoded samples instead:
``Dataset.fingerprint``.)
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FINGERPRINT_CHARS = 16  # 64 bits: enough to tell two data sets apart, short enough to read in a sidecar


@dataclass(frozen=True)
class CalibSource:
    data: str              # as given: an absolute path, or "digits" / "synthetic"
    kind: str              # "image folder", "image list", "tensors", "digits", "synthetic"
    count: int | None      # samples available (None: known only once loaded)
    fingerprint: str       # FINGERPRINT_CHARS hex characters of a sha256

    def record(self) -> dict:
        """The sidecar's (and the engine cache key's) description of the data."""
        return {"data": self.data, "data_kind": self.kind, "data_count": self.count,
                "data_fingerprint": self.fingerprint}


def describe_calib_data(calib_data: str | Path) -> CalibSource:
    """``calib_data`` (anything ``load_dataset`` takes) described without decoding it. Sources that do not exist
    are left for ``load_dataset`` to refuse with its own message, so they get a fingerprint of their name."""
    text = str(calib_data)
    if text in ("digits", "synthetic"):
        return CalibSource(text, text, None, _digest(text.encode()))
    path = Path(calib_data).expanduser().absolute()
    if path.is_dir():
        from rtresnet.preprocess import find_images

        files = find_images(path)
        return CalibSource(str(path), "image folder", len(files), _files_digest(files, path))
    if path.is_file() and path.suffix.lower() == ".txt":
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
        listed = [line for line in lines if line and not line.startswith("#")]
        files = [Path(p).expanduser() if Path(p).expanduser().is_absolute() else path.parent / p for p in listed]
        return CalibSource(str(path), "image list", len(files), _files_digest(files, None))
    if path.is_file() and path.suffix.lower() in (".npy", ".npz"):
        return CalibSource(str(path), "tensors", _array_count(path), _file_digest(path))
    return CalibSource(str(path), "missing", None, _digest(str(path).encode()))


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:FINGERPRINT_CHARS]


def _files_digest(files: list[Path], root: Path | None) -> str:
    h = hashlib.sha256()
    for f in files:
        try:
            st = f.stat()
            stat = f"{st.st_size} {st.st_mtime_ns} {st.st_ctime_ns}"  # ctime: `cp -p`/`touch -r` can't fake it
        except OSError:
            stat = "missing"
        h.update(f"{f.relative_to(root) if root is not None else f}\0{stat}\n".encode())
    return h.hexdigest()[:FINGERPRINT_CHARS]


def _file_digest(path: Path) -> str:
    from rtresnet.fileutil import sha256_file

    return sha256_file(path)[:FINGERPRINT_CHARS]


def _array_count(path: Path) -> int | None:
    """Samples in a .npy (its header) or in a .npz's inputs array (``inputs``, or its only non-label array)."""
    try:
        if path.suffix.lower() == ".npy":
            return int(np.load(path, mmap_mode="r", allow_pickle=False).shape[0])
        with zipfile.ZipFile(path) as z:
            names = [n[:-4] for n in z.namelist() if n.endswith(".npy")]
            keys = [n for n in names if n != "labels"]
            key = "inputs" if "inputs" in names else keys[0] if len(keys) == 1 else None
            if key is None:
                return None
            with z.open(key + ".npy") as f:
                version = np.lib.format.read_magic(f)
                shape = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                         else np.lib.format.read_array_header_2_0)(f)[0]
            return int(shape[0]) if shape else None
    except (OSError, ValueError, IndexError, KeyError, zipfile.BadZipFile):
        return None  # load_dataset says what is wrong with the file

