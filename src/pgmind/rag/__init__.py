"""RAG's text rules: what a question is (language), what the expansion names, which sentences of
each source the prompt carries within its budget, how the prompts are filled, and how an answer's
claims are checked against its sources.  Pure functions over text: the model server runs them for
the SQL functions (``/pgmind/v1/rag/*``); rows, rights and settings stay in SQL."""
from .text import (estimate_tokens, expansion_headings, expansion_name_list, expansion_names, fill,
                   language, sentence_units, title_line)

__all__ = ["estimate_tokens", "expansion_headings", "expansion_name_list", "expansion_names", "fill", "language",
           "sentence_units", "title_line"]
