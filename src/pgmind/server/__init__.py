"""The model server: one HTTP app, one module per protocol."""
