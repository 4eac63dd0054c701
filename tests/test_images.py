"""Images from SQL: the helpers (every format, resize, base64, info), every bad input, the load
allow-list (directories, symlinks, ../, http redirects), the local image model, a tiny CLIP
checkpoint, clip-as-service both ways, DashScope's multimodal API (stand-in), OCR on rendered
zh+en text, and PolarDB POLAR_AI's multimodal tutorial through the polar_ai aliases."""
from __future__ import annotations

import base64
import http.server
import io
import os
import threading

import httpx
import pytest

from conftest import sql_error
from images_fixture import moto_s3, picture, png_bomb, text_image, tiny_clip
from standins import StandIn


@pytest.fixture(scope="module")
def photos(tmp_path_factory, installed):
    """A directory the administrator allows, with pictures, a symlink out of it and a secret beside it."""
    root = tmp_path_factory.mktemp("imgs")
    allowed = root / "photos"
    allowed.mkdir()
    (root / "secret.txt").write_text("not for you")
    (allowed / "red.png").write_bytes(picture((220, 40, 40)))
    (allowed / "blue.jpg").write_bytes(picture((30, 60, 220), shape="square", fmt="JPEG"))
    (allowed / "empty.png").write_bytes(b"")
    os.symlink(root / "secret.txt", allowed / "link.txt")
    os.chmod(root, 0o755)
    from pgmind.db import connect
    with connect(installed, autocommit=True) as c:
        c.execute("select ai.allow_load_from(%s)", (str(allowed),))
    yield allowed
    with connect(installed, autocommit=True) as c:
        c.execute("select ai.disallow_load_from(%s)", (str(allowed),))


# -- helpers ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"])
def test_image_info_and_resize_in_every_format(conn, server, fmt):
    img = picture(size=(120, 80), fmt=fmt)
    info = conn.execute("select ai.image_info(%s)", (img,)).fetchone()[0]
    assert (info["format"], info["width"], info["height"]) == (fmt, 120, 80)
    small = conn.execute("select ai.image_info(ai.resize_image(%s, 60, 0))", (img,)).fetchone()[0]
    assert (small["width"], small["height"]) == (60, 40)          # 0 keeps the aspect ratio
    tall = conn.execute("select ai.image_info(ai.resize_image(%s, 0, 20))", (img,)).fetchone()[0]
    assert (tall["width"], tall["height"]) == (30, 20)


def test_base64_with_and_without_prefix(conn, server):
    img = picture(fmt="JPEG")
    plain, uri = conn.execute("select ai.image_as_base64(%s, false), ai.image_as_base64(%s, true)", (img, img)).fetchone()
    assert base64.b64decode(plain) == img
    assert uri == "data:image/jpeg;base64," + plain
    assert conn.execute("select ai.image_as_base64(%s)", (img,)).fetchone()[0] == plain


def test_null_gives_null(conn, server):
    row = conn.execute("""select ai.load_file(null), ai.resize_image(null, 1, 1), ai.image_as_base64(null),
                                 ai.image_info(null), ai.embed_image('image-features', null), ai.image_text(null)""").fetchone()
    assert row == (None,) * 6


@pytest.mark.parametrize("data, words", [
    (b"hello, not an image", "not an image"),
    (b"", "empty"),
    (picture(fmt="PNG")[:60], "broken"),
    (picture(fmt="JPEG")[:200], "broken"),
    (png_bomb(), "pixels"),
])
def test_bad_images_are_clean_errors(conn, server, data, words):
    for fn in ("ai.image_info(%s)", "ai.resize_image(%s, 10, 10)", "ai.embed_image('image-features', %s)"):
        e = sql_error(conn, f"select {fn}", (data,))
        assert e.sqlstate == "22023", (fn, e.sqlstate, e.diag.message_primary)
        assert words in e.diag.message_primary and e.diag.message_hint


@pytest.mark.parametrize("w, h", [(0, 0), (-1, 10), (10, 100_000)])
def test_bad_sizes(conn, server, w, h):
    e = sql_error(conn, "select ai.resize_image(%s, %s, %s)", (picture(), w, h))
    assert e.sqlstate == "22023" and e.diag.message_hint


# -- loading under the allow-list -------------------------------------------------------------------
def test_load_file_inside_the_allowed_directory(conn, server, photos):
    data = conn.execute("select ai.load_file(%s)", (str(photos / "red.png"),)).fetchone()[0]
    assert data == (photos / "red.png").read_bytes()
    uri = conn.execute("select ai.load_file(%s)", ("file://" + str(photos / "blue.jpg"),)).fetchone()[0]
    assert uri == (photos / "blue.jpg").read_bytes()
    rows = conn.execute("select prefix from ai.load_allow_list").fetchall()
    assert ("file://" + str(photos) + "/",) in rows


@pytest.mark.parametrize("where", ["/etc/passwd", "{d}/../secret.txt", "{d}/link.txt", "file:///etc/hostname",
                                   "{d}x/red.png", "relative/red.png", "ftp://example.com/x.png",
                                   "https://example.com/x.png", "s3://bucket/x.png"])
def test_load_outside_the_allow_list_is_refused(conn, server, photos, where):
    e = sql_error(conn, "select ai.load_file(%s)", (where.format(d=photos),))
    assert e.sqlstate in ("42501", "22023"), e.diag.message_primary
    if e.sqlstate == "42501":
        assert "ai.allow_load_from" in e.diag.message_hint
    assert "not for you" not in str(e)


def test_load_errors(conn, server, photos):
    assert "no file" in sql_error(conn, "select ai.load_file(%s)", (str(photos / "nope.png"),)).diag.message_primary
    assert "directory" in sql_error(conn, "select ai.load_file(%s)", (str(photos) + "/",)).diag.message_primary
    e = sql_error(conn, "select ai.image_info(ai.load_file(%s))", (str(photos / "empty.png"),))
    assert e.sqlstate == "22023" and "empty" in e.diag.message_primary


def test_only_administrators_change_the_list(nobody, server, photos):
    for q in ("select ai.allow_load_from('/')", "select ai.disallow_load_from(%s)" % repr(str(photos))):
        assert sql_error(nobody, q).sqlstate == "42501"
    assert sql_error(nobody, "select * from ai.load_secrets").sqlstate == "42501"


@pytest.mark.parametrize("prefix", ["", "relative/dir", "ftp://host/", "/data/../etc", "https://user:pw@host/"])
def test_bad_prefixes(conn, installed, prefix):
    assert sql_error(conn, "select ai.allow_load_from(%s)", (prefix,)).sqlstate == "22023"


@pytest.fixture(scope="module")
def web(installed):
    """An HTTP server with a picture, a redirect inside the allowed prefix and one out of it."""
    img = picture((10, 160, 60))

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            if self.path == "/pics/green.png":
                self.send_response(200)
                self.send_header("Content-Length", str(len(img)))
                self.end_headers()
                self.wfile.write(img)
            elif self.path.startswith("/pics/to-"):
                self.send_response(302)
                self.send_header("Location", "/pics/green.png" if self.path == "/pics/to-inside" else "/private/x.png")
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    from pgmind.db import connect
    with connect(installed, autocommit=True) as c:
        c.execute("select ai.allow_load_from(%s)", (base + "/pics",))
    yield base, img
    with connect(installed, autocommit=True) as c:
        c.execute("select ai.disallow_load_from(%s)", (base + "/pics/",))
    srv.shutdown()


def test_http_loading_and_redirects(conn, server, web):
    base, img = web
    assert conn.execute("select ai.load_file(%s)", (base + "/pics/green.png",)).fetchone()[0] == img
    assert conn.execute("select ai.load_file(%s)", (base + "/pics/to-inside",)).fetchone()[0] == img
    assert sql_error(conn, "select ai.load_file(%s)", (base + "/pics/to-outside",)).sqlstate == "42501"
    assert sql_error(conn, "select ai.load_file(%s)", (base + "/pics/../private/x.png",)).sqlstate == "42501"
    assert sql_error(conn, "select ai.load_file(%s)", (base + "/pics/missing.png",)).sqlstate == "22023"


# -- image models ------------------------------------------------------------------------------------
def test_local_image_features(conn, server):
    red, red_small, blue = picture((220, 40, 40)), picture((220, 40, 40), size=(60, 40)), picture((30, 60, 220), shape="square")
    dims, same, other = conn.execute("""
        select vector_dims(ai.embed_image('image-features', %(r)s)),
               1 - (ai.embed_image('image-features', %(r)s) <=> ai.embed_image('image-features', %(rs)s)),
               1 - (ai.embed_image('image-features', %(r)s) <=> ai.embed_image('image-features', %(b)s))""",
                                     {"r": red, "rs": red_small, "b": blue}).fetchone()
    assert dims == 1280 and same > other
    labels = conn.execute("select label, score from ai.image_labels('image-features', %s, 3)", (red,)).fetchall()
    assert len(labels) == 3 and all(0 <= s <= 1 for _, s in labels)
    e = sql_error(conn, "select ai.embed('image-features', 'a red ball')")
    assert e.sqlstate == "22023" and "text tower" in e.diag.message_primary
    assert sql_error(conn, "select ai.embed_image('e5-small', %s)", (red,)).sqlstate == "22023"


@pytest.fixture(scope="module")
def clip_model(installed, server, tmp_path_factory):
    path = tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")
    from pgmind.db import connect
    with connect(installed, autocommit=True) as c:
        c.execute("select ai.drop_model('clip-tiny', if_exists => true)")
        c.execute("""select ai.create_model('clip-tiny', null, 'pgmind', 'image_embedding', 'tiny-random-clip',
                                            options => %s::jsonb)""",
                  (f'{{"backend": "clip", "path": "{path}"}}',))
        c.execute("select ai.grant_model('clip-tiny', 'public')")
    yield "clip-tiny"
    with connect(installed, autocommit=True) as c:
        c.execute("select ai.drop_model('clip-tiny')")


def test_clip_checkpoint_text_and_image_towers(conn, clip_model):
    dims = conn.execute("select dimensions from ai.models where model_id = 'clip-tiny'").fetchone()[0]
    assert dims == 512
    t, i = conn.execute("select vector_dims(ai.embed('clip-tiny', 'black car in the night')), "
                        "vector_dims(ai.embed_image('clip-tiny', %s))", (picture(),)).fetchone()
    assert t == i == 512


def test_clip_as_service_protocol_served(server, token, clip_model):
    img = picture()
    body = {"data": [{"text": "a dog"}, {"blob": base64.b64encode(img).decode()}], "execEndpoint": "/",
            "parameters": {"model": "clip-tiny"}}
    r = httpx.post(server + "/post", json=body, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert [len(d["embedding"]) for d in data] == [512, 512] and data[0]["text"] == "a dog"
    # the default model (image-features) has no text tower: a clear 400, not a guess
    r = httpx.post(server + "/post", json={"data": [{"text": "x"}]}, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 400 and "text tower" in r.json()["error"]["message"]
    assert httpx.post(server + "/post", json=body).status_code == 401
    assert httpx.post(server + "/post", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401


@pytest.fixture(scope="module")
def standin():
    s = StandIn(dim=16)
    s.clip_scale = 3.0
    yield s
    s.close()


def test_remote_image_providers(conn, server, standin):
    """clip-as-service and DashScope multimodal as remote providers (stand-ins replaying their shapes)."""
    conn.execute("select ai.drop_model('cas', if_exists => true), ai.drop_model('ds-mm', if_exists => true)")
    conn.execute("""select ai.create_model('cas', %s, 'clip', 'image_embedding', 'ViT-B-32',
                                           '{"author_type": "token", "token": "t"}')""", (standin.url + "/post",))
    conn.execute("""select ai.create_model('ds-mm', %s, 'dashscope', 'image_embedding', 'multimodal-embedding-v1',
                                           '{"author_type": "token", "token": "sk-mm"}')""", (standin.url + "/api/v1",))
    try:
        for model in ("cas", "ds-mm"):
            norm_t, norm_i = conn.execute("select vector_norm(ai.embed(%s, 'white truck')), "
                                          "vector_norm(ai.embed_image(%s, %s))", (model, model, picture())).fetchone()
            assert abs(norm_t - 1) < 1e-5 and abs(norm_i - 1) < 1e-5      # normalised here
        sent = [r for r in standin.requests if "multimodal" in r["path"]][-1]
        assert sent["body"]["input"]["contents"][0]["image"].startswith("data:image/png;base64,")
        assert sent["headers"]["Authorization"] == "Bearer sk-mm"
    finally:
        conn.execute("select ai.drop_model('cas'), ai.drop_model('ds-mm')")


def test_ocr_reads_chinese_and_english(conn, server):
    img = text_image(["欢迎光临 北京饭店", "Exit 3 Subway Station"])
    text = conn.execute("select ai.image_text(%s)", (img,)).fetchone()[0]
    assert "北京饭店" in text.replace(" ", "") and "Subway" in text


# -- PolarDB POLAR_AI's multimodal tutorial, with only its URL, paths and token changed ------------------
TUTORIAL = """
CREATE OR REPLACE FUNCTION clip_text_embedding_in(model text, setence text) RETURNS jsonb LANGUAGE plpgsql AS $f$
BEGIN RETURN ('{"data": [{"text": "' || setence || '"}]}')::jsonb; END; $f$;
CREATE OR REPLACE FUNCTION clip_image_embedding_in(model text, image_path text) RETURNS jsonb LANGUAGE plpgsql AS $f$
DECLARE url text;
BEGIN url = '@PHOTOS@/' || $2;
  RETURN ('{"data": [{"blob": "' || ai_imageasbase64(ai_resizeimage(ai_loadfile(url), 336, 336), false) || '"}]}')::jsonb;
END; $f$;
CREATE OR REPLACE FUNCTION clip_embedding_out(model_id text, response_json jsonb) RETURNS jsonb AS
$f$ select (((((response_json)->>'data')::jsonb->0)::jsonb)->>'embedding')::jsonb as result $f$ LANGUAGE sql IMMUTABLE;
SELECT polar_ai.ai_createmodel('embedding/clip_text', '@URL@', 'other', 'embedding', 'clip',
       '{"author_type": "token", "token": "@TOKEN@"}', NULL, 'clip_text_embedding_in'::regproc, 'clip_embedding_out'::regproc);
SELECT polar_ai.ai_createmodel('embedding/clip_image', '@URL@', 'other', 'embedding', 'clip',
       '{"author_type": "token", "token": "@TOKEN@"}', NULL, 'clip_image_embedding_in'::regproc, 'clip_embedding_out'::regproc);
CREATE OR REPLACE FUNCTION clip_text_embedding(text text) RETURNS float4[] AS
$f$ select array(select json_array_elements_text(polar_ai.AI_CALLMODEL('embedding/clip_text',$1)::json))::float4[] $f$ LANGUAGE sql IMMUTABLE;
CREATE OR REPLACE FUNCTION clip_image_embedding(text text) RETURNS float4[] AS
$f$ select array(select json_array_elements_text(polar_ai.AI_CALLMODEL('embedding/clip_image',$1)::json))::float4[] $f$ LANGUAGE sql IMMUTABLE;
CREATE TABLE images(id serial, url text, embedding vector(512));
INSERT INTO images(url) VALUES ('red.png'), ('blue.jpg');
UPDATE images SET embedding = clip_image_embedding(url)::vector(512);
CREATE INDEX ON images USING hnsw (embedding vector_l2_ops);
"""


def test_polar_ai_multimodal_tutorial(conn, installed, server, token, photos, clip_model):
    conn.execute("drop table if exists images")
    for m in ("embedding/clip_text", "embedding/clip_image"):
        conn.execute("select ai.drop_model(%s, if_exists => true)", (m,))
    sql = (TUTORIAL.replace("@PHOTOS@", "file://" + str(photos)).replace("@URL@", server + "/post?model=clip-tiny")
           .replace("@TOKEN@", token))
    try:
        # run as a user would, in psql (each statement its own transaction: the model server reads a
        # registration once it is committed)
        import subprocess
        done = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", installed, "-f", "-"], input=sql,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        text_hits = conn.execute("""SELECT id, url FROM images WHERE id > 0
            ORDER BY embedding <-> clip_text_embedding('black car in the night')::vector(512) LIMIT 10""").fetchall()
        assert len(text_hits) == 2
        image_hits = conn.execute("""SELECT id, url FROM images ORDER BY embedding <->
            (SELECT clip_image_embedding(url)::vector(512) FROM images WHERE id = 1) LIMIT 10""").fetchall()
        assert image_hits[0] == (1, "red.png")
    finally:
        conn.execute("drop table if exists images")
        for m in ("embedding/clip_text", "embedding/clip_image"):
            conn.execute("select ai.drop_model(%s, if_exists => true)", (m,))


# -- image vectorizers and ai.search_images ---------------------------------------------------------
def _worker(settings, installed, name):
    from pgmind.vectorizer.worker import Worker
    return Worker(settings, installed, names=[name], poll_interval=0.1)


@pytest.fixture
def pics(conn, server, photos):
    (photos / "sign.png").write_bytes(text_image(["欢迎光临 北京饭店", "Exit 3 Subway Station"]))
    (photos / "broken.jpg").write_bytes(picture(fmt="JPEG")[:300])
    conn.execute("drop table if exists pics cascade")
    conn.execute("create table pics (id int primary key, path text, kind text)")
    conn.execute("insert into pics values (1, %s, 'a'), (2, %s, 'b'), (3, %s, 'a'), (4, %s, 'a'), (5, '/etc/passwd', 'a')",
                 (str(photos / "red.png"), str(photos / "blue.jpg"), str(photos / "sign.png"), str(photos / "broken.jpg")))
    yield "pics"
    conn.execute("select ai.drop_vectorizer('pics')") if conn.execute(
        "select 1 from ai.vectorizer_status where name = 'pics'").fetchone() else None
    conn.execute("drop table if exists pics cascade")


def test_image_vectorizer_and_search_both_ways(conn, settings, installed, pics, photos):
    conn.execute("select ai.create_vectorizer('pics'::regclass, name => 'pics', content => 'path', modality => 'image', ocr => true)")
    w = _worker(settings, installed, "pics")
    w.drain()
    keys = {r[0]["id"] for r in conn.execute("select distinct key from ai.search_images('pics', %s, k => 10)",
                                            (picture(),)).fetchall()}
    assert keys == {1, 2, 3}
    errors = dict(conn.execute("select key->>'id', sqlstate from ai.vectorizer_errors where vectorizer = 'pics'").fetchall())
    assert errors == {"4": "22023", "5": "42501"}          # the broken image, the refused path: poison rows
    # image → image: the same picture, smaller, finds its row first
    first = conn.execute("select key->>'id' from ai.search_images('pics', %s, k => 1)",
                         (picture(size=(60, 40)),)).fetchone()[0]
    assert first == "1"
    # a selective filter still gives k rows (iterative index scan)
    hits = conn.execute("select key->>'id' from ai.search_images('pics', %s, k => 1, filter => 'kind = ''b''')",
                        (picture(),)).fetchall()
    assert hits == [("2",)]
    # words: the text in the image (OCR), in English and Chinese
    for q in ("subway station", "北京饭店"):
        top = conn.execute("select key->>'id', chunk from ai.search_images('pics', %s, k => 3)", (q,)).fetchall()
        assert top and top[0][0] == "3", (q, top)
    # update and delete propagate
    conn.execute("update pics set path = %s where id = 2", (str(photos / "red.png"),))
    conn.execute("delete from pics where id = 3")
    w.drain()
    keys = [r[0] for r in conn.execute("select key->>'id' from ai.search_images('pics', %s, k => 10)",
                                       (picture((220, 40, 40)),)).fetchall()]
    assert sorted(keys[:2]) == ["1", "2"] and "3" not in keys
    e = sql_error(conn, "select * from ai.search_images('pics', 'red', mode => 'vector')")
    assert e.sqlstate == "22023" and "text tower" in e.diag.message_primary
    assert sql_error(conn, "select * from ai.search('pics', 'red')").sqlstate == "22023"


def test_ingest_images_adds_to_the_load_allow_list_only_when_asked(conn, installed, tmp_path):
    """Issue 38: `pgmind ingest-images` added the folder to ai.load_file's allow-list on its own; now it
    refuses (saying how) unless asked (--allow-load), and --bytes needs no allow-list at all."""
    from pgmind.errors import PermissionDeniedError
    from pgmind.images.collection import ingest_images
    folder = tmp_path / "new-photos"
    folder.mkdir()
    (folder / "red.png").write_bytes(picture((220, 40, 40)))
    on_list = "select count(*) from ai.load_allow_list where prefix like %s"
    try:
        with pytest.raises(PermissionDeniedError) as info:
            ingest_images(conn, folder, "new_photos")
        assert "--allow-load" in info.value.hint and "--bytes" in info.value.hint
        assert conn.execute(on_list, (f"%{folder}%",)).fetchone()[0] == 0
        assert conn.execute("select to_regclass('new_photos')").fetchone()[0] is None      # nothing made
        result = ingest_images(conn, folder, "new_photos", allow_load=True)
        assert result.allowed == str(folder) and result.changed == 1
        assert conn.execute(on_list, (f"%{folder}%",)).fetchone()[0] == 1
        assert ingest_images(conn, folder, "new_photos").allowed is None                 # on the list already
        assert ingest_images(conn, folder, "new_photos_bytes", store_bytes=True).changed == 1
    finally:
        for name in ("new_photos", "new_photos_bytes"):
            if conn.execute("select 1 from ai.vectorizer_status where name = %s", (name,)).fetchone():
                conn.execute("select ai.drop_vectorizer(%s)", (name,))
            conn.execute(f"drop table if exists {name}")
        conn.execute("select ai.disallow_load_from(%s)", (str(folder),))


def test_bytea_image_vectorizer_with_clip(conn, settings, installed, clip_model):
    conn.execute("drop table if exists shots cascade")
    conn.execute("create table shots (id int primary key, img bytea)")
    conn.execute("insert into shots values (1, %s), (2, %s), (3, %s)",
                 (picture((220, 40, 40)), picture((30, 60, 220), shape="square"), b"not an image"))
    try:
        conn.execute("select ai.create_vectorizer('shots'::regclass, name => 'shots', content => 'img', model => 'clip-tiny')")
        e = sql_error(conn, "select ai.alter_vectorizer('shots', model => 'e5-small')")
        assert e.sqlstate == "22023"
        _worker(settings, installed, "shots").drain()
        rows = conn.execute("select key->>'id', similarity from ai.search_images('shots', 'black car in the night', k => 5)").fetchall()
        assert {r[0] for r in rows} == {"1", "2"} and all(r[1] is not None for r in rows)   # the text tower
        assert conn.execute("select count(*) from ai.vectorizer_errors where vectorizer = 'shots'").fetchone()[0] == 1
    finally:
        conn.execute("select ai.drop_vectorizer('shots')")
        conn.execute("drop table shots cascade")


def test_image_vectorizer_needs_an_image_model(conn, server):
    conn.execute("drop table if exists t_img cascade")
    conn.execute("create table t_img (id int primary key, path text)")
    try:
        e = sql_error(conn, "select ai.create_vectorizer('t_img'::regclass, content => 'path', modality => 'image', model => 'e5-small')")
        assert e.sqlstate == "22023" and "image model" in e.diag.message_hint
        e = sql_error(conn, "select ai.create_vectorizer('t_img'::regclass, modality => 'image')")
        assert e.sqlstate == "22023" and "content is required" in e.diag.message_primary
    finally:
        conn.execute("drop table t_img cascade")


@pytest.fixture(scope="module")
def s3(installed):
    """moto's S3 server: a local stand-in for an S3-compatible store (Alibaba OSS speaks the same protocol)."""
    url, srv = moto_s3("shop", {"photos/red.png": picture(), "private/x.png": picture()}, "AKIDTEST", "secret-test")
    yield url
    srv.stop()


def test_s3_loading(conn, server, s3, nobody):
    conn.execute("select ai.allow_load_from('s3://shop/photos', %s::jsonb, %s::jsonb)",
                 ('{"endpoint_url": "%s"}' % s3, '{"access_key_id": "AKIDTEST", "secret_access_key": "secret-test"}'))
    try:
        assert conn.execute("select ai.load_file('s3://shop/photos/red.png')").fetchone()[0] == picture()
        assert sql_error(conn, "select ai.load_file('s3://shop/private/x.png')").sqlstate == "42501"
        assert sql_error(conn, "select ai.load_file('s3://shop/photos/nope.png')").sqlstate == "22023"
        listed = conn.execute("select prefix, credentials from ai.load_allow_list where prefix like 's3:%'").fetchall()
        assert listed == [("s3://shop/photos/", "token")]
        # the secret is nowhere a role granted nothing can read
        assert "secret-test" not in str(nobody.execute("select * from ai.load_allow_list").fetchall())
    finally:
        conn.execute("select ai.disallow_load_from('s3://shop/photos/')")


def test_scanned_pdf_pages_are_read_by_ocr():
    """A PDF page without a text layer (a scan) gets its text from OCR when ingested."""
    from PIL import Image
    from pgmind.documents import pdf_to_text
    scan = Image.open(io.BytesIO(text_image(["第三章 备份与恢复", "Chapter 3 Backup and Restore"])))
    out = io.BytesIO()
    scan.convert("RGB").save(out, "PDF", resolution=100)
    doc = pdf_to_text(out.getvalue())
    assert "备份与恢复" in doc.text.replace(" ", "") and "Backup" in doc.text


def test_a_bytea_column_with_a_text_model_is_refused(conn, server):
    conn.execute("drop table if exists t_bytes cascade")
    conn.execute("create table t_bytes (id int primary key, img bytea)")
    try:
        e = sql_error(conn, "select ai.create_vectorizer('t_bytes'::regclass, content => 'img')")
        assert e.sqlstate == "22023" and "modality" in e.diag.message_hint
    finally:
        conn.execute("drop table t_bytes cascade")


def test_a_role_granted_nothing_cannot_search_anothers_pictures(owner, nobody, server):
    owner.execute("create table sec_app.pics (id int primary key, img bytea)")
    owner.execute("select ai.create_vectorizer('sec_app.pics'::regclass, name => 'sec_pics', content => 'img', "
                  "modality => 'image')")
    try:
        for q in ("select * from ai.search_images('sec_pics', 'a dog')",
                  "select * from ai.search_images('sec_pics', %s::bytea)"):
            e = sql_error(nobody, q, (picture(),) if "%s" in q else None)
            assert e.sqlstate == "42501", (q, e.sqlstate, e)
    finally:
        owner.execute("select ai.drop_vectorizer('sec_pics')")
        owner.execute("drop table sec_app.pics")
