"""Images to model inputs, exactly as the model's metadata says (resize, center-crop, scale, normalize).

Every stage that touches images (calibration, predict, bench) goes through here, so a model sees at run time
what it was calibrated and verified with.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from rtresnet.errors import RtresnetError
from rtresnet.fileutil import check_input_file
from rtresnet.spec import ModelInfo, Preprocessing

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
             "nearest": Image.Resampling.NEAREST}


def open_image(path: str | Path) -> Image.Image:
    """Decode an image file and apply its EXIF orientation; errors name the file and say what is wrong.

    Only regular files are opened (a FIFO would block forever), and an image declaring more pixels than
    ``PIL.Image.MAX_IMAGE_PIXELS`` is refused from its header, before anything is decoded: a small file can declare
    gigapixels (a decompression bomb)."""
    if check_input_file(path, "image").stat().st_size == 0:
        raise RtresnetError(f"cannot decode image {path}: the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its limit and twice it; a warning would still decode the bomb.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                return ImageOps.exif_transpose(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        declared = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(declared.group(1)):,} pixels" if declared else "too many pixels"
        raise RtresnetError(f"image {path} declares {size}, over the limit of {Image.MAX_IMAGE_PIXELS:,} pixels "
                            "(a guard against decompression bombs); downscale it first") from None
    except UnidentifiedImageError:
        raise RtresnetError(f"cannot decode image {path}: not an image file (JPEG, PNG, BMP, WebP...)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # how Pillow's decoders report malformed data
        raise RtresnetError(f"cannot decode image {path}: {e or type(e).__name__}") from None


def to_mode(img: Image.Image, channel_order: str) -> Image.Image:
    """Convert any PIL mode (palette, RGBA, CMYK, 16-bit, float) to 8-bit "RGB" or "L"."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")  # composite on white, as viewers show transparent pixels
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    target = "L" if channel_order == "L" else "RGB"
    try:
        return img if img.mode == target else img.convert(target)
    except ValueError as e:  # a mode Pillow cannot convert (e.g. LAB or I;16S from a TIFF under another name)
        raise RtresnetError(f"cannot convert a {img.mode} image to {target}: {e}") from None


def resize_crop(img: Image.Image, prep: Preprocessing) -> Image.Image:
    """Resize the shorter side to ``prep.resize``, then center-crop ``prep.crop`` (torchvision's eval transform)."""
    w, h = img.size
    scale = prep.resize / min(w, h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    limit = Image.MAX_IMAGE_PIXELS
    if limit and new_w * new_h > limit:  # e.g. 1x100000: its shorter side scaled up makes gigapixels
        raise RtresnetError(f"an image of {h}x{w} (HxW) resized to shorter side {prep.resize} would be "
                            f"{new_h}x{new_w}, over the limit of {limit:,} pixels; crop it to a less extreme "
                            "aspect ratio first")
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), _RESAMPLE[prep.interpolation])
    ch, cw = prep.crop
    if new_w < cw or new_h < ch:
        raise RtresnetError(f"an image of {h}x{w} (HxW) resized to shorter side {prep.resize} cannot fill the "
                            f"{ch}x{cw} crop; export the model with --resize {max(ch, cw)} or more")
    left, top = int(round((new_w - cw) / 2.0)), int(round((new_h - ch) / 2.0))
    return img.crop((left, top, left + cw, top + ch))


def normalize(pixels: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """(N, H, W, C) stored pixel values -> (N, C, H, W) float32 normalized input."""
    x = pixels.astype(np.float32) / np.float32(prep.value_range)
    x = (x - np.asarray(prep.mean, np.float32)) / np.asarray(prep.std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def image_pixels(img: Image.Image, prep: Preprocessing) -> np.ndarray:
    """One image -> (H, W, C) uint8 after mode conversion, resize and crop."""
    arr = np.asarray(resize_crop(to_mode(img, prep.channel_order), prep), dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def preprocess_images(images: Sequence[Image.Image | str | Path], info: ModelInfo) -> np.ndarray:
    """Images (PIL or paths) -> the model's input batch: float32 NCHW, or uint8 NHWC for uint8-input graphs."""
    if len(images) == 0:
        raise RtresnetError("no images to preprocess")
    prep = info.preprocessing
    pixels = np.stack([image_pixels(open_image(i) if isinstance(i, (str, Path)) else i, prep) for i in images])
    return pixels_to_input(pixels, info)


def pixels_to_input(pixels: np.ndarray, info: ModelInfo) -> np.ndarray:
    """Cropped (N, H, W, C) uint8 pixels -> what the graph takes (its own preprocessing does the rest)."""
    if info.input_format == "float-nchw":
        return normalize(pixels, info.preprocessing)
    rgb = pixels if pixels.shape[-1] == 3 else np.repeat(pixels, 3, axis=-1)
    return np.ascontiguousarray(rgb[..., ::-1] if info.input_format == "uint8-nhwc-bgr" else rgb)


def random_pixels(info: ModelInfo, n: int, seed: int = 0) -> np.ndarray:
    """Seeded (n, H, W, C) uint8 frames, as the image pipeline hands them over after resize and crop: inputs with
    the value range of real images when no data is at hand (export verification, synthetic data)."""
    h, w = info.input_size
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, info.in_channels), dtype=np.uint8)


def find_images(folder: str | Path) -> list[Path]:
    """Image files below ``folder`` (recursive), sorted for a deterministic order."""
    root = Path(folder)
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
