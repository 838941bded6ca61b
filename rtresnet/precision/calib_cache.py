"""Calibration ranges on disk, keyed by everything that changes them, so a rerun skips calibration.

Location: ``$RTRESNET_HOME/calib/<key>.json`` by default. The key is content-addressed (FP32 model sha256,
method, percentile, target, data fingerprint, batch, onnxruntime version), so the same calibration is
reused whatever the output file is called, and a changed model or data set can never hit a stale entry.
The ranges are serialized with onnxruntime's own ``TensorsData.to_dict`` / ``from_dict``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from rtresnet.fileutil import atomic_write_text

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: entropy/percentile histograms updated per sample (ModelOpt's method)


@dataclass(frozen=True)
class CalibrationKey:
    model_sha256: str
    method: str
    percentile: float | None  # only for method "percentile"
    target: str
    data_fingerprint: str
    calib_batch: int
    onnxruntime: str

    @property
    def digest(self) -> str:
        text = json.dumps({"version": CACHE_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


@contextlib.contextmanager
def quiet():
    """onnxruntime.quantization prints progress and warns through the root logger; keep both off the user."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()) as out:
            yield out
    finally:
        root.setLevel(level)


CACHE_FOLDER = "calib"  # the one name of a calibration cache folder, under $RTRESNET_HOME or a work folder


def default_cache_dir(root: str | Path | None = None) -> Path:
    """``<root>/calib``; ``root`` defaults to $RTRESNET_HOME (~/.cache/rtresnet)."""
    from rtresnet.environment import rtresnet_home

    return Path(root if root is not None else rtresnet_home()) / CACHE_FOLDER


def cache_file(key: CalibrationKey, cache_dir: str | Path | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / f"{key.digest[:32]}.json"


def load_ranges(path: Path, key: CalibrationKey):
    """The cached ``TensorsData`` and its original calibration time, or None (missing, stale or unreadable)."""
    from onnxruntime.quantization.calibrate import TensorsData

    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text())
        if payload.get("key") != asdict(key):
            log.warning("calibration cache %s belongs to another model or setting; recalibrating", path)
            return None
        return TensorsData.from_dict(payload["ranges"]), float(payload.get("seconds", 0.0))
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("ignoring unreadable calibration cache %s (%s); recalibrating", path, e)
        return None


def save_ranges(path: Path, key: CalibrationKey, ranges, seconds: float) -> Path:
    from onnxruntime.quantization.calibrate import CalibrationCacheEncoder

    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"version": CACHE_VERSION, "key": asdict(key), "seconds": seconds, "ranges": ranges.to_dict()}
    return atomic_write_text(path, json.dumps(payload, cls=CalibrationCacheEncoder))


def write_trt_table(ranges, path: Path) -> Path | None:
    """TensorRT-style calibration table (``calibration.flatbuffers``, the onnxruntime TensorRT EP's format)
    via onnxruntime's ``write_calibration_table``; None if the library cannot write it here."""
    import tempfile

    from onnxruntime.quantization.quant_utils import write_calibration_table

    from rtresnet.fileutil import atomic_write_bytes

    try:
        with tempfile.TemporaryDirectory() as tmp:
            with quiet():
                write_calibration_table(ranges.data, dir=tmp)
            return atomic_write_bytes(path, (Path(tmp) / "calibration.flatbuffers").read_bytes())
    except (ImportError, OSError, ValueError, AttributeError) as e:
        log.warning("could not write the TensorRT calibration table (%s: %s)", type(e).__name__, e)
        return None
