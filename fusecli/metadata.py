"""Photo metadata carried from a source to the fused output: EXIF and the ICC colour profile.

Only descriptive EXIF survives: camera, lens, exposure, date, GPS, copyright. Tags that describe
the stored pixels of the source (size, strips, compression, sample layout, thumbnail) would be
wrong for the output and are dropped. The orientation is reset to 1 because ``fusecli.io``
has already turned the pixels the way a viewer shows them.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import tifffile
from PIL import Image, TiffImagePlugin

_ORIENTATION = 0x0112
_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
_ICC_TAG = 34675
# IFD0 tags about how the source stored its pixels (TIFF baseline and extensions, JPEG
# thumbnail pointers, XMP/IPTC packets that repeat them): never carried over.
_STRUCTURAL_TAGS = frozenset(
    {
        254, 255, 256, 257, 258, 259, 262, 263, 266, 269, 273, 277, 278, 279, 280, 281, 284,
        285, 286, 287, 292, 293, 317, 318, 319, 320, 322, 323, 324, 325, 330, 338, 339, 340,
        341, 347, 513, 514, 529, 530, 531, 532, 700, 33723, 34377, _ICC_TAG,
    }
)  # fmt: skip
_EXIF_PREFIX = b"Exif\x00\x00"
# What a camera RAW file's IFD0 says about the photo (besides the Exif and GPS sub-IFDs):
# ImageDescription, Make, Model, DateTime, Artist, Copyright. Everything else there describes the
# sensor data (DNG's colour matrices, the CFA layout), which the rendered output no longer is.
_RAW_DESCRIPTIVE_TAGS = (270, 271, 272, 306, 315, 33432)


@dataclass(frozen=True)
class ImageMetadata:
    """Metadata of one image file.

    Attributes:
        exif: descriptive EXIF as a TIFF structure (``II*\\0...``), orientation 1; None if absent.
        icc_profile: the embedded ICC profile bytes; None if absent.
    """

    exif: bytes | None = None
    icc_profile: bytes | None = None

    @property
    def empty(self) -> bool:
        return self.exif is None and self.icc_profile is None


NO_METADATA = ImageMetadata()


def descriptive_exif(exif: Image.Exif) -> bytes | None:
    """The descriptive part of ``exif`` as TIFF bytes with orientation 1; None when nothing is left.

    Sub-IFDs (Exif, GPS) are loaded so that they are written out with IFD0.
    """
    kept = Image.Exif()
    for tag, value in exif.items():
        if tag in _STRUCTURAL_TAGS:
            continue
        if tag in (_EXIF_IFD, _GPS_IFD):
            sub_ifd = exif.get_ifd(tag)
            if sub_ifd:
                kept[tag] = dict(sub_ifd)
            continue
        kept[tag] = value
    if not len(kept):
        return None
    if _ORIENTATION in kept:
        kept[_ORIENTATION] = 1
    data = kept.tobytes()
    return data[len(_EXIF_PREFIX) :] if data.startswith(_EXIF_PREFIX) else data


def metadata_from_pillow(image: Image.Image) -> ImageMetadata:
    """EXIF and ICC profile of an opened JPEG, PNG or TIFF (BMP has none)."""
    icc = image.info.get("icc_profile") or None
    try:
        exif = descriptive_exif(image.getexif())
    except (SyntaxError, ValueError, KeyError, TypeError, struct.error, OSError):
        exif = None  # damaged EXIF costs the metadata, never the pixels
    return ImageMetadata(exif=exif, icc_profile=bytes(icc) if icc else None)


def read_tiff_metadata(data: bytes) -> ImageMetadata:
    """EXIF and ICC of a TIFF file's first page (Pillow parses the tags; pixels stay unread)."""
    try:
        # Pillow warns about damaged tag blocks; the pixel decoder reports real damage itself.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(BytesIO(data)) as image:
                found = metadata_from_pillow(image)
    except (OSError, SyntaxError, ValueError, struct.error):
        found = NO_METADATA
    if found.icc_profile is None:
        # Pillow refuses some sample layouts it cannot decode (float RGB); tifffile reads the tag.
        with tifffile.TiffFile(BytesIO(data)) as tif:
            tag = tif.pages.first.tags.get(_ICC_TAG)
            if tag is not None:
                found = ImageMetadata(exif=found.exif, icc_profile=bytes(tag.value))
    return found


def read_raw_metadata(path: Path) -> ImageMetadata:
    """The descriptive EXIF of a camera RAW file (DNG, CR2, NEF and ARW are TIFF inside).

    No ICC profile: the pixels read from it are rendered sRGB, not the camera's space. A file
    whose tags cannot be parsed gives no metadata; its pixels are LibRaw's to judge.
    """
    try:
        # Pillow will not open a mosaic as an image, but parses the TIFF tags of any file.
        raw = Image.Exif()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw.load(path.read_bytes())
        kept = Image.Exif()
        for tag in _RAW_DESCRIPTIVE_TAGS:
            if tag in raw:
                kept[tag] = raw[tag]
        for tag in (_EXIF_IFD, _GPS_IFD):
            if tag in raw and raw.get_ifd(tag):
                kept[tag] = dict(raw.get_ifd(tag))
        return ImageMetadata(exif=descriptive_exif(kept))
    except (OSError, SyntaxError, ValueError, KeyError, struct.error):
        return NO_METADATA


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def add_png_metadata(png: bytes, metadata: ImageMetadata) -> bytes:
    """Insert iCCP and eXIf chunks right after IHDR (they must precede the image data)."""
    chunks = b""
    if metadata.icc_profile is not None:
        chunks += _png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(metadata.icc_profile))
    if metadata.exif is not None:
        chunks += _png_chunk(b"eXIf", metadata.exif)
    if not chunks:
        return png
    # 8-byte signature, then IHDR: 4 length + 4 type + 13 data + 4 CRC.
    end_of_ihdr = 8 + 4 + 4 + 13 + 4
    return png[:end_of_ihdr] + chunks + png[end_of_ihdr:]


def tiff_extratags(metadata: ImageMetadata) -> list[tuple[int, int, int, object, bool]]:
    """tifffile ``extratags``: the ICC profile and the EXIF IFD0 text tags.

    tifffile does not write the Exif sub-IFD (exposure, lens, ...); :func:`add_tiff_exif_ifd`
    adds it to the written file.
    """
    tags: list[tuple[int, int, int, object, bool]] = []
    if metadata.icc_profile is not None:
        tags.append((_ICC_TAG, 7, len(metadata.icc_profile), metadata.icc_profile, True))
    if metadata.exif is None:
        return tags
    exif = _load_exif(metadata.exif)
    for tag in _TIFF_TEXT_TAGS:
        value = exif.get(tag)
        if isinstance(value, str) and value:
            tags.append((tag, 2, 0, value, True))
    return tags


def add_tiff_exif_ifd(tiff: bytes, exif: bytes) -> bytes:
    """Add the Exif sub-IFD to a little-endian single-page TIFF that tifffile wrote.

    The first IFD is copied to the end of the file with one more entry (the Exif IFD pointer,
    kept in tag order), the sub-IFD follows it, and the header points to the copy. Nothing in
    the file moves, so every offset the copied entries hold stays valid.
    """
    sub_ifd = _load_exif(exif).get_ifd(_EXIF_IFD)
    if not sub_ifd or tiff[:4] != b"II*\x00":
        return tiff
    first_ifd = struct.unpack_from("<I", tiff, 4)[0]
    (count,) = struct.unpack_from("<H", tiff, first_ifd)
    entries = [tiff[first_ifd + 2 + 12 * i : first_ifd + 14 + 12 * i] for i in range(count)]
    (next_ifd,) = struct.unpack_from("<I", tiff, first_ifd + 2 + 12 * count)
    if any(struct.unpack_from("<H", entry)[0] == _EXIF_IFD for entry in entries):
        return tiff
    new_ifd = len(tiff) + len(tiff) % 2  # IFDs start on a word boundary
    sub_ifd_offset = new_ifd + 2 + 12 * (count + 1) + 4
    # Type 4 (LONG) for the pointer, as most cameras write it.
    entries.append(struct.pack("<HHII", _EXIF_IFD, 4, 1, sub_ifd_offset))
    entries.sort(key=lambda entry: struct.unpack_from("<H", entry)[0])
    directory = TiffImagePlugin.ImageFileDirectory_v2(prefix=b"II")
    for tag, value in sub_ifd.items():
        directory[tag] = value
    ifd0 = struct.pack("<H", count + 1) + b"".join(entries) + struct.pack("<I", next_ifd)
    body = tiff + b"\x00" * (new_ifd - len(tiff))
    return (
        body[:4] + struct.pack("<I", new_ifd) + body[8:] + ifd0 + directory.tobytes(sub_ifd_offset)
    )


def _load_exif(exif: bytes) -> Image.Exif:
    loaded = Image.Exif()
    loaded.load(_EXIF_PREFIX + exif)
    return loaded


# IFD0 text tags a TIFF keeps: ImageDescription, Make, Model, DateTime, Artist, Copyright.
_TIFF_TEXT_TAGS = (270, 271, 272, 306, 315, 33432)
