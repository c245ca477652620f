"""A fast reader of the PNGs that saliency maps are stored as: 8-bit grey, not interlaced. DHF1K's maps
are such files (MATLAB's ``imwrite`` filters every row with Sub), and so are binary fixation maps and
the predictions that ``sal3d predict``, Pillow or OpenCV write (rows filtered with any of the five
filters).

Pillow inflates a PNG row by row and unfilters it byte by byte: ~1.3 ms for a 640x360 map on a small
machine, most of a frame's reading. Here the whole stream is inflated at once by libdeflate (the
``deflate`` package, several times faster than zlib) and the rows are unfiltered by a compiled loop
(`pipeline.kernels.unfilter_grey`). The pixels are the same bytes Pillow gives. Any other PNG
(colour, 16-bit, palette, interlaced), and any file this reader does not vouch for (a bad chunk CRC,
an unknown filter type, a short or corrupt stream), gives None: the caller reads it with Pillow, which
then names the problem.
"""

from __future__ import annotations

import struct
import zlib
from typing import Optional

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunks(data: bytes) -> Optional[tuple[int, int, bytes]]:
    """``(width, height, IDAT bytes)`` of an 8-bit grey, non-interlaced PNG whose IHDR and IDAT chunks
    have good CRCs; None for anything else."""
    if not data.startswith(PNG_SIGNATURE):
        return None
    pos, size, header, idat = len(PNG_SIGNATURE), len(data), None, []
    while pos + 12 <= size:
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 8 + length
        if end + 4 > size:
            return None
        if kind in (b"IHDR", b"IDAT"):
            if zlib.crc32(data[pos + 4:end]) != struct.unpack_from(">I", data, end)[0]:
                return None
            if kind == b"IHDR":
                header = struct.unpack_from(">IIBBBBB", data, pos + 8)
            else:
                idat.append(data[pos + 8:end])
        elif kind == b"IEND":
            break
        elif not kind[0] & 0x20:  # an unknown critical chunk (PLTE has no business in a grey PNG)
            return None
        pos = end + 4
    if header is None or not idat:
        return None
    width, height, depth, colour, compression, filtering, interlace = header
    if (depth, colour, compression, filtering, interlace) != (8, 0, 0, 0, 0) or not width or not height:
        return None
    return width, height, b"".join(idat)


def decode_grey_png(data: bytes) -> Optional[np.ndarray]:
    """The pixels of an 8-bit grey PNG file's bytes ``data``: a new (H, W) uint8 array, as Pillow's
    ``np.asarray(Image.open(...))`` gives them; None when the file is not such a PNG, or cannot be
    vouched for (see the module docstring)."""
    parsed = _chunks(data)
    if parsed is None:
        return None
    import deflate  # deferred: a worker that reads no PNG does not load it

    width, height, stream = parsed
    expected = height * (width + 1)
    try:
        inflated = deflate.zlib_decompress(stream, expected)
    except deflate.DeflateError:
        return None
    if len(inflated) != expected:
        return None
    from sal3d.pipeline.kernels import unfilter_grey  # deferred: loads numba

    raw = np.frombuffer(inflated, np.uint8).reshape(height, width + 1)
    pixels = np.empty((height, width), np.uint8)
    return pixels if unfilter_grey(raw, pixels) else None
