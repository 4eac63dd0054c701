"""SQL errors as the library's errors (db.connection.from_sql_error), without a database."""
from __future__ import annotations

from types import SimpleNamespace

from pgmind.db.connection import from_sql_error
from pgmind.errors import ProviderTimeoutError


class _Error(Exception):
    def __init__(self, state, message, hint=None):
        super().__init__(message)
        self.sqlstate = state
        self.diag = SimpleNamespace(message_primary=message, message_hint=hint)


def test_plpython_prefix_is_taken_off():
    # (a statement timeout inside a PL/Python call reaches the server with the prefix: WHEN OTHERS
    # handlers do not catch query_canceled)
    err = from_sql_error(_Error("57014", "spiexceptions.QueryCanceled: canceling statement due to statement timeout"))
    assert isinstance(err, ProviderTimeoutError)
    assert err.message == "canceling statement due to statement timeout"
    assert err.sqlstate == "57014"
    err = from_sql_error(_Error("XX000", "plpy.Error: spiexceptions.RaiseException: boom", hint="h"))
    assert err.message == "boom" and err.hint == "h"
