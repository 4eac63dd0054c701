"""The database side: the embedded cluster, connections and the schema installer."""
from .connection import connect, resolve_dsn, service_dsn
from .cluster import Cluster
from .migrate import install, installed_version

__all__ = ["Cluster", "connect", "install", "installed_version", "resolve_dsn", "service_dsn"]
