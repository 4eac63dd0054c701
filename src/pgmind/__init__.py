"""pgmind: PostgreSQL that thinks with its own data.

The public API is small: :func:`connect` gives a :class:`Pgmind` with ``search`` and ``ask``;
errors derive from :class:`PgmindError`.  Everything else is reached through SQL (``ai.*``),
the CLI (``pgmind``) or the model server's HTTP API.
"""
from .errors import PgmindError

__version__ = "0.1.0"
__all__ = ["Answer", "Hit", "Pgmind", "PgmindError", "connect"]


def __getattr__(name):
    # imported on first use, so that `import pgmind` stays cheap (no psycopg, no httpx)
    if name in ("connect", "Pgmind", "Answer", "Hit"):
        from . import client
        return getattr(client, name)
    raise AttributeError(name)
