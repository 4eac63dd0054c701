"""What the Ray driver sends its actors (red-team finding H2): Ray keeps an actor's arguments in its
control store, readable by whoever reaches the cluster, and ships them to other machines, so no
secret may be among them — not the service role's password, not the model server's token, not the
install role's DSN.  Each node supplies the password itself (docs/scale.md)."""
from __future__ import annotations

import pickle

from psycopg.conninfo import conninfo_to_dict

from pgmind.config import load_settings
from pgmind.vectorizer.ray_backfill import _node_dsn, shippable

SERVICE_PW = "svc-Secret-1f2e3d"
INSTALL_PW = "install-Secret-9a8b7c"
TOKEN = "token-Secret-5d6e7f"


def _settings(tmp_path, **kw):
    (tmp_path / "pgmind_service.password").write_text(SERVICE_PW)
    (tmp_path / "pgmind_service.password").chmod(0o600)
    return load_settings(home=str(tmp_path), token=TOKEN,
                         dsn=f"host=db.internal port=5432 dbname=app user=admin password={INSTALL_PW} "
                             f"sslpassword={INSTALL_PW}", **kw)


def test_no_secret_travels_to_the_actors(tmp_path, monkeypatch):
    monkeypatch.delenv("PGMIND_SERVICE_DSN", raising=False)
    s = _settings(tmp_path)
    shipped = shippable(s, s.dsn)
    blob = pickle.dumps(shipped)
    for secret in (SERVICE_PW, INSTALL_PW, TOKEN):
        assert secret.encode() not in blob
    params = conninfo_to_dict(shipped.service_dsn)
    assert params["user"] == "pgmind_service" and params["host"] == "db.internal" and "password" not in params
    assert shipped.dsn is None and shipped.token is None and shipped.gateway_dsn is None


def test_an_explicit_service_dsn_loses_its_password_too(tmp_path, monkeypatch):
    monkeypatch.delenv("PGMIND_SERVICE_DSN", raising=False)
    s = _settings(tmp_path, service_dsn=f"host=db.internal dbname=app user=pgmind_service password={SERVICE_PW}")
    assert SERVICE_PW.encode() not in pickle.dumps(shippable(s, s.dsn))


def test_each_node_supplies_the_password_itself(tmp_path, monkeypatch):
    monkeypatch.delenv("PGMIND_SERVICE_DSN", raising=False)
    s = _settings(tmp_path)
    shipped = shippable(s, s.dsn)
    # a local cluster: the password file under the pgmind home
    assert conninfo_to_dict(_node_dsn(shipped))["password"] == SERVICE_PW
    # a node that sets PGMIND_SERVICE_DSN: used whole
    monkeypatch.setenv("PGMIND_SERVICE_DSN", "host=10.0.0.9 dbname=app user=pgmind_service")
    assert _node_dsn(shipped) == "host=10.0.0.9 dbname=app user=pgmind_service"
    # neither: libpq's own (PGPASSWORD, ~/.pgpass) — the DSN stays without one
    monkeypatch.delenv("PGMIND_SERVICE_DSN")
    (tmp_path / "pgmind_service.password").unlink()
    assert "password" not in conninfo_to_dict(_node_dsn(shipped))
