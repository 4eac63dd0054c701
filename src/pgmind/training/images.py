"""An image encoder taught the user's labels: a small CNN trained so each image lands near its
label's text embedding (the label and its captions, English and Chinese, embedded by a text model
such as use-m3).  Words then find pictures through the text model, and pictures find pictures.

It knows only the labels it was taught: a query about something else gets low similarities
(measured in docs/benchmarks.md), not a confident answer."""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InvalidRequestError
from ..models.local.base import LocalImageModel

TAU = 0.05          # temperature of the image → label logits
# the options an image encoder's job reads (train below, and the runner: captions, translate,
# question_model, force); ai.train_image_encoder refuses any other name at queue time
# (sql/functions/500_training.sql has the same list)
OPTIONS = frozenset({"seed", "device", "image_size", "channels", "epochs", "batch_size", "lr",
                     "captions", "translate", "question_model", "force"})


def small_cnn(torch, dim: int, channels: int = 1):
    nn = torch.nn

    def block(c_in, c_out):
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                             nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2))
    return nn.Sequential(block(channels, 32), block(32, 64), block(64, 96), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(96, 256), nn.ReLU(), nn.Dropout(0.1), nn.Linear(256, dim))


def to_tensor(torch, images: list, size: int, channels: int):
    """PIL images → (n, channels, size, size) in [-1, 1]."""
    mode = "L" if channels == 1 else "RGB"
    arrays = [np.asarray(img.convert(mode).resize((size, size)), dtype=np.float32) for img in images]
    x = torch.from_numpy(np.stack(arrays)) / 127.5 - 1.0
    return x.unsqueeze(1) if channels == 1 else x.permute(0, 3, 1, 2)


def precision_at_10(scores: np.ndarray, truth: np.ndarray, labels: np.ndarray) -> float:
    top = np.argsort(-scores, axis=1)[:, :10]
    return float((labels[top] == truth[:, None]).mean())


def train(images: list, labels: list[str], targets: dict[str, np.ndarray], options: dict,
          on_step: Callable[[int, int, float], bool]):
    """Returns (the trained net, metrics on held-out images), or (None, {}) when cancelled.
    ``targets``: each label's unit text embedding."""
    import torch
    from .embedder import training_device
    seed = int(options.get("seed", 42))
    torch.manual_seed(seed)
    device = torch.device(training_device(torch, str(options.get("device", "auto"))))
    size, channels = int(options.get("image_size", 28)), int(options.get("channels", 1))
    epochs, batch = int(options.get("epochs", 3)), int(options.get("batch_size", 64))
    names = sorted(targets)
    T = torch.from_numpy(np.stack([targets[n] for n in names]).astype(np.float32)).to(device)
    y = np.array([names.index(lab) for lab in labels])
    y_t = torch.from_numpy(y).to(device)
    order = list(range(len(images)))
    random.Random(seed).shuffle(order)
    held = order[:max(len(names), len(order) // 10)]          # held out: never trained on
    train_idx = order[len(held):]
    x_all = to_tensor(torch, images, size, channels).to(device)
    net = small_cnn(torch, T.shape[1], channels).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=float(options.get("lr", 3e-3)), weight_decay=1e-4)
    steps_per_epoch = max(1, len(train_idx) // batch)
    total, step = steps_per_epoch * epochs, 0
    best, best_state = None, None
    for epoch in range(epochs):
        net.train()
        random.Random(seed + epoch).shuffle(train_idx)
        for b in range(steps_per_epoch):
            idx = train_idx[b * batch:(b + 1) * batch]
            xb = x_all[idx]
            if channels == 1:         # small shifts: the photos users search are not centred like the set
                dx, dy = random.randint(-2, 2), random.randint(-2, 2)
                xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
            emb = torch.nn.functional.normalize(net(xb), dim=-1)
            loss = torch.nn.functional.cross_entropy(emb @ T.T / TAU, y_t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if not on_step(step, total, float(loss.detach())):
                return None, {}
        metrics = evaluate(net, x_all[held], y[held], T, names, x_all[train_idx[:2000]], y[train_idx[:2000]])
        if best is None or metrics["text_to_image_p10"] > best["text_to_image_p10"]:
            best, best_state = metrics, {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    return net.cpu().eval(), best


def evaluate(net, x_held, y_held, T, names, x_base, y_base) -> dict:
    import torch
    with torch.inference_mode():
        net.eval()
        held = torch.nn.functional.normalize(net(x_held), dim=-1).cpu().numpy()
        base = torch.nn.functional.normalize(net(x_base), dim=-1).cpu().numpy()
    T = T.cpu().numpy()
    # text → image: each label's text embedding as the query, over the held-out images
    t2i = precision_at_10(T @ held.T, np.arange(len(names)), y_held)
    accuracy = float(((held @ T.T).argmax(1) == y_held).mean())
    i2i = precision_at_10(held @ base.T, y_held, y_base)
    # what always guessing the commonest label gets (the held-out images' share of it)
    guess = float(np.bincount(y_held).max() / len(y_held))
    return {"text_to_image_p10": t2i, "label_accuracy": accuracy, "guess_accuracy": guess,
            "image_to_image_p10": i2i, "held_out": int(len(y_held)), "labels": len(names)}


def save(net, directory: Path, meta: dict) -> None:
    import torch
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), directory / "encoder.pt")
    (directory / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1))


class TrainedImageEncoder(LocalImageModel):
    """A trained encoder served like any image model: images → its space; texts → the same space
    through the text model it was trained against (its text tower); labels → its own labels."""

    has_text_tower = True

    def __init__(self, directory: str, load_text_model: Callable[[dict], object]):
        import torch
        d = Path(directory)
        if not (d / "meta.json").exists():
            from ..errors import ModelLoadError
            raise ModelLoadError(f"no trained image encoder in {directory}", hint="check the model's options.path")
        self.meta = json.loads((d / "meta.json").read_text())
        self._torch = torch
        self.size, self.channels = self.meta["image_size"], self.meta["channels"]
        self.dimensions = self.meta["dimensions"]
        self._net = small_cnn(torch, self.dimensions, self.channels)
        self._net.load_state_dict(torch.load(d / "encoder.pt", map_location="cpu", weights_only=True))
        self._net.eval()
        self.labels = list(self.meta["labels"])
        self._targets = np.asarray(self.meta["targets"], dtype=np.float32)
        self._text = load_text_model(self.meta["text_model"])

    def embed_images(self, images: list) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            out = self._net(to_tensor(torch, images, self.size, self.channels))
            return torch.nn.functional.normalize(out, dim=-1).numpy().astype(np.float32)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        return self._text.embed(texts, "query").vectors

    def classify(self, images: list, k: int = 5) -> list[list[tuple[str, float]]]:
        return self.embed_and_label(images, k)[1]

    def embed_and_label(self, images: list, k: int = 5):
        v = self.embed_images(images)
        logits = v @ self._targets.T / TAU
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        top = np.argsort(-p, axis=1)[:, :k]
        return v, [[(self.labels[j], float(p[i, j])) for j in row] for i, row in enumerate(top)]


def check_labels(labels: list) -> None:
    if len(set(labels)) < 2:
        raise InvalidRequestError(f"the images have {len(set(labels))} label(s); an encoder needs at least 2",
                                  hint="give images of two or more labels")
