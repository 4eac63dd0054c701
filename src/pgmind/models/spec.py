"""A registered model as the model server sees it (ai.model_registry + its secret)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Collection

from ..errors import ConfigError, PermissionDeniedError


@dataclass(frozen=True)
class ModelSpec:
    model_id: str
    provider: str
    model_type: str
    model_name: str
    url: str | None = None
    auth: dict = field(default_factory=dict)
    secret: str | None = field(default=None, repr=False)  # never printed
    options: dict = field(default_factory=dict)
    dimensions: int | None = None

    def auth_headers(self, allowed_env: Collection[str] = ()) -> dict:
        """The authentication header for the provider: a stored token, or an environment variable
        of this (the model server's) process, if it is one the operator lends to models
        (PGMIND_SECRET_ENV): a registration must not read whatever the environment holds."""
        kind = self.auth.get("author_type", "none")
        if kind == "token":
            token = self.secret
            if not isinstance(token, str) or not token:
                raise ConfigError(f"model {self.model_id} takes a stored key, and has none",
                                  hint="select ai.alter_model('<model>', auth => '{\"token\": \"...\"}')")
        elif kind == "env":
            if not isinstance(self.auth.get("env"), str) or self.auth["env"] not in allowed_env:
                raise PermissionDeniedError(
                    f"model {self.model_id} takes its key from ${self.auth['env']}, which the model server does not "
                    "lend to models", hint=f"the operator can add {self.auth['env']} to PGMIND_SECRET_ENV")
            token = os.environ.get(self.auth["env"])
            if not token:
                raise ConfigError(f"model {self.model_id} takes its key from ${self.auth['env']}, "
                                  "which is not set in the model server's environment",
                                  hint=f"export {self.auth['env']}=... before `pgmind serve`")
        else:
            return {}
        header = self.auth.get("header", "Authorization")
        scheme = self.auth.get("scheme", "Bearer" if header.lower() == "authorization" else "")
        return {header: f"{scheme} {token}".strip()}

    @property
    def timeout(self) -> float | None:
        t = self.options.get("timeout")
        return float(t) if t is not None else None


SPEC_QUERY = """
    select r.model_id, r.provider, r.model_type, r.model_name, r.url, r.auth, s.secret, r.options, r.dimensions
    from ai.model_registry r left join ai.model_secrets s on s.model_id = r.model_id
    where r.model_id = %s
"""


def spec_from_row(row) -> ModelSpec:
    model_id, provider, model_type, model_name, url, auth, secret, options, dims = row
    return ModelSpec(model_id, provider, model_type, model_name, url, auth or {}, secret, options or {}, dims)
