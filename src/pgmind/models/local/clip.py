"""CLIP-family image–text models from a checkpoint directory the user has (no hub download):
transformers CLIPModel / ChineseCLIPModel (``local_files_only``), or open_clip with a local
``pretrained=PATH`` (options.arch names the architecture).  Both towers map into one space, so
words find pictures."""
from __future__ import annotations

import numpy as np

from ...errors import ModelLoadError
from .base import LocalImageModel


class TransformersClip(LocalImageModel):
    has_text_tower = True
    batch_size = 16

    def __init__(self, path: str, device: str = "cpu"):
        try:
            import torch
            from transformers import AutoImageProcessor, AutoModel, AutoTokenizer
            self._model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
            self._tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self._proc = AutoImageProcessor.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, ImportError) as e:
            raise ModelLoadError(f"cannot load a CLIP model from {path!r}: {str(e)[:300]}",
                                 hint="options.path must be a directory saved by save_pretrained "
                                      "(CLIPModel or ChineseCLIPModel with its tokenizer and image processor)") from None
        if not hasattr(self._model, "get_image_features") or not hasattr(self._model, "get_text_features"):
            raise ModelLoadError(f"{path} holds a {type(self._model).__name__}, not a CLIP-family model")
        self._torch, self._device = torch, device
        self.dimensions = int(self._model.config.projection_dim)
        self.max_length = int(getattr(self._model.config.text_config, "max_position_embeddings", 77))

    def _norm(self, t) -> np.ndarray:
        if not isinstance(t, self._torch.Tensor):      # newer transformers return an output object
            t = getattr(t, "pooler_output", None) if getattr(t, "image_embeds", None) is None else t.image_embeds
        return self._torch.nn.functional.normalize(t.float(), dim=-1).cpu().numpy().astype(np.float32)

    def embed_images(self, images) -> np.ndarray:
        pixels = self._proc(images=[i.convert("RGB") for i in images], return_tensors="pt")["pixel_values"]
        with self._torch.inference_mode():
            return self._norm(self._model.get_image_features(pixel_values=pixels.to(self._device)))

    def embed_texts(self, texts) -> np.ndarray:
        enc = self._tok(list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        enc = {k: v.to(self._device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        with self._torch.inference_mode():
            return self._norm(self._model.get_text_features(**enc))


class OpenClip(LocalImageModel):
    has_text_tower = True
    batch_size = 16

    def __init__(self, arch: str, pretrained: str):
        try:
            import open_clip
            import torch
        except ImportError:
            raise ModelLoadError("open_clip is not installed", hint="pip install open-clip-torch") from None
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained)
        except (OSError, RuntimeError, ValueError) as e:
            raise ModelLoadError(f"cannot load open_clip {arch} from {pretrained!r}: {str(e)[:300]}") from None
        self._model, self._preprocess = model.eval(), preprocess
        self._tok = open_clip.get_tokenizer(arch)
        self._torch = torch
        self.dimensions = int(model.text_projection.shape[-1]) if hasattr(model, "text_projection") else 512

    def embed_images(self, images) -> np.ndarray:
        x = self._torch.stack([self._preprocess(i.convert("RGB")) for i in images])
        with self._torch.inference_mode():
            return self._torch.nn.functional.normalize(self._model.encode_image(x).float(), dim=-1).numpy()

    def embed_texts(self, texts) -> np.ndarray:
        with self._torch.inference_mode():
            return self._torch.nn.functional.normalize(self._model.encode_text(self._tok(list(texts))).float(),
                                                       dim=-1).numpy()


def load_clip(path: str, backend: str, options: dict) -> LocalImageModel:
    if backend == "open_clip":
        if not options.get("arch"):
            raise ModelLoadError("an open_clip model needs options.arch (e.g. ViT-B-32)")
        return OpenClip(options["arch"], path)
    return TransformersClip(path)
