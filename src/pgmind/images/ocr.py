"""Text in images (signs, screenshots, scanned pages; Chinese and English) by RapidOCR — PP-OCR
models run with ONNX Runtime, weights inside the rapidocr wheel.  One engine per process."""
from __future__ import annotations

import threading

import numpy as np

from ..errors import ModelLoadError
from .codec import open_image

_engine = None
_lock = threading.Lock()


def _get():
    global _engine
    with _lock:
        if _engine is None:
            try:
                from rapidocr import RapidOCR
            except ImportError:
                raise ModelLoadError("OCR needs rapidocr", hint="pip install 'pgmind[local]'") from None
            _engine = RapidOCR(params={"Global.log_level": "error"})
        return _engine


def read_text(data: bytes, min_score: float = 0.5) -> dict:
    """{"text": the lines joined top to bottom, "lines": [{"text", "score"}]}."""
    img = open_image(data).convert("RGB")
    engine = _get()
    with _lock:                      # one inference at a time: the engine keeps state per call
        result = engine(np.asarray(img)[:, :, ::-1].copy())   # BGR, as OpenCV reads
    txts = list(getattr(result, "txts", None) or [])
    scores = list(getattr(result, "scores", None) or [])
    lines = [{"text": t, "score": float(s)} for t, s in zip(txts, scores) if s >= min_score and t.strip()]
    return {"text": "\n".join(line["text"] for line in lines), "lines": lines}
