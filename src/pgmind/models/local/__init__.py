"""Models that run in this process: each backend in a module of its own (its heavy library is
imported when the model loads, not here), their base classes (base.py), what loads a registration
(loader.py), and what the hub runs them behind: the batcher and the embedding cache."""
