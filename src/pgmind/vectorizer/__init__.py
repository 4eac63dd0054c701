"""Vectorizers: tables that keep their own chunks and embeddings current."""
