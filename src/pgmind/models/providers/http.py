"""Any HTTP model service (POLAR_AI's and AlloyDB's "other"): the registration's input and output
functions build the request and read the answer; pgmind only sends it, with the model's key."""
from __future__ import annotations

from .base import Provider


class HttpProvider(Provider):
    name = "other"
    description = "any HTTP model service, called through its input/output functions (ai.call_model)"
    probe = False
