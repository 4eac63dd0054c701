"""Reading image files safely: any format Pillow reads (JPEG, PNG, WebP, GIF's first frame, BMP,
TIFF, …), within limits on bytes and on decoded pixels (a 50 KB PNG can claim 100k × 100k pixels),
and every way a file can be broken becomes one clear error (SQLSTATE 22023), never a crash."""
from __future__ import annotations

import base64
import io
import warnings

from ..errors import InvalidRequestError

MAX_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 50_000_000
MAX_SIDE = 16384          # the largest side resize_image makes
_SAVE_AS = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WEBP", "BMP": "BMP", "TIFF": "TIFF"}   # others become PNG
MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif", "BMP": "image/bmp",
        "TIFF": "image/tiff", "ICO": "image/x-icon", "PPM": "image/x-portable-pixmap"}


def configure(max_bytes: int, max_pixels: int) -> None:
    """The limits of this process (the model server's settings PGMIND_MAX_IMAGE_MB / _PIXELS)."""
    global MAX_BYTES, MAX_PIXELS
    MAX_BYTES, MAX_PIXELS = int(max_bytes), int(max_pixels)


def check_size(n: int, where: str = "the image") -> None:
    if n > MAX_BYTES:
        raise InvalidRequestError(f"{where} has {n} bytes; the limit is {MAX_BYTES}",
                                  hint="resize it first, or raise PGMIND_MAX_IMAGE_MB on the model server")


def open_image(data, where: str = "the image"):
    """A decoded PIL image (first frame), RGB or RGBA or L, or a clear error."""
    from PIL import Image, UnidentifiedImageError
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidRequestError(f"{where} is not binary data", hint="pass the image file's bytes (bytea)")
    data = bytes(data)
    if not data:
        raise InvalidRequestError(f"{where} is empty (0 bytes)", hint="check the file or the column it came from")
    check_size(len(data), where)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # (only the formats pgmind names: Pillow's other readers — EPS through Ghostscript, PSD,
            # FITS, … — are more native code for bytes a table owner wrote)
            img = Image.open(io.BytesIO(data), formats=list(MIME))
            fmt = img.format
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise InvalidRequestError(f"{where} is {w}×{h} pixels; the limit is {MAX_PIXELS} pixels",
                                          hint="resize it before loading, or raise PGMIND_MAX_IMAGE_PIXELS")
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            img.load()
    except InvalidRequestError:
        raise
    except UnidentifiedImageError:
        raise InvalidRequestError(f"{where} is not an image Pillow can read (starts with {data[:8]!r})",
                                  hint="pass a JPEG, PNG, WebP, GIF, BMP or TIFF file") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidRequestError(f"{where} decodes to too many pixels", hint="raise PGMIND_MAX_IMAGE_PIXELS") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as e:
        raise InvalidRequestError(f"{where} is broken: {str(e)[:200] or type(e).__name__}",
                                  hint="the file is truncated or corrupt; load it again from its source") from None
    img.format = fmt
    if img.mode not in ("RGB", "RGBA", "L"):
        img = img.convert("RGBA" if "A" in img.getbands() or "transparency" in img.info else "RGB")
        img.format = fmt
    return img


def info(data) -> dict:
    img = open_image(data)
    return {"format": img.format, "width": img.width, "height": img.height, "mode": img.mode,
            "mime": MIME.get(img.format or "", "application/octet-stream"), "bytes": len(bytes(data))}


def encode(img, fmt: str | None) -> bytes:
    fmt = _SAVE_AS.get(fmt or "", "PNG")
    if fmt == "JPEG" and img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    out = io.BytesIO()
    img.save(out, format=fmt, **({"quality": 90} if fmt in ("JPEG", "WEBP") else {}))
    return out.getvalue()


def resize(data, width: int, height: int) -> bytes:
    """Width × height; 0 for one side keeps the aspect ratio (POLAR_AI's AI_RESIZEIMAGE)."""
    from PIL import Image
    for name, v in (("width", width), ("height", height)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0 or v > MAX_SIDE:
            raise InvalidRequestError(f"{name} must be between 0 and {MAX_SIDE}, got {v!r}",
                                      hint="0 for one side keeps the aspect ratio")
    if width == 0 and height == 0:
        raise InvalidRequestError("width and height are both 0", hint="give at least one side; 0 keeps the ratio")
    img = open_image(data)
    if width == 0:
        width = max(1, round(img.width * height / img.height))
    if height == 0:
        height = max(1, round(img.height * width / img.width))
    if width * height > MAX_PIXELS:
        raise InvalidRequestError(f"{width}×{height} is over the limit of {MAX_PIXELS} pixels")
    fmt = img.format
    return encode(img.resize((width, height), Image.Resampling.LANCZOS), fmt)


def as_base64(data, prefix: bool = False) -> str:
    """The file as base64; ``prefix`` adds ``data:image/…;base64,`` (a data URI)."""
    uri = data_uri(data)          # (it checks that the bytes are an image, and names its type)
    return uri if prefix else uri.partition(",")[2]


def data_uri(data) -> str:
    img = open_image(data)
    return f"data:{MIME.get(img.format or '', 'application/octet-stream')};base64," + base64.b64encode(bytes(data)).decode("ascii")
