"""pgmind: PostgreSQL that thinks with its own data."""
__version__ = "0.1.0"
