"""The providers pgmind knows, in one place: the model hub picks a class from here by the
registration's provider name, and `pgmind install` writes this list into ai.providers, which
create_model checks against (so SQL and Python never keep two lists).

One module a provider (local.py: "pgmind", the models in this process; openai.py, dashscope.py,
clip.py, http.py: remote services); base.py holds the base class, transport.py the one retrying
HTTP client the remote ones share."""
from __future__ import annotations

from ...errors import InvalidRequestError
from .base import Provider, ProviderContext
from .clip import ClipAsServiceProvider
from .dashscope import DashScopeProvider
from .http import HttpProvider
from .local import LocalProvider
from .openai import OpenAIProvider

__all__ = ["PROVIDERS", "Provider", "ProviderContext", "catalog_rows", "in_process", "provider_class"]

PROVIDERS: dict[str, type[Provider]] = {cls.name: cls for cls in (
    LocalProvider, OpenAIProvider, DashScopeProvider, ClipAsServiceProvider, HttpProvider)}


def provider_class(name: str) -> type[Provider]:
    try:
        return PROVIDERS[name]
    except KeyError:
        raise InvalidRequestError(f'unknown provider "{name}"',
                                  hint="provider is one of " + ", ".join(PROVIDERS)) from None


def catalog_rows() -> list[tuple]:
    """(name, default_url, probe, in_process, description) for ai.providers."""
    return [(c.name, c.default_url, c.probe, c.in_process, c.description) for c in PROVIDERS.values()]


def in_process(name: str) -> bool:
    return provider_class(name).in_process
