"""Training on the user's own rows: fine-tuned embedders (embedder.py), run as jobs (jobs.py)."""
