"""The console's upload names (console/pages/create.py _safe_name): no folders, not hidden, no control
characters, and under the 255-byte file-name limit in any script (120 Chinese characters are 360 bytes)."""
from pgmind.console.pages.create import _safe_name


def test_upload_names_are_safe_and_fit_a_file_name():
    long_zh = _safe_name("中" * 200 + ".pdf", 1)
    assert len(long_zh.encode()) <= 240 and long_zh.endswith("中.pdf")
    assert _safe_name("../../etc/passwd", 2) == "passwd"
    assert _safe_name("..\\..\\x.txt", 3) == "x.txt"
    assert _safe_name(" .. . .hidden ", 4) == "hidden"
    assert _safe_name("a\x00b\nc.md", 5) == "abc.md"
    for empty in ("", None, "..", " . ", "/"):
        assert _safe_name(empty, 6) == "file-6"
