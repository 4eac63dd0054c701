"""The console's pages, one module per page family; each registers its routes on ``router``."""
