"""Token-id input on the embedding routes: LangChain's ``OpenAIEmbeddings()`` and LlamaIndex send
texts as arrays of OpenAI token ids (tiktoken ``cl100k_base``), not as text.  A local model has its
own tokenizer, so the ids are decoded back to the text they were made from and embedded as text.

Decoding needs only cl100k_base's rank → bytes table (the tiktoken file, MIT), not tiktoken
itself.  There is no internet here, so the file is looked for where it already is offline: the
tiktoken cache (TIKTOKEN_CACHE_DIR / data-gym-cache), pgmind's models directory, and the copies
that ship inside PyPI packages (llama-index-core, litellm).  Its sha256 is checked, as tiktoken does."""
from __future__ import annotations

import base64
import hashlib
import importlib.util
import os
import tempfile
import threading
from pathlib import Path

from ..errors import InvalidRequestError

# tiktoken's own cache names the file by the sha1 of its URL
CACHE_NAME = "9b5ad71b2ce5302211f9c61530b329a4922fc6a4"
SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
SPECIAL = {100257: "<|endoftext|>", 100258: "<|fim_prefix|>", 100259: "<|fim_middle|>",
           100260: "<|fim_suffix|>", 100276: "<|endofprompt|>"}
# (package, folder inside it) that ship the file
PACKAGED = (("llama_index.core", "_static/tiktoken_cache"), ("litellm", "litellm_core_utils/tokenizers"))

_table: list[bytes] | None = None
_lock = threading.Lock()


def candidates(models_dir: str | None = None) -> list[Path]:
    dirs = [os.environ.get("TIKTOKEN_CACHE_DIR"), os.environ.get("DATA_GYM_CACHE_DIR"),
            os.path.join(tempfile.gettempdir(), "data-gym-cache"),
            os.path.join(models_dir, "tiktoken") if models_dir else None]
    for package, folder in PACKAGED:
        try:
            spec = importlib.util.find_spec(package.split(".")[0])   # locate, do not import
        except (ImportError, ValueError):
            spec = None
        if spec and spec.submodule_search_locations:
            root = Path(list(spec.submodule_search_locations)[0])
            dirs.append(str(root / package.partition(".")[2] / folder) if "." in package else str(root / folder))
    return [Path(d) / CACHE_NAME for d in dirs if d]


def _load(models_dir: str | None) -> list[bytes]:
    for path in candidates(models_dir):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if hashlib.sha256(data).hexdigest() != SHA256:
            continue                                 # a damaged or different file: look further
        table: list[bytes] = []
        for line in data.splitlines():
            token, rank = line.split()
            if int(rank) != len(table):
                break
            table.append(base64.b64decode(token))
        else:
            return table
    raise InvalidRequestError(
        "token-id input needs the cl100k_base tokenizer file, which this server does not have",
        hint="send the texts themselves, or give the server the file: pip install llama-index-core, or copy "
             f"cl100k_base.tiktoken to <models dir>/tiktoken/{CACHE_NAME}")


def decode(inputs: list, models_dir: str | None = None) -> list[str]:
    """Texts from lists of cl100k_base token ids (one list per input, or one flat list)."""
    global _table
    if inputs and all(isinstance(v, int) and not isinstance(v, bool) for v in inputs):
        inputs = [inputs]
    for i, ids in enumerate(inputs):
        if not isinstance(ids, list) or not ids or not all(isinstance(v, int) and not isinstance(v, bool) for v in ids):
            raise InvalidRequestError(f"input {i} is not a non-empty list of token ids",
                                      hint="send texts, or lists of integer token ids (cl100k_base)")
    with _lock:
        if _table is None:
            _table = _load(models_dir)
    table = _table
    out = []
    for i, ids in enumerate(inputs):
        parts = []
        for v in ids:
            if 0 <= v < len(table):
                parts.append(table[v])
            elif v in SPECIAL:
                parts.append(SPECIAL[v].encode())
            else:
                raise InvalidRequestError(
                    f"input {i} has token id {v}, which is not in cl100k_base (0…{max(SPECIAL)})",
                    hint="token ids are read as OpenAI's cl100k_base (what LangChain and LlamaIndex send); "
                         "for another tokenizer send the texts")
        # a client that cut a long text into windows may have cut inside a character
        out.append(b"".join(parts).decode("utf-8", "replace"))
    return out
