"""Reading untrusted image files: look at the header first, decode only what is sane.

A source folder in production holds whatever people put there: empty files, files cut
off by a failed copy, text saved as ``.png``, a PNG whose header claims 40000 x 40000
pixels (a few KB that would decode into gigabytes), FIFOs and device files behind
symbolic links. :func:`read_image_file` refuses each of these with a sentence that says
why, *before* a decoder allocates anything:

1. only regular files are opened (a FIFO would block, ``/dev/zero`` would never end),
   and a file larger than any image within the pixel limit could be is not read;
2. :func:`probe_image` parses the container (PNG chunks, JPEG markers, BMP, TIFF and
   WebP headers) in pure Python: the format, the width and height it claims, and
   whether the file is complete (a PNG reaches ``IEND``, a JPEG reaches ``EOI``);
3. the claimed size is checked against ``max_pixels`` (the recipe's
   ``inputs.max_pixels``);
4. only then OpenCV decodes it, and the result must have the size the header claimed.

OpenCV has a limit of its own, ``OPENCV_IO_MAX_IMAGE_PIXELS`` (default 2**30 pixels; the
C++ constant is ``CV_IO_MAX_IMAGE_PIXELS``). It is read once, when the OpenCV library
loads, so it can only be changed in the environment before the process starts; it stays
as a backstop behind the limit here, which is per recipe and gives a clear message.

Writing goes the other way only for masks: :func:`mask_png` writes a full-size mask PNG
from the mask's crop, at the cost of the crop rather than of the image.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import traceback
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import InputImageError

DEFAULT_MAX_PIXELS = 100_000_000
"""Largest source image decoded by default (width x height): 100 megapixels, about
300 MB as 8-bit BGR; every worker holds a few copies of the image it works on."""

_BYTES_PER_PIXEL_MAX = 8  # 16-bit RGBA, uncompressed
_SLACK = 16 << 20  # headers, metadata, ICC profiles, thumbnails
_PNG_SIG = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says, read without decoding any pixel."""

    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def size_text(self) -> str:
        return f"{self.width}x{self.height} px"


class UnexpectedInputError(InputImageError):
    """An error that no check foresaw, raised while one input was read, decoded or had
    its product mask estimated. It becomes that input's skip reason, never the end of a
    run; ``traceback_text`` keeps where it came from (for ``--verbose`` and bug reports).
    """

    def __init__(self, message: str, traceback_text: str = "") -> None:
        super().__init__(message)
        self.traceback_text = traceback_text

    def __reduce__(self) -> tuple[type[UnexpectedInputError], tuple[str, str]]:
        return type(self), (str(self), self.traceback_text)


def unexpected_input_error(exc: BaseException, doing: str) -> UnexpectedInputError:
    """``exc`` (an exception no check foresaw) as the reason an input is skipped:
    ``unexpected error while {doing}: IndexError: ...; please report it``."""
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    err = UnexpectedInputError(f"unexpected error while {doing}: {what}; please report it", text)
    err.__cause__ = exc
    return err


def max_file_bytes(max_pixels: int) -> int:
    """The largest file that can hold an image of ``max_pixels`` (bigger ones are not read)."""
    return int(max_pixels) * _BYTES_PER_PIXEL_MAX + _SLACK


# -- headers ------------------------------------------------------------------------------


def probe_image(data: bytes) -> ImageHeader:
    """The format and claimed size of an encoded image, and a check that it is complete.

    :raises InputImageError: the bytes are not one of the supported formats, the header
        is corrupt, or the file is truncated.
    """
    if not data:
        raise InputImageError("is an empty (zero-byte) file")
    if data.startswith(_PNG_SIG):
        return _probe_png(data)
    if data.startswith(b"\xff\xd8"):
        return _probe_jpeg(data)
    if data.startswith(b"BM") and len(data) >= 26:
        return _probe_bmp(data)
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return _probe_tiff(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _probe_webp(data)
    raise InputImageError(
        "is not an image: its content is not PNG, JPEG, BMP, TIFF or WebP "
        f"(it starts with {_preview(data)})"
    )


def _preview(data: bytes) -> str:
    head = data[:16]
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return f"the text {head.decode('ascii')!r}"
    return f"the bytes {head.hex(' ')}"


def _truncated(fmt: str, what: str, size: int) -> InputImageError:
    return InputImageError(f"is truncated: a {fmt} file that ends after {size} bytes, {what}")


def _corrupt(fmt: str, what: str) -> InputImageError:
    return InputImageError(f"is not a readable {fmt} file: {what}")


def _checked(fmt: str, width: int, height: int) -> ImageHeader:
    if width <= 0 or height <= 0:
        raise _corrupt(fmt, f"the header gives a size of {width}x{height} px")
    return ImageHeader(fmt, int(width), int(height))


def _probe_png(data: bytes) -> ImageHeader:
    n = len(data)
    pos = 8
    width = height = -1
    seen_idat = False
    first = True
    while True:
        if pos + 8 > n:
            raise _truncated("PNG", "before its IEND chunk", n)
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        if length > 0x7FFFFFFF:
            raise _corrupt("PNG", f"chunk at byte {pos} claims {length} bytes")
        if first:
            if ctype != b"IHDR" or length != 13:
                raise _corrupt("PNG", "the first chunk is not a valid IHDR")
            if pos + 8 + 13 > n:
                raise _truncated("PNG", "inside its header", n)
            width, height = struct.unpack(">II", data[pos + 8 : pos + 16])
            first = False
        end = pos + 12 + length
        if end > n:
            raise _truncated("PNG", f"inside a {ctype.decode('latin-1')!r} chunk", n)
        if ctype == b"IDAT":
            seen_idat = True
        elif ctype == b"IEND":
            break
        pos = end
    if not seen_idat:
        raise _corrupt("PNG", "it has no image data (IDAT chunk)")
    return _checked("PNG", width, height)


# SOF markers: baseline, extended, progressive, lossless, arithmetic variants (not DHT C4,
# JPG C8, DAC CC)
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _probe_jpeg(data: bytes) -> ImageHeader:
    n = len(data)
    pos = 2
    size: tuple[int, int] | None = None
    scanned = False
    while True:
        # a marker: one or more 0xFF, then the marker code
        if pos >= n:
            raise _truncated("JPEG", "before its end-of-image marker", n)
        if data[pos] != 0xFF:
            raise _corrupt("JPEG", f"expected a marker at byte {pos}")
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos >= n:
            raise _truncated("JPEG", "before its end-of-image marker", n)
        code = data[pos]
        pos += 1
        if code == 0xD9:  # EOI
            break
        if code == 0x01 or 0xD0 <= code <= 0xD7:  # TEM, RSTn: no length
            continue
        if code in (0xD8, 0x00):
            raise _corrupt("JPEG", f"unexpected marker 0xFF{code:02X} at byte {pos - 2}")
        if pos + 2 > n:
            raise _truncated("JPEG", "inside a segment header", n)
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2:
            raise _corrupt("JPEG", f"segment 0xFF{code:02X} has length {length}")
        seg_end = pos + length
        if seg_end > n:
            raise _truncated("JPEG", f"inside segment 0xFF{code:02X}", n)
        if code in _SOF:
            if length < 8:
                raise _corrupt("JPEG", "frame header too short")
            height, width = struct.unpack(">HH", data[pos + 3 : pos + 7])
            if height == 0:
                raise _corrupt("JPEG", "the height is defined later in the file (DNL)")
            size = (width, height)
        pos = seg_end
        if code == 0xDA:  # SOS: entropy-coded data follows, up to the next real marker
            if size is None:
                raise _corrupt("JPEG", "image data comes before the frame header")
            scanned = True
            while True:
                ff = data.find(b"\xff", pos)
                if ff < 0 or ff + 1 >= n:
                    raise _truncated("JPEG", "inside its image data", n)
                nxt = data[ff + 1]
                if nxt == 0x00 or 0xD0 <= nxt <= 0xD7:  # stuffed byte, restart marker
                    pos = ff + 2
                    continue
                if nxt == 0xFF:  # fill byte before a marker
                    pos = ff + 1
                    continue
                pos = ff
                break
    if size is None or not scanned:
        raise _corrupt("JPEG", "it ends before any image data")
    return _checked("JPEG", *size)


def _probe_bmp(data: bytes) -> ImageHeader:
    n = len(data)
    (offset,) = struct.unpack("<I", data[10:14])
    (dib,) = struct.unpack("<I", data[14:18])
    if dib == 12:
        width, height, _planes, bpp = struct.unpack("<HHHH", data[18:26])
        compression = 0
    elif dib >= 40 and n >= 34:
        width, height, _planes, bpp, compression = struct.unpack("<iiHHI", data[18:34])
        height = abs(height)  # negative: rows stored top-down
    elif dib >= 40:
        raise _truncated("BMP", "inside its header", n)
    else:
        raise _corrupt("BMP", f"unknown header size {dib}")
    if width > 0 and height > 0 and compression in (0, 3) and bpp in (1, 4, 8, 16, 24, 32):
        row = ((bpp * width + 31) // 32) * 4
        if offset + row * height > n:
            raise _truncated("BMP", "inside its pixel rows", n)
    return _checked("BMP", width, height)


_TIFF_TYPES = {1: ("B", 1), 3: ("H", 2), 4: ("I", 4), 16: ("Q", 8)}
_TIFF_TAGS = {
    256: "ImageWidth",
    257: "ImageLength",
    273: "StripOffsets",
    279: "StripByteCounts",
    324: "TileOffsets",
    325: "TileByteCounts",
}
_TIFF_MAX_ENTRIES = 4096  # a real first directory has a few dozen
_TIFF_MAX_VALUES = 1 << 20  # strips or tiles of one image


def _tiff_corrupt(what: str) -> InputImageError:
    return InputImageError(f"is corrupt: TIFF {what}")


def _probe_tiff(data: bytes) -> ImageHeader:
    try:
        return _parse_tiff(data)
    except struct.error:
        raise _truncated("TIFF", "inside its first directory", len(data)) from None


def _parse_tiff(data: bytes) -> ImageHeader:
    """Width and height from the first directory (IFD), with every count, offset and type
    that the header gives checked against the file before it is used."""
    n = len(data)
    e = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    try:
        if big:
            (ifd,) = struct.unpack(e + "Q", data[8:16])
            header = 16
        else:
            (ifd,) = struct.unpack(e + "I", data[4:8])
            header = 8
    except struct.error:
        raise _truncated("TIFF", "before its first directory", n) from None
    if ifd < header:
        raise _tiff_corrupt(f"first directory offset {ifd} points into the file header")
    try:
        if big:
            (count,) = struct.unpack(e + "Q", data[ifd : ifd + 8])
            entry, first, inline = 20, ifd + 8, 8
        else:
            (count,) = struct.unpack(e + "H", data[ifd : ifd + 2])
            entry, first, inline = 12, ifd + 2, 4
    except struct.error:
        raise _truncated("TIFF", "before its first directory", n) from None
    if count > _TIFF_MAX_ENTRIES:
        raise _tiff_corrupt(f"first directory claims {count} entries")
    if first + count * entry > n:
        raise _truncated("TIFF", "inside its first directory", n)
    tags: dict[int, list[int]] = {}
    for k in range(count):
        at = first + k * entry
        if big:
            tag, typ, num = struct.unpack(e + "HHQ", data[at : at + 12])
            value_at = at + 12
        else:
            tag, typ, num = struct.unpack(e + "HHI", data[at : at + 8])
            value_at = at + 8
        if tag not in _TIFF_TAGS:
            continue
        name = f"tag {tag} ({_TIFF_TAGS[tag]})"
        if typ not in _TIFF_TYPES:
            raise _tiff_corrupt(f"{name} has type {typ}, not an unsigned integer type")
        if num == 0:
            raise _tiff_corrupt(f"{name} has no value")
        if num > _TIFF_MAX_VALUES:
            raise _tiff_corrupt(f"{name} claims {num} values")
        code, width = _TIFF_TYPES[typ]
        nbytes = num * width
        if nbytes > inline:
            ptr = e + ("Q" if big else "I")
            (value_at,) = struct.unpack(ptr, data[value_at : value_at + inline])
            if value_at < header:
                raise _tiff_corrupt(f"{name}: its values at offset {value_at} overlap the header")
        if value_at + nbytes > n:
            raise _truncated("TIFF", f"inside the values of tag {tag}", n)
        tags[tag] = list(struct.unpack(f"{e}{num}{code}", data[value_at : value_at + nbytes]))
    if 256 not in tags or 257 not in tags:
        raise _corrupt("TIFF", "its first directory gives no width or height")
    for offsets, counts in ((273, 279), (324, 325)):
        if offsets in tags and counts in tags:
            if len(tags[offsets]) != len(tags[counts]):
                raise _tiff_corrupt(
                    f"tag {offsets} ({_TIFF_TAGS[offsets]}) has {len(tags[offsets])} values "
                    f"but tag {counts} ({_TIFF_TAGS[counts]}) has {len(tags[counts])}"
                )
            end = max((o + c for o, c in zip(tags[offsets], tags[counts])), default=0)
            if end > n:
                raise _truncated("TIFF", "inside its image data", n)
    return _checked("TIFF", tags[256][0], tags[257][0])


def _probe_webp(data: bytes) -> ImageHeader:
    n = len(data)
    (riff,) = struct.unpack("<I", data[4:8])
    if riff + 8 > n:
        raise _truncated("WebP", f"shorter than the {riff + 8} bytes its header announces", n)
    kind = data[12:16]
    body = data[20:]
    if kind == b"VP8X" and len(body) >= 10:
        width = 1 + int.from_bytes(body[4:7], "little")
        height = 1 + int.from_bytes(body[7:10], "little")
    elif kind == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
        w, h = struct.unpack("<HH", body[6:10])
        width, height = w & 0x3FFF, h & 0x3FFF
    elif kind == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
        (bits,) = struct.unpack("<I", body[1:5])
        width, height = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    else:
        raise _corrupt("WebP", f"unknown or short {kind!r} chunk")
    return _checked("WebP", width, height)


# -- reading and decoding -------------------------------------------------------------------


def _check_pixels(header: ImageHeader, max_pixels: int) -> None:
    if header.pixels > max_pixels:
        amount = (
            f"{header.pixels / 1e6:.1f} megapixels"
            if header.pixels >= 100_000
            else f"{header.pixels} pixels"
        )
        raise InputImageError(
            f"is {header.size_text} ({amount}), above the limit "
            f"inputs.max_pixels = {max_pixels}; not decoded (raise the limit in the recipe "
            "to use it)"
        )


def read_file_bytes(path: str | os.PathLike[str], max_pixels: int) -> bytes:
    """The bytes of a regular file, refusing folders, devices, FIFOs and huge files.

    :raises InputImageError: with the reason (a sentence about the file, without its name).
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        raise InputImageError(f"cannot be read: {_os_reason(exc)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputImageError("is a folder, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise InputImageError("is not a regular file (a device, FIFO or socket)")
    limit = max_file_bytes(max_pixels)
    if st.st_size > limit:
        raise InputImageError(
            f"is {st.st_size} bytes, more than an image within inputs.max_pixels = "
            f"{max_pixels} can take ({limit} bytes); not read"
        )
    try:
        with open(p, "rb") as fh:
            # the size stat gave, plus one byte to see a file that grew since: asking
            # for ``limit + 1`` at once makes Python allocate that much first and shrink
            # it after (0.6 ms more per 2 MB source, issue 19)
            data = fh.read(st.st_size + 1)
            if len(data) > st.st_size:  # it grew (or stat gave no size, as /proc does)
                data += fh.read(limit + 1 - len(data))
    except OSError as exc:
        raise InputImageError(f"cannot be read: {_os_reason(exc)}") from None
    if len(data) > limit:
        raise InputImageError(f"grew beyond {limit} bytes while it was read; not read")
    return data


def _os_reason(exc: OSError) -> str:
    import errno

    name = errno.errorcode.get(exc.errno or 0, "")
    text = exc.strerror or str(exc)
    return f"{text} ({name})" if name else text


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an untrusted encoded image: uint8 or uint16; gray (h, w), BGR or BGRA.

    JPEGs are decoded with their EXIF orientation applied (pixels as viewers show them);
    other formats keep alpha and 16 bits.

    :raises InputImageError: saying why the bytes are not used.
    """
    header = probe_image(data)
    _check_pixels(header, max_pixels)
    buf = np.frombuffer(data, dtype=np.uint8)
    flags = (
        cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR
        if header.format == "JPEG"
        else cv2.IMREAD_UNCHANGED
    )
    try:
        img = cv2.imdecode(buf, flags)
    except cv2.error as exc:
        raise InputImageError(
            f"is not a readable {header.format} file: {str(exc).strip().splitlines()[-1]}"
        ) from None
    if img is None:
        raise InputImageError(
            f"is not a readable {header.format} file (corrupt data; the decoder refused it)"
        )
    if img.shape[0] * img.shape[1] != header.pixels:
        # EXIF orientation may swap width and height, never change their product
        raise InputImageError(
            f"decoded to {img.shape[1]}x{img.shape[0]} px but its header says "
            f"{header.size_text}: a corrupt or unusual (multi-frame?) {header.format} file"
        )
    if img.dtype not in (np.uint8, np.uint16):
        raise InputImageError(f"has pixel type {img.dtype}; 8- or 16-bit images are supported")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3 and img.shape[2] not in (3, 4):
        raise InputImageError(f"has {img.shape[2]} channels; 1, 3 or 4 are supported")
    return img


def read_image_file(
    path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray, str]:
    """Read and decode an untrusted image file; return it and the sha256 of its bytes.

    :raises InputImageError: with the reason (the caller names the file).
    """
    data = read_file_bytes(path, max_pixels)
    return decode_image(data, max_pixels), hashlib.sha256(data).hexdigest()


def read_mask_file(
    path: str | os.PathLike[str],
    shape: tuple[int, int],
    shown: str,
    max_pixels: int,
    *,
    kind: str = "product mask",
    allow_empty: bool = False,
) -> np.ndarray:
    """A mask (a product mask unless ``kind`` says otherwise) as a boolean array of its
    non-zero gray pixels (colour turned gray, alpha ignored); its header must give
    ``shape`` before it is decoded (so a mask cannot be a decompression bomb either). An
    empty mask is an error unless ``allow_empty``."""
    what = f"{kind} {shown!r}"
    p = Path(path)
    if not p.exists():
        raise InputImageError(f"{what} is missing")
    try:
        data = read_file_bytes(p, max_pixels)
        header = probe_image(data)
    except InputImageError as exc:
        raise InputImageError(f"{what} {exc}") from None
    h, w = shape
    if {header.width, header.height} != {w, h}:
        raise InputImageError(
            f"{what} is {header.width}x{header.height}, the image is {w}x{h} (w x h)"
        )
    mask = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise InputImageError(f"{what} is not a readable image")
    if mask.shape != shape:
        raise InputImageError(
            f"{what} is {mask.shape[1]}x{mask.shape[0]}, the image is {w}x{h} (w x h)"
        )
    m = mask > 0
    if not m.any() and not allow_empty:
        raise InputImageError(f"{what} is empty (no product pixel)")
    return m


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: zlib level of the mask PNGs: level 1 is twice as fast as 6 here, and its files are
#: already smaller than OpenCV's (a mask is mostly runs of zeros either way)
MASK_ZLIB_LEVEL = 1


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(tag))
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)


def mask_png(
    crop: np.ndarray, box: Sequence[int], shape: tuple[int, int], bits: int = 1
) -> bytes:
    """A full-size greyscale PNG of a binary mask given by its ``crop`` inside ``box``
    (pixel xyxy): ``bits=1`` (1-bit; OpenCV reads it as 0/255, Pillow as mode "1") or
    ``bits=8`` (0/255 bytes).

    Written here rather than by ``cv2.imencode``, whose cost is that of the whole image
    (a full-size array built, packed and compressed: 1.3-2 ms at 1024x1024): only the
    box's rows are built, and the rows of zeros around them are one constant handed to
    zlib (0.25 ms). Every row has filter type 0 (None).
    """
    if bits not in (1, 8):
        raise ValueError(f"bits must be 1 or 8, not {bits!r}")
    h, w = int(shape[0]), int(shape[1])
    x1, y1, x2, y2 = (int(v) for v in box)
    if not (0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h):
        raise ValueError(f"box {list(box)} is not inside an image of {w}x{h} (w x h)")
    row_bytes = 1 + (w * bits + 7) // 8  # the filter-type byte, then the pixels
    band = np.zeros((y2 - y1, w), dtype=bool)
    band[:, x1:x2] = crop
    rows = np.zeros((y2 - y1, row_bytes), dtype=np.uint8)
    if bits == 1:
        rows[:, 1:] = np.packbits(band, axis=1)
    else:
        rows[:, 1:] = band.view(np.uint8) * np.uint8(255)
    zeros = bytes(row_bytes * max(y1, h - y2))
    z = zlib.compressobj(MASK_ZLIB_LEVEL)
    idat = b"".join((
        z.compress(zeros[: row_bytes * y1]),
        z.compress(rows.tobytes()),
        z.compress(zeros[: row_bytes * (h - y2)]),
        z.flush(),
    ))
    # IHDR: width, height, bit depth, colour type 0 (grey), deflate, filter 0, no interlace
    header = struct.pack(">IIBBBBB", w, h, bits, 0, 0, 0, 0)
    return b"".join((
        _PNG_SIGNATURE,
        _png_chunk(b"IHDR", header),
        _png_chunk(b"IDAT", idat),
        _png_chunk(b"IEND", b""),
    ))
