#!/usr/bin/env bash
# The main job, from a fresh machine (`make demo` has run scripts/setup.sh first): a private
# knowledge base in PostgreSQL that answers questions in Chinese and English with its sources.
#   1. start the embedded PostgreSQL and install the ai schema
#   2. start the model server (local models; nothing leaves the machine)
#   3. ingest the PostgreSQL 15 manual (Debian postgresql-doc-15) into pg_docs and embed it
#   4. ask four questions: English, Chinese, and two the manual cannot answer (one off-topic, one about
#      another database: the topic check declines it before searching)
#   5. a small photo collection: find pictures by words (English, Chinese) and by a picture
set -euo pipefail
cd "$(dirname "$0")/.."
PGMIND=.venv/bin/pgmind
MANUAL=/usr/share/doc/postgresql-doc-15/html
say() { printf '\n\033[1;36m== %s\033[0m\n' "$*"; }

say "PostgreSQL 15 + pgvector + plpython3u under .pgmind/"
$PGMIND db up
$PGMIND install

say "the model server on 127.0.0.1 (log: .pgmind/server.log)"
started=""
if ! $PGMIND status >/dev/null 2>&1; then
    $PGMIND serve --no-worker > .pgmind/server.log 2>&1 &
    started=$!
    trap '[ -n "$started" ] && kill "$started" 2>/dev/null || true' EXIT
    for _ in $(seq 1 120); do $PGMIND status >/dev/null 2>&1 && break; sleep 0.5; done
fi
$PGMIND status

say "ingest the PostgreSQL 15 manual ($(ls $MANUAL/*.html | wc -l) pages) into pg_docs"
# use-m3: multilingual (a Chinese question finds English pages) and the fastest local model here
$PGMIND ingest "$MANUAL" --into pg_docs --model use-m3 --topic PostgreSQL

say "search: by meaning and by words at once (hybrid)"
$PGMIND search "vacuum full locks" --in pg_docs -k 3
# a Chinese question on the English manual names nothing the manual says: the chat model first
# writes what it knows ("pg_table_size, pg_total_relation_size"), searched beside the question
say "search a Chinese question on the English manual, with query expansion"
$PGMIND search "怎样查看表的大小" --in pg_docs -k 3 --expand

for q in "How do I create an index without locking the table?" \
         "如何在不锁表的情况下创建索引?" \
         "Who won the 2018 FIFA World Cup?" \
         "What is the default port of MySQL?"; do
    say "ask: $q"
    $PGMIND ask "$q" --in pg_docs
done

say "pictures: Debian darknet's sample photos and scikit-learn's two, with the text in them read (OCR)"
PHOTOS=.pgmind/demo-photos
mkdir -p "$PHOTOS"
cp /usr/share/darknet/data/{dog,eagle,giraffe,horses,person,kite,scream}.jpg "$PHOTOS"/
cp "$(.venv/bin/python -c 'import sklearn, os; print(os.path.dirname(sklearn.__file__))')"/datasets/images/{china,flower}.jpg "$PHOTOS"/
$PGMIND ingest-images "$PHOTOS" --into photos --ocr --allow-load
say "text → image (ImageNet labels and file names; no CLIP weights ship offline)"
$PGMIND search-images "an eagle" --in photos -k 3
$PGMIND search-images "一只狗" --in photos -k 3
say "image → image (and a contact sheet of the hits: .pgmind/photo-hits.png)"
$PGMIND search-images "$PHOTOS/horses.jpg" --in photos -k 3 --open .pgmind/photo-hits.png
$PGMIND db psql -X -c "select key->>'path' as path, round(similarity::numeric, 3) as similarity
                       from ai.search_images('photos', ai.load_file('$(realpath "$PHOTOS")/dog.jpg'), k => 3)"

say "the same from SQL"
$PGMIND db psql -X -v ON_ERROR_STOP=1 -c "select jsonb_pretty(ai.rag('pg_docs', 'json 和 jsonb 类型有什么区别?') - 'usage')"
$PGMIND db psql -X -c "select name, pending, done, errors, rows_per_second from ai.vectorizer_status"

say "the web console: see, manage and question these knowledge bases in a browser"
# console_demo: a login-less role for the console's key, an administrator of pgmind (it sees every
# knowledge base's status and may retry / pause them) that may read the demo's tables; never a superuser
$PGMIND db psql -X -q -v ON_ERROR_STOP=1 <<'SQL'
do $$
declare r record;
begin
    if not exists (select 1 from pg_roles where rolname = 'console_demo') then
        create role console_demo;
    end if;
    grant pgmind_admin to console_demo;
    for r in select v.source, v.dest_schema, ver.store_table,
                    (select c.relnamespace::regnamespace::name from pg_class c where c.oid = v.source) as src_schema
             from ai.vectorizers v join ai.vectorizer_versions ver on ver.vectorizer_id = v.id loop
        execute format('grant usage on schema %I, %I to console_demo', r.src_schema, r.dest_schema);
        execute format('grant select on %s, %I.%I to console_demo', r.source, r.dest_schema, r.store_table);
    end loop;
end $$;
SQL
KEY=$($PGMIND db psql -X -q -t -A -v ON_ERROR_STOP=1 -c "select ai.create_api_key('console_demo', 'make demo')")
URL=$(.venv/bin/python -c "from pgmind.config import load_settings; print(load_settings().effective_server_url)")
if [ -n "$started" ]; then
    trap - EXIT      # the console needs the model server: it keeps running
    echo "the model server keeps running (pid $started; stop it with: kill $started)"
fi
printf '\n\033[1;32mconsole: %s/console\nsign in with the API key: %s\033[0m\n' "$URL" "$KEY"
