"""Chunking properties (hypothesis): nothing lost or reordered, sizes bounded, overlap as configured;
and the structure-aware methods on real text (the PostgreSQL manual's HTML pages)."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from pgmind.errors import InvalidRequestError
from pgmind.vectorizer.chunking import ChunkingConfig, chunk_text, estimate_tokens

WORDS = st.sampled_from(["PostgreSQL", "index", "vacuum", "表", "数据库", "索引。", "查询！", "the", "a",
                         "HNSW,", "并发；", "lock.", "row?", "熊猫", "吃竹子", "\n", "\n\n", " ", "## Heading\n",
                         "x" * 40, "长" * 30, "\n| a | b |\n", "| --- | --- |\n", "|", "| 表 | 长行 " * 9 + "|\n"])
TEXTS = st.lists(WORDS, min_size=0, max_size=400).map(lambda ws: "".join(
    w if w.isspace() or w.startswith("#") else w + " " for w in ws))
CONFIGS = st.builds(lambda m, mx, ov: ChunkingConfig(m, mx, min(ov, mx // 2 - 1)),
                    st.sampled_from(["recursive", "markdown"]), st.integers(8, 120), st.integers(0, 40))


def check(text: str, config: ChunkingConfig):
    chunks = chunk_text(text, config)
    if not text.strip():
        assert chunks == []
        return chunks
    assert not text[:chunks[0].start].strip() and not text[chunks[-1].end:].strip()
    for i, c in enumerate(chunks):
        assert c.seq == i
        assert c.text.endswith(text[c.start:c.end]) and text[c.start:c.end].strip()
        added = c.text[:len(c.text) - (c.end - c.start)]    # only the header line of a chunk of table rows
        assert added == "" or (added.startswith("|") and added.endswith("|\n") and added.count("\n") == 1
                               and added in text[:c.start])
        assert estimate_tokens(c.text) <= config.max_tokens
    for a, b in zip(chunks, chunks[1:]):
        assert a.start < b.start              # in order, always progressing
        assert b.start <= a.end or not text[a.end:b.start].strip()   # no gap but whitespace: nothing lost
        assert estimate_tokens(text[b.start:a.end]) <= max(config.overlap, 0) or b.start == a.end
    return chunks


@settings(max_examples=300, deadline=None)
@given(TEXTS, CONFIGS)
def test_chunking_properties(text, config):
    check(text, config)


def test_overlap_is_used_when_configured():
    text = " ".join(f"Sentence {i} is short." for i in range(60))
    chunks = check(text, ChunkingConfig("recursive", 24, 8))
    shared = [text[b.start:a.end] for a, b in zip(chunks, chunks[1:])]
    assert all(s.strip() for s in shared)            # every neighbour shares text
    assert all(estimate_tokens(s) <= 8 for s in shared)
    assert check(text, ChunkingConfig("recursive", 24, 0))[1].start == check(text, ChunkingConfig("recursive", 24, 0))[0].end


def test_chinese_sentences_are_boundaries():
    text = "熊猫是中国的国宝。它们主要吃竹子！每天要吃十几公斤；熊猫宝宝很可爱？" * 6
    chunks = chunk_text(text, ChunkingConfig("recursive", 40, 0))
    assert len(chunks) > 1
    assert all(c.text[-1] in "。！；？" for c in chunks[:-1])


def test_paragraphs_before_sentences():
    paras = ["First paragraph about indexes. It has two sentences.",
             "Second paragraph about vacuum. Also two sentences here."]
    chunks = chunk_text("\n\n".join(paras), ChunkingConfig("recursive", 16, 0))
    assert [c.text.strip() for c in chunks] == paras


def test_markdown_keeps_headings_with_their_sections():
    text = "# Intro\nshort intro.\n\n## Install\n" + "Run the installer and follow it. " * 20 + \
           "\n\n## Usage\nCall the function."
    chunks = chunk_text(text, ChunkingConfig("markdown", 40, 8))
    starts = {c.text.split("\n")[0] for c in chunks if c.text.startswith("#")}
    assert starts == {"# Intro", "## Install", "## Usage"}
    for c in chunks:   # a chunk never runs past the next heading
        assert not any(line.startswith("#") for line in c.text.split("\n")[1:])


def test_table_rows_go_together_with_their_header():
    rows = [f"| fn_{i} ( x int ) → int | Computes thing {i} of its input. | {'Yes' if i % 2 else 'No'} |" for i in range(6)]
    text = ("# Functions\n\nSome prose before the table.\n\n| Function | Description | Partial |\n| --- | --- | --- |\n"
            + "\n".join(rows) + "\n\nProse after it.\n")
    chunks = check(text, ChunkingConfig("markdown", 40, 8))
    texts = [c.text for c in chunks]
    assert texts[0].startswith("# Functions") and "|" not in texts[0]          # prose apart from the table
    assert texts[1].startswith("| Function | Description | Partial |\n| --- | --- | --- |\n" + rows[0])
    table = [t for t in texts if "fn_" in t]
    assert len(table) > 2 and all(t.startswith("| Function | Description | Partial |\n") for t in table)
    assert all(t.count("| Function") == 1 and not t.rstrip().endswith("Partial |") for t in table)
    assert sorted(r for t in table for r in t.splitlines() if "fn_" in r) == rows          # every row, each whole
    assert texts[-1].strip() == "Prose after it."
    titled = chunk_text(text, ChunkingConfig("markdown", 48, 8, title=True))
    assert all(t.text.startswith("# Functions\n| Function |") for t in titled if "fn_" in t.text)
    # a table that fits is one chunk; no header rule: no header; a row over the limit is cut
    assert [c.text for c in check(text, ChunkingConfig("markdown", 200, 20))][1].count("fn_") == 6
    assert [c.text for c in check("| a | b |\n| c | d |\n", ChunkingConfig("markdown", 20, 0))] == ["| a | b |\n| c | d |\n"]
    long = "| H |\n| --- |\n| first |\n| " + "word " * 60 + "|\n"
    pieces = check(long, ChunkingConfig("markdown", 24, 4))
    assert len(pieces) > 3 and all(c.text.startswith("| H |\n") for c in pieces)
    # only markdown (and html) knows tables: recursive chunks are slices, rows merged as any lines
    assert all(c.text == text[c.start:c.end] for c in check(text, ChunkingConfig("recursive", 200, 20)))


def test_html_tables_render_as_rows():
    from pgmind.documents import html_to_text
    html = ("<html><body><p>Before.</p><table><caption>Table 1. Things</caption><thead><tr><th>Name<th>What</thead>"
            "<tbody><tr><td><p>one ( x )</p><p>Does   one\nthing.</p></td><td>Yes</td></tr>"
            "<tr><td>two<td><table><tr><td>inner</td><td>cells</td></tr></table></tbody></table>"
            "<table class=\"navigation\"><tr><td>Prev</td></tr></table><p>After.</p>"
            "<table><tr><td>unclosed row")
    text = html_to_text(html).text
    assert text == ("Before.\n\nTable 1. Things\n| Name | What |\n| --- | --- |\n| one ( x ) Does one thing. | Yes |\n"
                    "| two | | inner | cells | |\n\nAfter.\n\n| unclosed row |")
    # nesting however deep (a table below 8 others is its cell's text) and end tags that close
    # nothing keep every word, and cost no scan of the open elements per tag
    deep = html_to_text("<table><tr><td>w " * 3000 + "x" + "</span>" * 3000 + "</td></tr></table>" * 3000).text
    assert deep.count("w") == 3000 and "x" in deep
    # the manual's function tables: one row a function, the header first
    page = html_to_text((MANUAL / "functions-aggregate.html").read_text()).text
    assert "| Function Description | Partial Mode |\n| --- | --- |\n" in page
    assert any(line.startswith("| string_agg ( value text, delimiter text ) → text") and line.endswith("| No |")
               for line in page.splitlines())


TAG_SOUP = st.lists(st.sampled_from(["<table>", "</table>", "<tr>", "</tr>", "<td>", "</td>", "<th>", "</th>",
                                      "<thead>", "</thead>", "<tbody>", "</tbody>", "<caption>", "</caption>", "<p>",
                                      "</p>", "<br>", "<pre>", "</pre>", "<h2>", "</h2>", "<li>", "|", "\n", "W"]),
                    max_size=80)


@settings(max_examples=300, deadline=None)
@given(TAG_SOUP)
def test_html_tables_in_any_nesting_lose_no_text(tokens):
    """Tables however (un)closed or nested: no error, and every word outside them and in them is kept."""
    from pgmind.documents import html_to_text
    n = 0
    parts = []
    for t in tokens:
        if t == "W":
            n += 1
            t = f" w{n}词 "
        parts.append(t)
    text = html_to_text("<body>" + "".join(parts) + "</body>").text
    assert all(f"w{i}词" in text for i in range(1, n + 1))
    check(text, ChunkingConfig("markdown", 24, 4))


def test_none_and_empty():
    assert chunk_text("  \n ", ChunkingConfig("recursive")) == []
    assert [c.text for c in chunk_text("whole text", ChunkingConfig("none"))] == ["whole text"]


def test_long_word_is_cut_by_characters():
    chunks = chunk_text("y" * 1000, ChunkingConfig("recursive", 20, 0))
    assert "".join(c.text for c in chunks) == "y" * 1000
    assert all(estimate_tokens(c.text) <= 20 for c in chunks)


MANUAL = Path("/usr/share/doc/postgresql-doc-15/html")


@pytest.mark.parametrize("page", ["sql-createindex.html", "indexes-types.html", "routine-vacuuming.html"])
def test_html_manual_pages(page):
    from pgmind.documents import html_to_text
    html = (MANUAL / page).read_text()
    doc = html_to_text(html)
    chunks = chunk_text(html, ChunkingConfig("html", 200, 20))
    assert doc.title and len(chunks) > 3
    assert not doc.text[chunks[-1].end:].strip()
    # navigation is gone, headings start chunks, no chunk is over the limit
    assert "Prev" not in chunks[0].text[:40] and "Next" not in chunks[0].text[:40]
    assert chunks[0].text.startswith("#")
    assert all(estimate_tokens(c.text) <= 200 for c in chunks)
    headings = [line for line in doc.text.splitlines() if line.startswith("#")]
    assert all(any(c.text.startswith(h) for c in chunks) for h in headings)


@pytest.mark.parametrize("spec,needle", [({"method": "words"}, "unknown chunking method"),
                                         ({"max_tokens": 4}, "from 8 to 8192"),
                                         ({"max_tokens": 100, "overlap": 60}, "under half"),
                                         ({"size": 3}, "unknown chunking settings")])
def test_bad_config(spec, needle):
    with pytest.raises(InvalidRequestError, match=needle):
        ChunkingConfig.from_json(spec)


def test_embedding_batches_are_packed_by_count_and_tokens():
    import numpy as np

    from pgmind.models.local.base import LocalEmbeddingModel

    class Recorder(LocalEmbeddingModel):
        dimensions, batch_size, max_batch_tokens = 2, 4, 100
        seen: list = []

        def embed_batch(self, texts, input_type):
            self.seen.append(texts)
            return np.asarray([[len(t), 0] for t in texts], dtype=np.float32)

    m = Recorder()
    texts = ["a" * 4 * n for n in (50, 1, 2, 40, 3, 4, 5, 6)]        # 50, 1, 2, 40, ... tokens
    out = m.embed(texts, validated=True).vectors
    assert out[:, 0].tolist() == [len(t) for t in texts]              # input order restored
    assert all(len(b) <= 4 for b in m.seen)
    assert all(max(len(t) // 4 for t in b) * len(b) <= 100 or len(b) == 1 for b in m.seen)
    assert [len(t) for t in m.seen[0]] == [200, 160]                  # longest first, stopped by tokens


def test_title_on_every_chunk():
    from pgmind.vectorizer.chunking import ChunkingConfig, chunk_text
    text = "# CREATE INDEX\n\n" + "\n\n".join(f"Paragraph {i} says it builds something. " * 6 for i in range(8))
    plain = chunk_text(text, ChunkingConfig("markdown", 64, 8))
    titled = chunk_text(text, ChunkingConfig("markdown", 64, 8, title=True))
    assert len(plain) > 2 and all(c.text.startswith("# CREATE INDEX") for c in titled)
    assert sum(1 for c in plain if c.text.startswith("# CREATE INDEX")) == 1
    assert all(len(c.text.split()) <= 64 + 8 for c in titled)
    deeper = chunk_text(text.replace("# CREATE", "## CREATE", 1), ChunkingConfig("markdown", 64, 8, title=True))
    assert all(c.text.startswith("## CREATE INDEX") for c in deeper)
    # no title line: nothing added
    assert chunk_text("just text " * 50, ChunkingConfig("recursive", 32, 4, title=True)) == \
        chunk_text("just text " * 50, ChunkingConfig("recursive", 32, 4))
