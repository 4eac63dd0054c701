#!/usr/bin/env bash
# The main job, from a fresh machine: set up (done by `make demo` before this), start the embedded
# PostgreSQL and the model server, and show SQL calling local models.
set -euo pipefail
cd "$(dirname "$0")/.."
PGMIND=.venv/bin/pgmind
say() { printf '\n\033[1;36m== %s\033[0m\n' "$*"; }

say "PostgreSQL 15 + pgvector + plpython3u under .pgmind/"
$PGMIND db up
$PGMIND install

say "the model server on 127.0.0.1"
started=""
if ! $PGMIND status >/dev/null 2>&1; then
    $PGMIND serve > .pgmind/server.log 2>&1 &
    started=$!
    trap '[ -n "$started" ] && kill "$started" 2>/dev/null || true' EXIT
    for _ in $(seq 1 120); do $PGMIND status >/dev/null 2>&1 && break; sleep 0.5; done
fi
$PGMIND status

say "SQL that calls models"
$PGMIND db psql -v ON_ERROR_STOP=1 -X -e <<'SQL'
select * from ai.models;
select vector_dims(ai.embed('e5-small', '熊猫吃什么?')) as dims;
select idx, vector_dims(embedding) from ai.embed('e5-small', array['甲', '乙']);
-- a Chinese question finds the English sentence that answers it
with q as (select ai.embed('e5-small', '熊猫吃什么?') as v)
select t, round((1 - (ai.embed('e5-small', t, 'document') <=> q.v))::numeric, 3) as similarity
from q, unnest(array['Giant pandas eat bamboo.', 'PostgreSQL supports JSON.', 'The sky is blue.']) t
order by similarity desc;
select ai.generate('qwen-0.5b', '用一句话介绍PostgreSQL', options => '{"max_tokens": 80}');
select ai.chat('qwen-0.5b', '[{"role":"user","content":"Write a SQL query that counts the rows of table t."}]'::jsonb,
               '{"max_tokens": 80}') -> 'message' ->> 'content' as answer;
select model_id, operation, client, latency_ms::int, input_tokens, output_tokens, status
from ai.call_log order by id desc limit 5;
SQL
