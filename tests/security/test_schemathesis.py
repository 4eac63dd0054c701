"""schemathesis against the model server's own OpenAPI schema: every documented route, with the
inputs the schema allows and ones it does not, must never answer with a server error."""
from __future__ import annotations

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings, strategies as st
from schemathesis.checks import not_a_server_error

SLOW = ("/v1/chat/completions", "/v1/ask", "/api/v1/services/aigc/text-generation/generation")


def test_no_server_errors(server, token):
    spec = httpx.get(server + "/openapi.json", headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
    schema = schemathesis.openapi.from_dict(spec)
    operations = [r.ok() for r in schema.get_all_operations()]
    assert any(op.path == "/v1/search" for op in operations)
    @given(st.data())
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    def check(data):
        op = data.draw(st.sampled_from(operations))
        case = data.draw(op.as_strategy())
        if op.path in SLOW and isinstance(case.body, dict):
            case.body = {**case.body, "max_tokens": 1}
        case.call_and_validate(base_url=server, headers={"Authorization": f"Bearer {token}"}, timeout=120,
                               checks=[not_a_server_error])
    check()
