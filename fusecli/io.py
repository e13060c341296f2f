"""Reading and writing images: PNG, JPEG, BMP, TIFF; 8/16-bit and float; atomic writes.

Camera RAW files (DNG, CR2, NEF, ARW) are read, never written, with the optional ``raw`` extra
(rawpy, which wraps LibRaw): demosaicked with the camera's white balance into 16-bit sRGB, with
no automatic brightening (the frames of a bracket keep their exposures), oriented as shot; their
descriptive EXIF (camera, lens, exposure, date) is kept like a JPEG's.

Below this module images are float32 tensors (1, C, H, W) in [0, 1] with C = 1 (grey) or 3 (RGB).

Policies:
    * A 3-channel file whose channels are identical (greyscale saved as RGB, common for infrared
      and MRI scans) is read as one channel.
    * Alpha is split off into ``LoadedImage.alpha``; fusion ignores it.
    * The format is recognised by the file's first bytes; a file whose extension says another
      format (a JPEG saved as ``.png``) is read as what it is, with a note naming it.
    * EXIF orientation is applied (JPEG, PNG, TIFF), so pixels are as a viewer shows them.
    * Descriptive EXIF and the ICC profile are read into ``LoadedImage.metadata`` and written
      back on request (JPEG, PNG, TIFF; see ``fusecli.metadata``). Pixel values are never
      colour-managed.
    * The declared size is checked against a pixel limit before any pixel is decoded
      (decompression bombs): ``max_pixels`` or the environment variable FUSECLI_MAX_PIXELS.
    * Writes go to a temporary file in the destination folder, then are renamed into place:
      a crash or Ctrl-C never leaves a partial output.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import struct
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING

import imagecodecs
import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from fusecli.atomic import atomic_path
from fusecli.errors import ImageReadError, ImageWriteError

# Defined in a module without numpy or Pillow (for --help and completion); the aliases
# re-export them to the callers that import them from here.
from fusecli.imagefiles import RAW_EXTENSIONS
from fusecli.imagefiles import SUPPORTED_EXTENSIONS as SUPPORTED_EXTENSIONS
from fusecli.imagefiles import image_files as image_files
from fusecli.imagefiles import natural_key as natural_key
from fusecli.imagefiles import sniff_format as sniff_format
from fusecli.metadata import (
    NO_METADATA,
    ImageMetadata,
    add_png_metadata,
    add_tiff_exif_ifd,
    metadata_from_pillow,
    read_raw_metadata,
    read_tiff_metadata,
    tiff_extratags,
)

if TYPE_CHECKING:
    # Imported where pixels become tensors: the command line lists and plans files with this
    # module (fuse batch --help, completion) and must not wait seconds for torch.
    import torch

DEFAULT_MAX_PIXELS = 250_000_000
# Formats that store 16 bits per channel; JPEG and BMP outputs are 8-bit whatever the sources.
_SIXTEEN_BIT_FORMATS = frozenset({".png", ".tif", ".tiff"})
_TIFF = frozenset({".tif", ".tiff"})
_ALPHA_FORMATS = frozenset({".png", ".tif", ".tiff"})
_EXIF_ORIENTATION = 0x0112
_JPEG = frozenset({".jpg", ".jpeg"})
_METADATA_FORMATS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff"})
# TIFF compression names (the enfuse spelling) and tifffile's; PNG takes a zlib level 0-9.
TIFF_COMPRESSIONS = {"none": None, "deflate": "zlib", "lzw": "lzw", "packbits": "packbits"}
DEFAULT_JPEG_QUALITY = 95
_FORMAT_NAMES = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}


@dataclass(frozen=True)
class LoadedImage:
    """An image read from disk.

    Attributes:
        path: the file it came from.
        pixels: (1, C, H, W) float32 in [0, 1], C = 1 (grey) or 3 (RGB), alpha removed.
        bit_depth: 8 or 16 for integer files, 32 for floating-point TIFF.
        alpha: (1, 1, H, W) in [0, 1] when the file had an alpha channel, else None.
        stored_channels: channels in the file (1 to 4).
        metadata: its descriptive EXIF (orientation reset to 1) and ICC profile.
        notes: what the user may not expect, e.g. a format other than the extension says.
    """

    path: Path
    pixels: torch.Tensor
    bit_depth: int
    alpha: torch.Tensor | None
    stored_channels: int
    metadata: ImageMetadata = NO_METADATA
    notes: tuple[str, ...] = ()

    @property
    def height(self) -> int:
        return int(self.pixels.shape[-2])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[-1])

    @property
    def is_color(self) -> bool:
        return self.pixels.shape[1] == 3


@dataclass(frozen=True)
class WrittenImage:
    """What :func:`write_image` stored.

    Attributes:
        path: the file written.
        width, height: its size in pixels.
        channels: 1 (grey) or 3 (RGB); alpha is not counted.
        bit_depth: bits per channel in the file: 8, 16 or 32 (float TIFF). JPEG and BMP hold 8
            and PNG at most 16, whatever was asked for.
        alpha: whether the file holds an alpha channel.
    """

    path: Path
    width: int
    height: int
    channels: int
    bit_depth: int
    alpha: bool


def max_pixels_limit(max_pixels: int | None = None) -> int:
    """The pixel limit in force: the argument, else FUSECLI_MAX_PIXELS, else the default."""
    if max_pixels is not None:
        return max_pixels
    configured = os.environ.get("FUSECLI_MAX_PIXELS", "").strip()
    if configured:
        try:
            return int(float(configured))
        except ValueError:
            raise ImageReadError(
                f"FUSECLI_MAX_PIXELS={configured!r} is not a number; set it to a pixel count"
            ) from None
    return DEFAULT_MAX_PIXELS


def read_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> LoadedImage:
    """Read an image file.

    Args:
        path: a PNG, JPEG, BMP or TIFF file, or camera RAW with the ``raw`` extra.
        max_pixels: refuse images declaring more pixels than this (see module docstring).

    Returns:
        The image, see :class:`LoadedImage`.

    Raises:
        ImageReadError: the path is missing, not a file, empty, not a supported or intact image,
            too large, or has an unusable channel layout or values. The message names the file.
    """
    path = Path(path)
    _check_readable(path)
    limit = max_pixels_limit(max_pixels)
    if path.suffix.lower() in RAW_EXTENSIONS:
        # Checked by name: RAW files are TIFF inside, which their first bytes would announce.
        return _to_loaded(path, _decode_raw(path, limit), read_raw_metadata(path))
    suffix, notes = _format_of(path)
    try:
        height, width = _declared_size(path, suffix)
        if height * width > limit:
            raise ImageReadError(
                f"{path}: declares {width}x{height} pixels, more than the limit of {limit:,}; "
                "raise it with FUSECLI_MAX_PIXELS if the file is trusted"
            )
        array, orientation, metadata = _decode(path, suffix)
    except ImageReadError:
        raise
    except _DECODE_ERRORS as exc:
        raise ImageReadError(
            f"{path}: not a readable {_FORMAT_NAMES[suffix]} image "
            f"({_short(exc).replace(str(path), path.name)}); "
            "check that the file is complete and really an image"
        ) from None
    array = _apply_orientation(array, orientation)
    return dataclasses.replace(_to_loaded(path, array, metadata), notes=notes)


def write_image(
    path: str | os.PathLike,
    pixels: torch.Tensor,
    *,
    bit_depth: int = 8,
    overwrite: bool = False,
    alpha: torch.Tensor | None = None,
    metadata: ImageMetadata | None = None,
    quality: int | None = None,
    compression: str | None = None,
) -> WrittenImage:
    """Write an image atomically; the format comes from the extension.

    Args:
        path: destination (.png, .jpg/.jpeg, .bmp, .tif/.tiff).
        pixels: (1, C, H, W), (C, H, W) or (H, W) floats in [0, 1], C = 1 or 3.
        bit_depth: 8 or 16 (32 writes float32 TIFF; PNG stores 16). JPEG and BMP hold 8 bits
            only and are written with 8.
        overwrite: replace an existing file.
        alpha: optional (1, 1, H, W) alpha in [0, 1] (stored in PNG and TIFF only).
        metadata: EXIF and ICC profile to embed (JPEG, PNG, TIFF; BMP holds none).
        quality: JPEG quality 1-100; default 95.
        compression: TIFF ``none``, ``deflate`` (default), ``lzw`` or ``packbits``; PNG a zlib
            level ``0``-``9`` (default 6).

    Returns:
        What was stored: path, size, channels and bit depth.

    Raises:
        ImageWriteError: unsupported extension, missing or unwritable folder, existing file,
            quality or compression the format does not take.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    check_writable(path, overwrite=overwrite)
    check_encoding(path, quality=quality, compression=compression)
    with_alpha = alpha is not None and suffix in _ALPHA_FORMATS
    array = _to_array(pixels, alpha if with_alpha else None)
    depth = _storable_depth(suffix, bit_depth)
    data = _encode(
        array,
        suffix,
        depth,
        metadata=metadata if metadata is not None and suffix in _METADATA_FORMATS else None,
        quality=DEFAULT_JPEG_QUALITY if quality is None else quality,
        compression=compression,
    )
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        raise ImageWriteError(f"{path}: could not be written ({_short(exc)})") from None
    stored = 1 if array.ndim == 2 else array.shape[2]
    return WrittenImage(
        path=path,
        width=array.shape[1],
        height=array.shape[0],
        channels=stored - 1 if with_alpha else stored,
        bit_depth=depth,
        alpha=with_alpha,
    )


def check_writable(path: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Raise ImageWriteError unless ``path`` can be written as an image (before any work)."""
    path = Path(path)
    if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
        raise ImageWriteError(
            f"{path}: cannot write {path.suffix or 'files without an extension'}; "
            f"use one of {', '.join(sorted(SUPPORTED_EXTENSIONS))}"
        )
    parent = path.parent
    if not parent.is_dir():
        raise ImageWriteError(f"{path}: the output folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ImageWriteError(f"{path}: the output folder {parent} is not writable")
    if path.is_dir():
        raise ImageWriteError(f"{path} is a folder; give an output file name")
    if path.exists() and not overwrite:
        raise ImageWriteError(
            f"{path} already exists", remedy="allow overwriting to replace it", hint="overwrite"
        )


def check_encoding(
    path: str | os.PathLike,
    *,
    bit_depth: int | None = None,
    quality: int | None = None,
    compression: str | None = None,
) -> None:
    """Raise ImageWriteError unless ``path``'s format can store what is asked, exactly.

    Args:
        path: the output file; its extension picks the format.
        bit_depth: an explicitly requested depth (8, 16, or 32 for float); None: automatic.
        quality: JPEG quality, JPEG only, 1-100.
        compression: see :func:`write_image`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    kind = _FORMAT_NAMES.get(suffix, suffix)
    if bit_depth is not None:
        if bit_depth not in (8, 16, 32):
            raise ImageWriteError(f"bit depth must be 8, 16 or 32 (float), got {bit_depth}")
        if bit_depth == 32 and suffix not in _TIFF:
            raise ImageWriteError(
                f"{path}: {kind} cannot store 32-bit float samples; write a .tif file"
            )
        if bit_depth == 16 and suffix not in _SIXTEEN_BIT_FORMATS:
            raise ImageWriteError(
                f"{path}: {kind} stores 8 bits per channel only; write a .png or .tif file"
            )
    if quality is not None:
        if suffix not in _JPEG:
            raise ImageWriteError(f"{path}: a quality setting applies to JPEG output only")
        if not 1 <= quality <= 100:
            raise ImageWriteError(f"JPEG quality must be 1 to 100, got {quality}")
    if compression is not None:
        if suffix in _TIFF:
            if compression.lower() not in TIFF_COMPRESSIONS:
                raise ImageWriteError(
                    f"{path}: unknown TIFF compression {compression!r}; use "
                    f"{', '.join(TIFF_COMPRESSIONS)}"
                )
        elif suffix == ".png":
            if compression not in [str(level) for level in range(10)]:
                raise ImageWriteError(
                    f"{path}: PNG compression is a zlib level 0 to 9, got {compression!r}"
                )
        else:
            raise ImageWriteError(f"{path}: a compression setting applies to TIFF and PNG only")


def output_bit_depth(images: Sequence[LoadedImage]) -> int:
    """Bit depth a fused result keeps: the deepest source (8, 16, or 32 for float TIFF)."""
    return max(image.bit_depth for image in images)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same file (also through links and relative paths)."""
    a, b = Path(a), Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


# ---------------------------------------------------------------- reading


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise ImageReadError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise ImageReadError(f"{path} is a folder, not an image file")
    if not os.access(path, os.R_OK):
        raise ImageReadError(f"{path}: permission denied; make the file readable")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: the file is empty (0 bytes)")


def _format_of(path: Path) -> tuple[str, tuple[str, ...]]:
    """The extension to decode ``path`` as, from its first bytes, and a note when it is not
    the file's own.

    Cameras, scripts and downloads misname files (a JPEG as ``.png``); decoding by the name
    would call a good image damaged. Bytes that match no signature are decoded by the name,
    which then reports the damage in that format's words.
    """
    suffix = path.suffix.lower()
    try:
        with open(path, "rb") as handle:
            found = sniff_format(handle.read(8))
    except OSError as exc:
        raise ImageReadError(f"{path}: could not be read ({_short(exc)})") from None
    if found is None:
        if suffix not in SUPPORTED_EXTENSIONS:
            raise ImageReadError(
                f"{path}: unsupported file type {path.suffix or '(no extension)'}; "
                f"use one of {', '.join(sorted(SUPPORTED_EXTENSIONS))}"
            )
        return suffix, ()
    if _FORMAT_NAMES.get(suffix) == _FORMAT_NAMES[found]:
        return suffix, ()
    named = f"a {path.suffix} name" if path.suffix else "no extension"
    return found, (
        f"{path} is a {_FORMAT_NAMES[found]} file with {named}; read as {_FORMAT_NAMES[found]}",
    )


def _codec_errors() -> tuple[type[BaseException], ...]:
    errors = []
    for name in ("PngError", "JpegError", "Jpeg8Error", "ZlibError"):
        error = getattr(imagecodecs, name, None)
        if isinstance(error, type) and issubclass(error, BaseException):
            errors.append(error)
    return tuple(errors)


# What the decoders raise on damaged or foreign bytes; all become one ImageReadError.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    RuntimeError,
    IndexError,
    KeyError,
    TypeError,
    MemoryError,
    UnidentifiedImageError,
    Image.DecompressionBombError,
    tifffile.TiffFileError,
    *_codec_errors(),
)


def _declared_size(path: Path, suffix: str) -> tuple[int, int]:
    """(height, width) from the file header, without decoding pixels."""
    if suffix in _TIFF:
        with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            return int(page.imagelength), int(page.imagewidth)
    if suffix == ".png":
        with open(path, "rb") as handle:
            header = handle.read(24)
        if len(header) < 24 or header[:8] != b"\x89PNG\r\n\x1a\n" or header[12:16] != b"IHDR":
            raise ValueError("no PNG header")
        width, height = struct.unpack(">II", header[16:24])
        return height, width
    # Pillow's Image.open parses the header only (JPEG up to SOF, BMP its info header).
    with _without_pillow_limit(), Image.open(path) as image:
        width, height = image.size
    return height, width


class _DropRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


@contextmanager
def _quiet_tifffile() -> Iterator[None]:
    """Silence tifffile's log lines about damaged tags while we read.

    Without handlers, Python prints them to stderr beside our one-line error; a file that is
    damaged beyond use raises ImageReadError anyway, and one that still reads is fine.
    """
    logger = logging.getLogger("tifffile")
    drop = _DropRecords()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


class _PillowLimitOff:
    """Turns off Pillow's own bomb check while any thread reads: ours (configurable) has run on
    the header already.

    Otherwise an image between Pillow's 179 megapixels and our limit would be refused with a
    misleading "not readable" message. The limit is one global of Pillow's, and readers run in
    threads (``fuse batch`` reads the next pair while it fuses): saving and restoring it per
    read would let one thread restore the limit while another is still decoding, or leave it
    off for good. So the first reader turns it off and the last one out puts it back. With the
    limit off, Pillow does not warn either.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readers = 0
        self._saved: int | None = None

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._readers == 0:
                self._saved = Image.MAX_IMAGE_PIXELS
                Image.MAX_IMAGE_PIXELS = None
            self._readers += 1
        try:
            yield
        finally:
            with self._lock:
                self._readers -= 1
                if self._readers == 0:
                    Image.MAX_IMAGE_PIXELS = self._saved


_without_pillow_limit = _PillowLimitOff()


def _apply_colormap(indices: np.ndarray, colormap: np.ndarray) -> np.ndarray:
    """(H, W) palette indices -> (H, W, 3) RGB; 8-bit when the 16-bit TIFF colormap is 8-bit."""
    colormap = np.asarray(colormap, dtype=np.uint16)
    if indices.ndim != 2 or colormap.ndim != 2 or colormap.shape[0] != 3:
        raise ValueError(f"unexpected palette layout {indices.shape} / {colormap.shape}")
    if int(indices.max(initial=0)) >= colormap.shape[1]:
        raise ValueError("palette index beyond the colour map")
    rgb = colormap[:, indices].transpose(1, 2, 0)
    # Writers store 8-bit palettes scaled by 257 (0xFF -> 0xFFFF); keep those 8-bit.
    if np.all(colormap % 257 == 0):
        return (rgb // 257).astype(np.uint8)
    return rgb


def _invert(array: np.ndarray) -> np.ndarray:
    """MINISWHITE TIFF stores 0 as white; flip to the usual 0 = black."""
    if array.dtype == np.bool_:
        return ~array
    if array.dtype.kind == "u":
        return np.iinfo(array.dtype).max - array
    if array.dtype.kind == "f":
        return 1.0 - array
    return array


def _decode(path: Path, suffix: str) -> tuple[np.ndarray, int, ImageMetadata]:
    """Pixels as (H, W) or (H, W, C), the EXIF orientation (1 = as stored) and the metadata."""
    if suffix in _TIFF:
        with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            array = page.asarray()
            axes = page.axes
            photometric = page.photometric
            tag = page.tags.get(274)
            orientation = int(tag.value) if tag is not None else 1
            colormap = page.colormap
        if photometric == tifffile.PHOTOMETRIC.SEPARATED:
            raise ImageReadError(f"{path}: CMYK TIFF is not supported; convert it to RGB")
        if "S" in axes and axes.index("S") == 0 and array.ndim == 3:
            array = np.moveaxis(array, 0, -1)
        if photometric == tifffile.PHOTOMETRIC.PALETTE and colormap is not None:
            array = _apply_colormap(array, colormap)
        elif photometric == tifffile.PHOTOMETRIC.MINISWHITE:
            array = _invert(array)
        with _quiet_tifffile(), _without_pillow_limit():
            metadata = read_tiff_metadata(path.read_bytes())
        return array, orientation, metadata
    raw = path.read_bytes()
    with _without_pillow_limit(), Image.open(BytesIO(raw)) as image:
        orientation = int(image.getexif().get(_EXIF_ORIENTATION, 1))
        metadata = metadata_from_pillow(image) if suffix != ".bmp" else NO_METADATA
        if suffix == ".png":
            # Pillow cannot hold 16-bit colour PNG; imagecodecs (libpng) can.
            return imagecodecs.png_decode(raw), orientation, metadata
        if image.mode == "CMYK":
            raise ImageReadError(f"{path}: CMYK images are not supported; convert it to RGB")
        if image.mode in ("P", "PA", "1"):
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        elif image.mode == "LA":
            pass
        elif image.mode.startswith("I;16"):
            return np.asarray(image, dtype=np.uint16), orientation, metadata
        elif image.mode not in ("L", "RGB", "RGBA"):
            image = image.convert("RGB")
        return np.asarray(image), orientation, metadata


def _decode_raw(path: Path, limit: int) -> np.ndarray:
    """A camera RAW file as (H, W, 3) uint16 sRGB, after the pixel limit check."""
    try:
        import rawpy
    except ImportError:
        raise ImageReadError(
            f"{path}: reading camera RAW files needs rawpy, which is not installed; "
            "pip install 'fusecli[raw]', or convert the file to TIFF"
        ) from None
    try:
        with rawpy.imread(str(path)) as raw:
            height, width = raw.sizes.height, raw.sizes.width
            if height * width > limit:
                raise ImageReadError(
                    f"{path}: declares {width}x{height} pixels, more than the limit of "
                    f"{limit:,}; raise it with FUSECLI_MAX_PIXELS if the file is trusted"
                )
            return raw.postprocess(
                output_bps=16,
                use_camera_wb=True,
                no_auto_bright=True,
                gamma=(2.4, 12.92),  # the sRGB curve, as every other source is encoded
                output_color=rawpy.ColorSpace.sRGB,
            )
    except ImageReadError:
        raise
    except (rawpy.LibRawError, *_DECODE_ERRORS) as exc:
        raise ImageReadError(
            f"{path}: not a readable camera RAW image ({_short(exc)}); check that the file is "
            "complete, or convert it to TIFF with the camera maker's software"
        ) from None


def _apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Undo the EXIF orientation (values 2-8) so rows and columns are as displayed."""
    operations = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.swapaxes(a, 0, 1)[:, ::-1],
        7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
        8: lambda a: np.swapaxes(a, 0, 1)[::-1],
    }
    if orientation in operations:
        array = np.ascontiguousarray(operations[orientation](array))
    return array


def _to_loaded(path: Path, array: np.ndarray, metadata: ImageMetadata = NO_METADATA) -> LoadedImage:
    import torch

    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageReadError(
            f"{path}: unexpected pixel layout {array.shape}; save it as grey or RGB"
        )
    channels = array.shape[2]
    if channels not in (1, 2, 3, 4):
        raise ImageReadError(
            f"{path}: {channels} channels are not supported; save it as grey, RGB or RGBA"
        )
    values, bit_depth = _normalise(path, array)
    alpha = None
    if channels in (2, 4):
        alpha = torch.from_numpy(np.ascontiguousarray(values[..., -1]))[None, None]
        values = values[..., :-1]
    if values.shape[2] == 3 and _channels_identical(array[..., :3]):
        values = values[..., :1]
    pixels = torch.from_numpy(np.ascontiguousarray(values.transpose(2, 0, 1)))[None]
    return LoadedImage(path, pixels, bit_depth, alpha, channels, metadata)


def _channels_identical(array: np.ndarray) -> bool:
    return bool(
        np.array_equal(array[..., 0], array[..., 1])
        and np.array_equal(array[..., 0], array[..., 2])
    )


def _normalise(path: Path, array: np.ndarray) -> tuple[np.ndarray, int]:
    """Float32 values in [0, 1] and the source bit depth."""
    if array.dtype == np.bool_:
        return array.astype(np.float32), 8
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0, 8
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0, 16
    if array.dtype.kind == "f":
        values = np.ascontiguousarray(array, dtype=np.float32)
        bad = int(np.count_nonzero(~np.isfinite(values)))
        if bad:
            raise ImageReadError(
                f"{path}: {bad} pixel value(s) are NaN or infinite; repair the file first"
            )
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            raise ImageReadError(
                f"{path}: floating-point values span [{low:g}, {high:g}]; fusecli expects [0, 1] "
                "in float images, so rescale it first"
            )
        return values, 32
    raise ImageReadError(
        f"{path}: {array.dtype} pixels are not supported; save it as 8- or 16-bit or float32"
    )


# ---------------------------------------------------------------- writing


def _to_array(pixels: torch.Tensor, alpha: torch.Tensor | None) -> np.ndarray:
    """(H, W) or (H, W, C) float64 in [0, 1] from a (1, C, H, W) / (C, H, W) / (H, W) tensor."""
    import torch

    tensor = pixels.detach().to("cpu", torch.float64)
    if tensor.dim() == 4:
        if tensor.shape[0] != 1:
            raise ValueError(
                f"write one image at a time, got a batch of shape {tuple(tensor.shape)}"
            )
        tensor = tensor[0]
    if tensor.dim() == 2:
        tensor = tensor[None]
    if tensor.dim() != 3 or tensor.shape[0] not in (1, 3):
        raise ValueError(f"expected (1, C, H, W) with C = 1 or 3, got {tuple(pixels.shape)}")
    if not torch.isfinite(tensor).all():
        raise ValueError("refusing to write an image with NaN or infinite values")
    if alpha is not None:
        tensor = torch.cat(
            [tensor, alpha.detach().to("cpu", torch.float64).reshape(1, *tensor.shape[1:])]
        )
    array = tensor.clamp(0.0, 1.0).permute(1, 2, 0).numpy()
    return array[..., 0] if array.shape[2] == 1 else array


def _storable_depth(suffix: str, bit_depth: int) -> int:
    if bit_depth not in (8, 16, 32):
        raise ValueError(f"bit_depth must be 8, 16 or 32, got {bit_depth}")
    if suffix not in _SIXTEEN_BIT_FORMATS:
        return 8
    if bit_depth == 32 and suffix not in _TIFF:
        return 16
    return bit_depth


def _encode(
    array: np.ndarray,
    suffix: str,
    bit_depth: int,
    *,
    metadata: ImageMetadata | None = None,
    quality: int = DEFAULT_JPEG_QUALITY,
    compression: str | None = None,
) -> bytes:
    if bit_depth == 32:
        values = np.ascontiguousarray(array, dtype=np.float32)
    elif bit_depth == 16:
        values = np.ascontiguousarray(np.rint(array * 65535.0), dtype=np.uint16)
    else:
        values = np.ascontiguousarray(np.rint(array * 255.0), dtype=np.uint8)
    metadata = metadata or NO_METADATA
    if suffix == ".png":
        level = None if compression is None else int(compression)
        return add_png_metadata(bytes(imagecodecs.png_encode(values, level=level)), metadata)
    if suffix in _TIFF:
        buffer = BytesIO()
        photometric = "rgb" if values.ndim == 3 and values.shape[2] >= 3 else "minisblack"
        extrasamples = ["unassalpha"] if values.ndim == 3 and values.shape[2] in (2, 4) else None
        method = "zlib" if compression is None else TIFF_COMPRESSIONS[compression.lower()]
        tifffile.imwrite(
            buffer,
            values,
            photometric=photometric,
            compression=method,
            extrasamples=extrasamples,
            extratags=tiff_extratags(metadata),
            # No shape description: the ImageDescription tag is the source's, if any.
            metadata=None,
        )
        if metadata.exif is None:
            return buffer.getvalue()
        return add_tiff_exif_ifd(buffer.getvalue(), metadata.exif)
    buffer = BytesIO()
    image = Image.fromarray(values)
    if suffix in _JPEG:
        extra: dict[str, bytes] = {}
        if metadata.exif is not None:
            extra["exif"] = b"Exif\x00\x00" + metadata.exif
        if metadata.icc_profile is not None:
            extra["icc_profile"] = metadata.icc_profile
        image.save(buffer, format="JPEG", quality=quality, subsampling=0, **extra)
    else:
        image.save(buffer, format="BMP")
    return buffer.getvalue()


def _short(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]
