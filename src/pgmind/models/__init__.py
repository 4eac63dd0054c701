"""Models: what a registration is (spec), where it is read (registry), what runs it (hub), the
providers that run each kind (providers/) and the models that run in this process (local/).

Importing this package loads no model library: the local backends import theirs when a model loads."""
from __future__ import annotations

from .spec import ModelSpec
from .types import CALLER, ChatDelta, ChatResult, Embeddings

__all__ = ["CALLER", "ChatDelta", "ChatResult", "Embeddings", "ModelSpec"]
