"""A small real image for create_model's dimension probe of an image model."""
from __future__ import annotations

import io
from functools import lru_cache


@lru_cache(maxsize=1)
def probe_png() -> bytes:
    from PIL import Image, ImageDraw
    img = Image.new("RGB", (64, 64), (200, 220, 255))
    ImageDraw.Draw(img).ellipse((16, 16, 48, 48), fill=(220, 40, 40))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()
