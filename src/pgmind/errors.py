"""One error hierarchy for the whole project.

Every error knows three renderings of itself, so that each front end only translates:
a SQLSTATE (the SQL functions raise it with the message and hint), an HTTP status
(the model server answers with it), and a hint that tells the user how to fix it.
"""
from __future__ import annotations


class PgmindError(Exception):
    """Base class. ``message`` says what went wrong, ``hint`` how to fix it."""

    sqlstate = "PM000"
    http_status = 500
    error_type = "server_error"
    default_hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None, detail: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        self.detail = detail

    def to_dict(self) -> dict:
        """The OpenAI-style error body the model server sends (plus our SQLSTATE and hint)."""
        body = {"message": self.message, "type": self.error_type, "code": self.sqlstate,
                "sqlstate": self.sqlstate}
        if self.hint:
            body["hint"] = self.hint
        if self.detail:
            body["detail"] = self.detail
        return {"error": body}

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"


class ConfigError(PgmindError):
    sqlstate = "F0000"  # config_file_error
    error_type = "config_error"


class DatabaseError(PgmindError):
    """The database cannot be reached or is not set up."""
    sqlstate = "08001"
    http_status = 503
    error_type = "database_error"


class ClusterError(DatabaseError):
    """The embedded cluster failed to start, stop or initialise."""


class MissingExtensionError(DatabaseError):
    sqlstate = "58P01"  # undefined_file: the extension's files are not installed
    default_hint = "run scripts/setup.sh (or `make test`), which builds and installs pgvector 0.8"


class MigrationError(DatabaseError):
    sqlstate = "PM010"


class InvalidRequestError(PgmindError):
    """The input is wrong: bad JSON, bad messages, an unknown option, a NULL where a value is needed."""
    sqlstate = "22023"  # invalid_parameter_value
    http_status = 400
    error_type = "invalid_request_error"


class InputTooLongError(InvalidRequestError):
    sqlstate = "22001"  # string_data_right_truncation
    # (ai.embed has no truncate option: over HTTP, OpenAI's route cuts at the limit by default and
    # DashScope's takes parameters.truncate)
    default_hint = ("split the text into chunks (a vectorizer does this for you) or shorten it; over HTTP, "
                    "\"truncate\": true cuts it at the model's limit")


class DimensionMismatchError(InvalidRequestError):
    sqlstate = "22000"  # data_exception, as pgvector reports a dimension mismatch


class UnknownModelError(PgmindError):
    sqlstate = "42704"  # undefined_object
    http_status = 404
    error_type = "model_not_found"
    default_hint = "list the registered models with `pgmind models list` or `select * from ai.models`"


class PermissionDeniedError(PgmindError):
    sqlstate = "42501"  # insufficient_privilege
    http_status = 403
    error_type = "permission_denied"


class AuthenticationError(PgmindError):
    sqlstate = "28000"  # invalid_authorization_specification
    http_status = 401
    error_type = "authentication_error"
    default_hint = ("send an API key as 'Authorization: Bearer pgmk-...' (an administrator makes one: "
                    "select ai.create_api_key('<role>'))")


class ModelServerUnavailableError(PgmindError):
    """The model server (pgmind serve) does not answer."""
    sqlstate = "08001"  # sqlclient_unable_to_establish_sqlconnection
    http_status = 503
    error_type = "service_unavailable"
    default_hint = "start it with `pgmind serve`"


class ProviderError(PgmindError):
    """A remote provider answered with an error status."""
    sqlstate = "PM002"
    http_status = 502
    error_type = "provider_error"

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False,
                 retry_after: float | None = None, hint: str | None = None, detail: str | None = None):
        super().__init__(message, hint=hint, detail=detail)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        if status in REFUSED_INPUT and not retryable:
            # the provider refused what it was sent: that is the input's fault, and a client (or a
            # worker) must not send it again as it is
            self.http_status, self.error_type = 400, "invalid_request_error"


REFUSED_INPUT = (400, 413, 422)


class ProviderTimeoutError(ProviderError):
    sqlstate = "PM003"
    http_status = 504
    error_type = "timeout"
    default_hint = "the provider did not answer in time; raise the model's options {\"timeout\": seconds} or retry later"

    def __init__(self, message: str, **kw):
        kw.setdefault("retryable", True)
        super().__init__(message, **kw)


class ProviderResponseError(ProviderError):
    """The provider answered, but not with the shape its protocol documents."""
    sqlstate = "PM004"
    error_type = "invalid_response"
    default_hint = "check the model's URL and provider; the response did not match the provider's protocol"


class ModelLoadError(PgmindError):
    sqlstate = "PM005"
    http_status = 500
    error_type = "model_load_error"
