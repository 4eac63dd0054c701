"""What an image vectorizer writes per source row: one "chunk" whose vector is the image's (from
the vectorizer's image model) and whose text describes it — the file's name, the image model's
top labels with their probabilities, and the text in the image (OCR, when the vectorizer asks
for it) — so ai.search_images finds it by picture, by words and by meaning.  A row whose image
cannot be loaded or read is a poison row with the reason; the others go on."""
from __future__ import annotations

import logging
import posixpath
import re

from ..errors import InvalidRequestError, PermissionDeniedError, PgmindError
from .chunking import Chunk
from .embedder import Embedder, is_permanent

log = logging.getLogger(__name__)
_HEX = re.compile(r"^\\x[0-9a-fA-F]*$")


def _permanent(e: PgmindError) -> bool:
    # a refused location stays refused until an administrator allows it (then: ai.vectorizer_retry)
    return is_permanent(e) or isinstance(e, PermissionDeniedError)


def describe(location: str | None, labels: list[tuple[str, float]], text: str) -> str:
    parts = []
    if location:
        name = posixpath.splitext(posixpath.basename(location.rstrip("/")))[0]
        parts.append(re.sub(r"[_\-.]+", " ", name).strip())
    if labels:
        parts.append("; ".join(f"{label} {p:.0%}" for label, p in labels))
    if text:
        parts.append(text)
    return "\n".join(p for p in parts if p) or "image"


class ImageEmbedding:
    def __init__(self, embedder: Embedder):
        self.embedder = embedder

    def _bytes(self, content: str | None) -> tuple[bytes, str | None]:
        """The image of a row: a bytea column (hex text) or a path/URL loaded under the allow-list."""
        if content is None or not content.strip():
            raise InvalidRequestError("the row has no image (NULL or empty)", hint="fill the image column or path")
        if _HEX.match(content):
            return bytes.fromhex(content[2:]), None
        return self.embedder.load_file(content.strip()), content.strip()

    def embed(self, ver, contents: dict) -> tuple[dict, dict]:
        config = ver.config or {}
        images, poison = {}, {}
        for k, content in contents.items():
            try:
                images[k] = self._bytes(content)
            except PgmindError as e:
                if not _permanent(e):
                    raise
                poison[k] = e
        out: dict[str, list] = {}
        if not images:
            return out, poison
        keys = list(images)
        try:
            batch = self.embedder.embed_images(ver.model, [images[k][0] for k in keys])
        except PgmindError as e:
            if not _permanent(e):
                raise
            batch = None          # one of them is refused: embed them one by one
        n_labels = int(config.get("labels", 5))
        for i, k in enumerate(keys):
            data, location = images[k]
            try:
                one = batch if batch is not None else self.embedder.embed_images(ver.model, [data])
                j = i if batch is not None else 0
                labels = [(lab, p) for lab, p in (one.labels[j] if one.labels else [])[:n_labels] if p >= 0.02]
                text = self._ocr(data) if config.get("ocr") else ""
                vec = one.vectors[j]
            except PgmindError as e:
                if not _permanent(e):
                    raise
                poison[k] = e
                continue
            desc = describe(location, labels, text)
            out[k] = [(Chunk(0, 0, len(desc), desc), vec)]
        return out, poison

    @staticmethod
    def _ocr(data: bytes) -> str:
        from ..images.ocr import read_text
        return read_text(data)["text"]
