"""Reading images safely: any photo a user gives (path, PIL, numpy, tensor) becomes one upright uint8
RGB numpy array (H, W, 3), the layout PIL, OpenCV and numpy users share. Predicting imports neither
torch nor the data set code: `import torch` alone was most of the time to a first result (README, Speed)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .errors import FkdError

MAX_IMAGE_PIXELS = 100_000_000  # a larger image is treated as a decompression bomb


def decode_image(source) -> np.ndarray:
    """Any PIL-readable file or PIL image -> upright uint8 RGB array (H, W, 3).

    Opens by content (the data set's `.jpg` files are PNGs), applies EXIF orientation, and turns
    grayscale, RGBA, palette, 16-bit and CMYK images into 8-bit RGB.
    """
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img = source if isinstance(source, Image.Image) else Image.open(source)
        img.load()
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit/32-bit grey: rescale to 8 bits instead of clipping at 255
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / hi * 255.0, 0, 255).astype(np.uint8))
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        # composite on black, as the data set's frames were annotated on their RGB content
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    img = img.convert("RGB")
    return np.array(img, dtype=np.uint8)  # a copy the caller owns (PIL's buffer may be read-only)


def image_format(path: Path) -> str | None:
    """The format a file's content is in ("JPEG", "PNG", ...), from its header only."""
    try:
        with Image.open(path) as img:
            return img.format
    except (OSError, ValueError, SyntaxError):
        return None


def read_image(path: Path) -> np.ndarray:
    """`decode_image` with failures turned into one-line errors naming the file."""
    try:
        return decode_image(path)
    except FileNotFoundError:
        raise FkdError(f"{path}: no such file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise FkdError(f"{path}: image too large (over {MAX_IMAGE_PIXELS:,} pixels), refused as a decompression bomb") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise FkdError(f"{path}: not a readable image ({exc.__class__.__name__}: {exc})") from None


def to_image_array(image, bgr: bool = False) -> tuple[str | None, np.ndarray]:
    """Anything `predict()` takes -> (path or None, upright uint8 RGB array (H, W, 3)).

    A path, a PIL image, a numpy array (`HxWx3` RGB, or BGR with `bgr=True` as OpenCV gives;
    `HxWx4` with alpha; `HxW` grey; uint8), or a torch tensor (uint8 `3xHxW`, `1xHxW` or `HxW`).
    """
    if isinstance(image, (str, Path)):
        return str(image), read_image(Path(image))
    if isinstance(image, Image.Image):
        return None, decode_image(image)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise FkdError(f"a numpy image must be uint8 HxW, HxWx3 or HxWx4; got {image.dtype} {image.shape}")
        if image.ndim == 3 and image.shape[2] >= 3 and bgr:
            image = np.concatenate([image[:, :, 2::-1], image[:, :, 3:]], axis=2)
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        return None, decode_image(Image.fromarray(np.ascontiguousarray(image)))
    if type(image).__module__.startswith("torch"):  # a tensor, told apart without importing torch
        shape, dtype = tuple(image.shape), str(image.dtype)
        if dtype != "torch.uint8" or len(shape) not in (2, 3) or (len(shape) == 3 and shape[0] not in (1, 3)):
            raise FkdError(f"a tensor image must be uint8 HxW, 1xHxW or 3xHxW; got {dtype} {shape}")
        array = image.detach().cpu().numpy()
        array = array if array.ndim == 3 else array[None]
        if bgr and array.shape[0] == 3:
            array = array[::-1]
        return None, np.ascontiguousarray(np.broadcast_to(array, (3, *array.shape[1:])).transpose(1, 2, 0))
    raise FkdError(f"cannot read an image from a {type(image).__name__}: give a path, a PIL image, a numpy array or a tensor")
