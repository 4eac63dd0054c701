"""The files people have (issue 38): text in the encoding it was written in (UTF-8 with or without a
BOM, UTF-16 with a BOM, GBK/GB18030, Big5, an HTML page's declared charset) or refused with the
reason; Word .docx, CSV and .xlsx files; every file left out named with why.  The readers are tested
without the database; one test runs a folder through ``ingest``."""
from __future__ import annotations

from io import BytesIO

import pytest

from pgmind.documents import decode_text, docx_to_text, xlsx_sheets
from pgmind.ingest import ingest, read_file, skip_reason, walk

SIMPLIFIED = "# 大熊猫\n\n大熊猫是中国特有的动物，主要吃竹子，每天要吃十几公斤。\n"
TRADITIONAL = "# 資料庫\n\n我們的資料庫支援全文檢索與向量搜尋。臺灣的使用者習慣使用繁體中文。\n"
# GB18030's own: an Extension B character (𠮷) and Uyghur, both four-byte sequences outside GBK
BEYOND_GBK = "𠮷野家的牛肉饭很好吃。维吾尔文写作 ئۇيغۇرچە ，也能存进数据库里。\n"


def decoded(text: str, codec: str, **kw) -> tuple[str, str]:
    return decode_text(text.encode(codec), **kw)


# -- encodings ----------------------------------------------------------------------------------
def test_utf8_with_and_without_bom():
    assert decoded(SIMPLIFIED, "utf-8") == (SIMPLIFIED, "utf-8")
    assert decode_text(b"\xef\xbb\xbf" + SIMPLIFIED.encode()) == (SIMPLIFIED, "utf-8")   # the BOM is not text
    assert decode_text("a\r\nb\r\n".encode()) == ("a\nb\n", "utf-8")


def test_utf16_with_bom():
    assert decode_text(b"\xff\xfe" + TRADITIONAL.encode("utf-16-le")) == (TRADITIONAL, "utf-16-le")
    assert decode_text(b"\xfe\xff" + SIMPLIFIED.encode("utf-16-be")) == (SIMPLIFIED, "utf-16-be")
    with pytest.raises(ValueError, match="UTF-16-LE byte order mark but is not UTF-16-LE text"):
        decode_text(b"\xff\xfe" + "熊猫".encode("utf-16-le") + b"\x00")          # an odd byte count


def test_gbk_gb18030_big5():
    assert decoded(SIMPLIFIED, "gbk") == (SIMPLIFIED, "gb18030")
    with pytest.raises(UnicodeEncodeError):
        BEYOND_GBK.encode("gbk")
    assert decoded(BEYOND_GBK, "gb18030") == (BEYOND_GBK, "gb18030")
    assert decoded(TRADITIONAL, "big5") == (TRADITIONAL, "big5")
    assert decoded(TRADITIONAL, "gbk") == (TRADITIONAL, "gb18030")     # GBK has the traditional characters too
    assert decoded("熊猫", "gbk") == ("熊猫", "gb18030")                 # short, still not Big5
    assert decoded("Don’t panic — a café in Zürich", "cp1252") == ("Don’t panic — a café in Zürich", "cp1252")


def test_refused_with_the_reason():
    blob = bytes(range(256)) * 8
    with pytest.raises(ValueError, match="not text: it has NUL bytes"):
        decode_text(blob)
    with pytest.raises(ValueError, match="control characters"):
        decode_text(b"abc" + bytes(range(1, 9)) * 4 + b"def")
    with pytest.raises(ValueError, match="not in an encoding recognized with confidence"):
        decoded("これは日本語の文章です。東京は晴れです。", "shift_jis")
    with pytest.raises(ValueError, match="not in an encoding recognized with confidence"):
        decode_text(bytes(range(0x80, 0x100)) * 4)
    korean = "안녕하세요. 저는 데이터베이스를 공부하고 있습니다. 이 시스템은 한국어 문서를 읽을 수 있어야 합니다."
    with pytest.raises(ValueError, match="Korean"):
        decoded(korean, "euc-kr")                                      # GB18030 would read it, as nonsense
    japanese = "これは日本語の文章です。データベースの検索を試しています。東京は晴れです。"
    with pytest.raises(ValueError, match="Japanese"):
        decoded(japanese, "euc-jp")


def test_html_declared_charset():
    page = "<html><head><meta charset='{}'><title>{}</title></head><body><p>{}</p></body></html>"
    title, body = "ニュース", "これは日本語の文章です。"
    raw = page.format("shift_jis", title, body).encode("shift_jis")
    with pytest.raises(ValueError):
        decode_text(raw)                                               # undetected without the declaration
    assert decode_text(raw, html=True) == (page.format("shift_jis", title, body), "shift_jis")
    old = '<meta http-equiv="Content-Type" content="text/html; charset=gb2312"><p>{}</p>'.format(SIMPLIFIED)
    assert decode_text(old.encode("gbk"), html=True) == (old, "gb18030")
    # a page in UTF-8 that still declares its old charset is UTF-8
    assert decode_text(old.encode("utf-8"), html=True) == (old, "utf-8")


# -- Word, CSV, Excel --------------------------------------------------------------------------
def make_docx(title: str = "") -> bytes:
    import docx
    d = docx.Document()
    d.core_properties.title = title
    d.add_heading("熊猫手册", level=1)
    d.add_paragraph("大熊猫主要吃竹子。")
    d.add_heading("分布", level=2)
    d.add_paragraph("四川", style="List Bullet")
    d.add_paragraph("陕西", style="List Bullet")
    t = d.add_table(rows=3, cols=2)
    for r, cells in enumerate([("省份", "数量"), ("四川", "1387"), ("陕西 | 秦岭", "345")]):
        for c, text in enumerate(cells):
            t.cell(r, c).text = text
    d.add_paragraph("数据来自第四次调查。")
    out = BytesIO()
    d.save(out)
    return out.getvalue()


DOCX_TEXT = ("# 熊猫手册\n\n大熊猫主要吃竹子。\n\n## 分布\n\n- 四川\n\n- 陕西\n\n"
             "| 省份 | 数量 |\n| --- | --- |\n| 四川 | 1387 |\n| 陕西 \\| 秦岭 | 345 |\n\n数据来自第四次调查。")


def test_docx():
    doc = docx_to_text(make_docx())
    assert (doc.title, doc.text) == ("熊猫手册", DOCX_TEXT)
    assert docx_to_text(make_docx(title="熊猫")).title == "熊猫"       # the document's own title first
    with pytest.raises(ValueError, match="not a readable .docx"):
        docx_to_text(b"PK\x03\x04 a zip cut short")
    with pytest.raises(ValueError, match="not a readable .docx"):
        docx_to_text(SIMPLIFIED.encode())


CSV = "名称,价格,产地\n苹果,5,\"山东,烟台\"\n\n香蕉,3,海南\n"


def test_csv_one_document_or_one_a_row(tmp_path):
    f = tmp_path / "水果.csv"
    f.write_bytes(CSV.encode("gbk"))
    raw = f.read_bytes()
    docs, enc = read_file(tmp_path, f, raw, "sha")
    assert enc == "gb18030"
    assert [(d.path, d.title, d.body) for d in docs] == [
        ("水果.csv", "水果", "| 名称 | 价格 | 产地 |\n| --- | --- | --- |\n| 苹果 | 5 | 山东,烟台 |\n| 香蕉 | 3 | 海南 |")]
    docs, _ = read_file(tmp_path, f, raw, "sha", rows=True)
    assert [(d.path, d.title, d.body) for d in docs] == [
        ("水果.csv#2", "水果: 苹果", "名称: 苹果\n价格: 5\n产地: 山东,烟台"),
        ("水果.csv#4", "水果: 香蕉", "名称: 香蕉\n价格: 3\n产地: 海南")]       # row 3 is empty
    assert len({d.sha256 for d in docs}) == 2 and "sha" not in {d.sha256 for d in docs}
    tsv = tmp_path / "t.tsv"
    tsv.write_text("a\tb\n1,5\t2\n", encoding="utf-8")
    assert read_file(tmp_path, tsv, tsv.read_bytes(), "s")[0][0].body == "| a | b |\n| --- | --- |\n| 1,5 | 2 |"


def test_xlsx(tmp_path):
    import openpyxl
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "价格"
    for row in (["名称", "价格"], ["苹果", 5.0], [], ["香蕉", 3.5]):
        ws.append(row)
    wb.create_sheet("空")
    wb.save(tmp_path / "b.xlsx")
    raw = (tmp_path / "b.xlsx").read_bytes()
    assert xlsx_sheets(raw) == [("价格", [["名称", "价格"], ["苹果", "5"], ["", ""], ["香蕉", "3.5"]]), ("空", [])]
    docs, _ = read_file(tmp_path, tmp_path / "b.xlsx", raw, "sha")
    assert [(d.path, d.body) for d in docs] == [("b.xlsx", "| 名称 | 价格 |\n| --- | --- |\n| 苹果 | 5 |\n| 香蕉 | 3.5 |")]
    docs, _ = read_file(tmp_path, tmp_path / "b.xlsx", raw, "sha", rows=True)
    assert [(d.path, d.body) for d in docs] == [("b.xlsx#价格!2", "名称: 苹果\n价格: 5"), ("b.xlsx#价格!4", "名称: 香蕉\n价格: 3.5")]
    with pytest.raises(ValueError, match="not a readable .xlsx"):
        xlsx_sheets(b"not a workbook")


def test_what_is_skipped_and_why(tmp_path):
    for name in ("a.md", "pic.png", "old.doc", "old.xls", "~$report.docx", "README", ".hidden.txt", ".git/config"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = {f.relative_to(tmp_path).as_posix(): skip_reason(f) for f in walk(tmp_path)}
    assert found == {"a.md": None, "pic.png": "unsupported file type .png",
                     "old.doc": "unsupported file type .doc; save it as .docx",
                     "old.xls": "unsupported file type .xls; save it as .xlsx",
                     "~$report.docx": "an Office lock file (the document is open in Word or Excel)",
                     "README": "unsupported file type (no suffix)"}


def test_text_files_through_read_file(tmp_path):
    """The title of a UTF-8 file with a BOM is its first heading (the BOM hid it); HTML in GBK."""
    (tmp_path / "bom.md").write_bytes(b"\xef\xbb\xbf" + SIMPLIFIED.encode())
    (tmp_path / "old.html").write_bytes(
        "<html><head><meta charset=gb2312><title>熊猫</title></head><body><h1>大熊猫</h1><p>主要吃竹子。</p></body></html>"
        .encode("gbk"))
    (docs,), enc = read_file(tmp_path, tmp_path / "bom.md", (tmp_path / "bom.md").read_bytes(), "s")
    assert (docs.title, docs.body, enc) == ("大熊猫", SIMPLIFIED, "utf-8")
    (docs,), enc = read_file(tmp_path, tmp_path / "old.html", (tmp_path / "old.html").read_bytes(), "s")
    assert (docs.title, docs.body, enc) == ("熊猫", "# 大熊猫\n\n主要吃竹子。", "gb18030")


# -- through ingest, into the database ---------------------------------------------------------
def test_ingest_a_folder_of_files_people_have(installed, conn, tmp_path):
    from pgmind.db import connect
    files = {
        "gbk.txt": SIMPLIFIED.encode("gbk"), "big5.md": TRADITIONAL.encode("big5"),
        "gb18030.txt": BEYOND_GBK.encode("gb18030"),
        "utf16.txt": b"\xff\xfe" + "UTF-16 文本\n".encode("utf-16-le"),
        "handbook.docx": make_docx(), "水果.csv": CSV.encode("gbk"),
        "blob.txt": bytes(range(256)) * 4, "broken.docx": b"PK\x03\x04 cut short",
        "empty.txt": b"", "pic.png": b"\x89PNG\r\n\x1a\n", "old.doc": b"\xd0\xcf\x11\xe0",
    }
    for name, raw in files.items():
        (tmp_path / name).write_bytes(raw)
    try:
        with connect(installed) as c:
            r = ingest(c, tmp_path, "filekb")
        assert (r.files, r.changed, r.unchanged, r.removed) == (11, 6, 0, 0)
        assert dict(r.skipped) == {"empty.txt": "an empty file", "pic.png": "unsupported file type .png",
                                   "old.doc": "unsupported file type .doc; save it as .docx"}
        failed = dict(r.failed)
        assert set(failed) == {"blob.txt", "broken.docx"}
        assert failed["blob.txt"].startswith("not text") and "not a readable .docx" in failed["broken.docx"]
        assert r.encodings == {"gbk.txt": "gb18030", "big5.md": "big5", "gb18030.txt": "gb18030",
                               "utf16.txt": "utf-16-le", "水果.csv": "gb18030", "empty.txt": "utf-8"}
        rows = dict(conn.execute("select path, body from filekb").fetchall())
        assert rows == {"gbk.txt": SIMPLIFIED, "big5.md": TRADITIONAL, "gb18030.txt": BEYOND_GBK,
                        "utf16.txt": "UTF-16 文本\n", "handbook.docx": DOCX_TEXT,
                        "水果.csv": "| 名称 | 价格 | 产地 |\n| --- | --- | --- |\n| 苹果 | 5 | 山东,烟台 |\n| 香蕉 | 3 | 海南 |"}
        assert conn.execute("select title from filekb where path = 'big5.md'").fetchone() == ("資料庫",)
        # one document a row: the file's row goes, its rows come; run again, nothing changes
        with connect(installed) as c:
            r = ingest(c, tmp_path, "filekb", rows=True)
        assert (r.changed, r.unchanged, r.removed) == (2, 5, 1)
        with connect(installed) as c:
            r = ingest(c, tmp_path, "filekb", rows=True)
        assert (r.changed, r.unchanged, r.removed) == (0, 7, 0)
        assert conn.execute("select body from filekb where path = '水果.csv#4'").fetchone() == ("名称: 香蕉\n价格: 3\n产地: 海南",)
    finally:
        with connect(installed, autocommit=True) as c:
            c.execute("select ai.drop_vectorizer('filekb')")
            c.execute("drop table filekb")


# -- what one document may cost to read (red-team M3) -------------------------------------------------
def test_a_pdf_over_its_page_or_ocr_budget_is_refused_not_read_in_part(monkeypatch):
    from PIL import Image
    from pypdf import PdfWriter

    import pgmind.documents as documents
    w = PdfWriter()
    for _ in range(3):
        w.add_blank_page(612, 792)
    buf = BytesIO()
    w.write(buf)
    monkeypatch.setattr(documents, "MAX_PDF_PAGES", 2)
    with pytest.raises(ValueError, match="has 3 pages; at most 2"):
        documents.pdf_to_text(buf.getvalue())
    # scanned pages: each costs an OCR pass, so only so many are read
    pages = [Image.new("RGB", (64, 64), "white") for _ in range(3)]
    scan = BytesIO()
    pages[0].save(scan, "PDF", save_all=True, append_images=pages[1:])
    ocr = []
    monkeypatch.setattr(documents, "_ocr_page", lambda page, done: ocr.append(1) or "")
    monkeypatch.setattr(documents, "MAX_PDF_PAGES", 100)
    monkeypatch.setattr(documents, "MAX_OCR_PAGES", 2)
    with pytest.raises(ValueError, match="more than 2 scanned pages"):
        documents.pdf_to_text(scan.getvalue())
    assert len(ocr) == 2


def test_an_office_file_that_unzips_past_the_budget_is_refused(monkeypatch):
    import zipfile

    import pgmind.documents as documents
    monkeypatch.setattr(documents, "MAX_UNZIPPED_BYTES", 1024 * 1024)
    bomb = BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("word/document.xml", b"\0" * (4 * 1024 * 1024))     # 4 MiB of zeros: a few KiB zipped
    assert len(bomb.getvalue()) < 64 * 1024
    with pytest.raises(ValueError, match="unzips to 4 MiB; at most 1 MiB"):
        docx_to_text(bomb.getvalue())
    with pytest.raises(ValueError, match="unzips to 4 MiB"):
        xlsx_sheets(bomb.getvalue())
    monkeypatch.setattr(documents, "MAX_ZIP_MEMBERS", 3)
    many = BytesIO()
    with zipfile.ZipFile(many, "w") as z:
        for i in range(5):
            z.writestr(f"x{i}", b"x")
    with pytest.raises(ValueError, match="has 5 parts; at most 3"):
        docx_to_text(many.getvalue())
    monkeypatch.setattr(documents, "MAX_ZIP_MEMBERS", 20_000)
    assert docx_to_text(make_docx()).text         # a real one is still read


def test_ocr_reads_so_many_images_in_all(monkeypatch):
    from PIL import Image

    import pgmind.documents as documents
    pages = [Image.new("RGB", (64, 64), "white") for _ in range(3)]
    scan = BytesIO()
    pages[0].save(scan, "PDF", save_all=True, append_images=pages[1:])
    import pgmind.images.ocr as ocr
    monkeypatch.setattr(ocr, "read_text", lambda data: {"text": ""})      # (the budget, not the engine)
    monkeypatch.setattr(documents, "MAX_OCR_IMAGES", 2)
    with pytest.raises(ValueError, match="more than 2 images to read by OCR"):
        documents.pdf_to_text(scan.getvalue())
