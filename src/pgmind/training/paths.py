"""Where a trained model's files go: the one function that turns a model name into a directory.

A model name is the user's text (``ai.finetune(..., new_model => ...)``; the registry allows
``/`` and ``.`` in it), so it is never a path: the directory is a slug of the name (letters,
digits and ``_ . + @ -`` only, never ``.``/``..``) and a hash of the whole name, so two names
never share a directory and ``../x``, ``/abs``, ``a/b`` or a NUL cannot lead anywhere else.
The resolved result is checked to be inside the models folder all the same.

The folder is under the pgmind home (``<home>/models``), one per database (its name and a hash
of the cluster's system identifier and the database's oid): two databases on one machine that
train a model of the same name do not overwrite each other.  A registered model keeps the
absolute path it was saved to in its options (``weights``, ``path``), so models trained before
this layout load as before."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ..errors import InvalidRequestError, PgmindError

KINDS = ("finetuned", "trained")     # fine-tuned text encoders; image encoders trained on labels
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+@-]+")
READABLE = 48


def slug(name: str) -> str:
    """A directory name for ``name``: a readable part and 12 hex digits of its SHA-256."""
    if not isinstance(name, str) or not name:
        raise InvalidRequestError("a model name is empty", hint="name the model: 1-200 letters, digits and _ . : / @ + -")
    return f"{_readable(name)}-{_digest(name)}"


def _readable(name: str) -> str:
    return _UNSAFE.sub("_", name).strip("._-")[:READABLE].rstrip("._-") or "model"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def inside(root: Path, path: Path) -> Path:
    """``path`` resolved (symlinks too), or an error if that is not strictly inside ``root``."""
    real_root, real = Path(root).resolve(), Path(path).resolve()
    if real == real_root or real_root not in real.parents:
        raise PgmindError(f"{path} is outside the models folder {real_root}",
                          hint="remove whatever links out of the models folder")
    return real


def model_dir(root: Path, kind: str, name: str) -> Path:
    """The directory of model ``name`` of this ``kind`` under ``root`` (a database's models folder)."""
    if kind not in KINDS:
        raise ValueError(f"kind is one of {KINDS}")
    return inside(root, Path(root) / kind / slug(name))


def database_key(conn) -> str:
    """Which database this is, as a directory name: its name (readable) and a hash of the cluster's
    system identifier (or, where the role may not read it, the server's address) and its oid."""
    name, oid, may = conn.execute(
        "select current_database(), (select oid from pg_database where datname = current_database()), "
        "has_function_privilege('pg_control_system()', 'execute')").fetchone()
    cluster = conn.execute("select system_identifier::text from pg_control_system()").fetchone()[0] if may else \
        f"{conn.info.host}:{conn.info.port}"
    return f"{_readable(name)}-{_digest(f'{cluster}/{oid}')}"


def models_root(settings, conn) -> Path:
    """This database's trained-models folder: ``<home>/models/<database>``."""
    return Path(settings.home) / "models" / database_key(conn)


def trained_model_dir(settings, conn, kind: str, name: str) -> Path:
    """Where the worker on ``conn``'s database saves model ``name`` (a ``kind`` of KINDS)."""
    return model_dir(models_root(settings, conn), kind, name)
