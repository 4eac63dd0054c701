-- Search and RAG over a vectorizer's chunks (PL/pgSQL).  ai.search needs ai.embed for the vector
-- side (plpython3u); keyword search alone works anywhere.  Runs with the caller's rights: the
-- caller must be able to read the chunks (and the source table when filtering).

-- The active version's table and model, for a caller that may read its chunks (``caller`` is the
-- role the session acts as: the public functions pass current_user).  The chunk table must still be
-- the plain table pgmind made: a view, rules or row security put there by its owner would run the
-- owner's code in the searcher's session.  (When the OUT columns change, drop it here first.)
select ai_internal._drop_if_result_differs('ai_internal._search_target(text, name)', 'record');
create or replace function ai_internal._search_target(p_name text, caller name,
    out vid int, out store text, out source regclass, out model text, out key_json text, out key_cols text,
    out config jsonb, out model_threshold float8, out source_key_cols text)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
begin
    perform ai_internal._check_caller(caller);
    vid := ai_internal._vectorizer_id(p_name);
    select format('%I.%I', v.dest_schema, ver.store_table), v.source, ver.model, ai_internal._key_json(v.id, 'c'),
           ai_internal._key_cols(v.id, 'c'), v.config,
           (select (r.options->>'rag_threshold')::float8 from ai.model_registry r where r.model_id = ver.model),
           ai_internal._key_cols(v.id, 's')
      into store, source, model, key_json, key_cols, config, model_threshold, source_key_cols
    from ai.vectorizers v join ai.vectorizer_versions ver on ver.vectorizer_id = v.id and ver.status = 'active'
    where v.id = vid;
    if not ai_internal._store_is_plain(to_regclass(store)) then
        raise exception 'the chunk table % of vectorizer "%" is not the plain table pgmind made', store, p_name
            using errcode = '55000',
                  hint = 'remove row security, rules or column types of your own from it, or re-create the vectorizer';
    end if;
    if not has_table_privilege(caller, store, 'select') then
        raise exception 'permission denied for knowledge base "%"', p_name
            using errcode = '42501',
                  hint = format('its owner can run: grant select on %s to %I (and on the source table, for filters)',
                                store, caller);
    end if;
    -- (row security on the source is carried to the chunks by reading the source as the caller)
    if (select c.relrowsecurity from pg_class c where c.oid = source)
       and not has_table_privilege(caller, source, 'select') then
        raise exception 'knowledge base "%" keeps the row security of %, which % cannot read', p_name, source, caller
            using errcode = '42501',
                  hint = format('its owner can run: grant select on %s to %I (its policies then decide which rows'' chunks are found)',
                                source, caller);
    end if;
end $$;

-- The words of a text as the chunks' fts column stems them (300_vectorizers.sql), once each.  The
-- stored generated column cannot call this without rebuilding every store, so the two expressions
-- are twins: tests/test_search_rag.py runs the column's own expression against this one.
create or replace function ai_internal._fts_words(t text) returns text[]
language sql immutable strict parallel safe set search_path = pg_catalog, pg_temp as $$
    select tsvector_to_array(to_tsvector('english'::regconfig, ai.fts_text(t)))
$$;

-- The words of a question as an OR query (a question is not a conjunction of its words; ranking
-- sorts out which documents have more of them).
create or replace function ai.keyword_query(query text) returns tsquery
language sql immutable strict parallel safe set search_path = pg_catalog, pg_temp as $$
    select to_tsquery('simple', string_agg(quote_literal(w), ' | ')) from unnest(ai_internal._fts_words(query)) w
$$;

-- All the words of a text as an AND query (null for none).
create or replace function ai_internal._all_words(t text) returns tsquery
language sql immutable strict parallel safe set search_path = pg_catalog, pg_temp as $$
    select to_tsquery('simple', string_agg(quote_literal(w), ' & ')) from unnest(ai_internal._fts_words(t)) w
$$;

-- A prompt template with its {placeholders} filled from vals (a JSON object of texts), in one pass:
-- a question or a source that itself contains "{sources}" or "{topic}" is not filled again.  A
-- placeholder vals does not name stays as written.
create or replace function ai_internal._fill(template text, vals jsonb) returns text
language sql immutable set search_path = pg_catalog, pg_temp as $$
    select coalesce(string_agg(case when m[2] is not null and vals ? m[2] then coalesce(vals->>m[2], '') else m[1] end,
                               '' order by i), '')
    from regexp_matches(template, '(\{([a-z_]+)\}|[^{]+|\{)', 'g') with ordinality x(m, i)
$$;

-- The language of a text, as the knowledge-base settings name it: 'zh' when it has Chinese characters.
create or replace function ai_internal._text_language(t text) returns text
language sql immutable strict as $$ select case when t ~ '[\u4e00-\u9fff]' then 'zh' else 'en' end $$;

-- A question in the knowledge base's language: the question itself, or, when the knowledge base
-- has a language ("language", set by ingest) and a translation model ("translate_model", null to
-- turn translation off) and the question is in the other language, its translation by that model.
-- ai.search embeds the translation and adds its words to the keyword query.  Each translation is
-- a logged model call.
create or replace function ai.translate_query(name text, question text) returns text
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
begin
    if name is null or question is null then
        return question;
    end if;
    return ai_internal._translate(ai_internal._kb_settings((ai_internal._search_target(name, current_user)).config), question);
end $$;

-- ai.translate_query for settings already read (ai.search has them at hand).
create or replace function ai_internal._translate(settings jsonb, question text) returns text
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    target text := settings->>'language';
    reply text;
begin
    if question is null or target is null or settings->>'translate_model' is null
       or ai_internal._text_language(question) = target then
        return question;
    end if;
    if target not in ('en', 'zh') then
        raise exception 'cannot translate questions into "%"', target using errcode = '22023',
            hint = 'set the knowledge base''s language to en or zh, or turn translation off: ai.configure_rag(name, ''{"translate_model": null}'')';
    end if;
    reply := ai.generate(settings->>'translate_model',
                         ai_internal._fill(settings->>('translate_prompt_' || target), jsonb_build_object('question', question)),
                         options => '{"max_tokens": 64, "temperature": 0}');
    -- small models sometimes wrap the answer in quotes or add a line: keep the first line
    reply := btrim(split_part(btrim(coalesce(reply, '')), E'\n', 1), E' \t"\'“”「」');
    -- a reply not in the target language is no translation (the 0.5B model sometimes echoes words)
    if reply = '' or ai_internal._text_language(reply) <> target then
        return question;
    end if;
    return reply;
end $$;

-- Query expansion (HyDE): a short answer the chat model writes from what it already knows, in the
-- knowledge base's language, naming the terms the documents would use.  Searched beside the
-- question it finds pages that share none of the question's words ("kill a query that runs too
-- long" → pg_cancel_backend); a wrong detail in it costs little, since the question's own lists
-- are fused with its lists.  Measured in docs/benchmarks.md.  The topic (a knowledge-base setting,
-- else its name) tells the model what the documents are about.  null when turned off.
create or replace function ai_internal._expand(settings jsonb, name text, question text) returns text
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    lang text := coalesce(settings->>'language', ai_internal._text_language(question));
    reply text;
begin
    if question is null or settings->>'expand_model' is null then
        return null;
    end if;
    if lang not in ('en', 'zh') then
        lang := ai_internal._text_language(question);
    end if;
    -- expand_tokens, 64 by default: cut at 32 the pages rank as well (page MRR on dev + dev2 + dev3
    -- 0.792 against 0.787) and the expansion is written ~2 s sooner on 2 cores, but the prompt
    -- holds the key facts a little less often (112 against 114 of 144; docs/benchmarks.md, stop 33)
    reply := ai.generate(settings->>'expand_model',
                         ai_internal._fill(settings->>('expand_prompt_' || lang),
                                           jsonb_build_object('topic', coalesce(settings->>'topic', name), 'question', question)),
                         options => jsonb_build_object('max_tokens', (settings->>'expand_tokens')::numeric::int,
                                                       'temperature', 0));
    return nullif(btrim(coalesce(reply, '')), '');
end $$;

-- The names the expansion writes as code (`pg_cancel_backend`, `COMMENT ON`), in order, once each.
-- Code blocks (```…```) are left out: their table and column names are made up.
create or replace function ai_internal._expansion_name_list(expansion text) returns text[]
language sql immutable set search_path = pg_catalog, pg_temp as $$
    select array(select m.name
                   from (select x.m[1] as name, min(x.i) as i
                           from regexp_matches(regexp_replace(expansion, '```.*?(```|$)', ' ', 'g'), '`([^`\n]{1,60})`', 'g')
                                with ordinality x(m, i)
                          where btrim(x.m[1]) <> ''
                          group by x.m[1]) m
                  order by m.i)
$$;

-- What the expansion's keyword list searches: its names, else all its words.  Its other words
-- ("table", "column", "value", "example") match most pages and drowned the names: "多行合并成一行
-- 逗号隔开" → `STRING_AGG` named, and functions-aggregate.html not among the 40 best keyword hits.
-- Measured in docs/benchmarks.md (stop 23).
create or replace function ai_internal._expansion_names(expansion text) returns text
language sql immutable set search_path = pg_catalog, pg_temp as $$
    select coalesce(nullif(array_to_string(ai_internal._expansion_name_list(expansion), ' '), ''), expansion)
$$;

-- The headings the expansion's names may be (lower case): each name without its arguments
-- ("COALESCE(x, 0)" → "coalesce") and, of two or more words, also without its last one ("COMMENT ON"
-- → "comment").  ai.search ranks the pages with such a heading as one more list: a name the model
-- writes is often exactly the title of the page that documents it (`COMMENT ON`, `pg_indexes`,
-- `COALESCE`), a page the four ranked lists can leave out — first in the names' keyword list,
-- absent from the other three, it lost the fusion (docs/benchmarks.md, stop 27).  The first 16
-- names only (the model writes a handful in its 64 tokens): a caller's 10,000-character expansion
-- of names would otherwise cost a pattern scan for each.
create or replace function ai_internal._expansion_headings(expansion text) returns text[]
language sql immutable set search_path = pg_catalog, pg_temp as $$
    select array(select h.head
                   from (select c.head, min(n.i * 2 + c.j) as o
                           from unnest(ai_internal._expansion_name_list(expansion)) with ordinality n(name, i),
                                lateral (select lower(btrim(regexp_replace(n.name, '\(.*$', ''))) as base) b,
                                lateral (values (b.base, 0),
                                                (case when b.base ~ '\s' then btrim(regexp_replace(b.base, '\s+\S+$', '')) end, 1)) c(head, j)
                          where length(c.head) >= 2 and n.i <= 16
                          group by c.head) h
                  order by h.o)
$$;

-- Whether a question is about the knowledge base's topic at all: the chat model's log-odds of
-- "yes" against "no" as its first token (one token generated; 0.7-0.9 s with qwen-1.5b on 2 cores).
-- Similarity alone cannot decline "the default port of MySQL" or "Redis RDB vs AOF" on a
-- PostgreSQL manual: their best chunks are as close as a real question's (docs/benchmarks.md,
-- "Declines").  null when the knowledge base names no topic or turns the check off.
create or replace function ai_internal._topic_score(settings jsonb, question text) returns float8
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    reply jsonb;
    top jsonb;
    y float8;
    n float8;
    least_lp float8;
begin
    if question is null or settings->>'topic' is null or settings->>'topic_model' is null then
        return null;
    end if;
    reply := ai.chat(settings->>'topic_model',
                     jsonb_build_array(
                         jsonb_build_object('role', 'system', 'content', settings->>'topic_system'),
                         jsonb_build_object('role', 'user', 'content',
                             ai_internal._fill(settings->>'topic_prompt',
                                               jsonb_build_object('topic', settings->>'topic', 'question', question)))),
                     '{"max_tokens": 1, "temperature": 0, "logprobs": true, "top_logprobs": 10}');
    top := reply->'logprobs'->'content'->0->'top_logprobs';
    if jsonb_typeof(top) is distinct from 'array' or jsonb_array_length(top) = 0 then
        raise exception 'the topic model "%" returned no logprobs', settings->>'topic_model'
            using errcode = '22023',
                  hint = 'choose a topic_model that returns logprobs, or turn the check off: '
                         'ai.configure_rag(name, ''{"topic_model": null}'')';
    end if;
    select ln(sum(exp(greatest((e->>'logprob')::float8, -700))) filter (where lower(btrim(e->>'token')) = 'yes')),
           ln(sum(exp(greatest((e->>'logprob')::float8, -700))) filter (where lower(btrim(e->>'token')) = 'no')),
           min((e->>'logprob')::float8)
      into y, n, least_lp
      from jsonb_array_elements(top) e;
    -- a word missing from the list is no likelier than the least likely one in it
    return coalesce(y, least_lp) - coalesce(n, least_lp);
end $$;

-- ai_internal._topic_score for a knowledge base the caller may search (calibration, and to see why
-- RAG declined).
create or replace function ai.topic_score(name text, question text) returns float8
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
begin
    if name is null or question is null then
        return null;
    end if;
    return ai_internal._topic_score(ai_internal._kb_settings((ai_internal._search_target(name, current_user)).config),
                                    question);
end $$;

drop function if exists ai.search(text, text, int, text, text, int, float8, float8, int);
drop function if exists ai.search(text, text, int, text, text, int, float8, float8, int, text);
drop function if exists ai.search(text, text, int, text, text, int, float8, float8, int, text, text);
drop function if exists ai.search(text, text, int, text, text, int, float8, float8, int, text, text, text);
drop function if exists ai.search(text, text, int, text, text, int, float8, float8, int, text, text, text, boolean);
drop function if exists ai.search(text, text, int, text, text, int, float8, float8, int, text, text, text, boolean, int);
-- A question, keyword query or expansion of at most 10,000 characters: checked before any model
-- reads it (RAG's topic check and expansion run before its search).
create or replace function ai_internal._check_query_length(texts text[]) returns void
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
declare
    longest int := (select max(length(t)) from unnest(texts) t);
begin
    if longest > 10000 then
        raise exception 'the query has % characters; a search takes at most 10000', longest
            using errcode = '22023', hint = 'search with a question or a few sentences, not a document';
    end if;
end $$;

-- The arguments every search takes, checked once.
create or replace function ai_internal._check_search_args(mode text, k int) returns void
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
begin
    if mode is null or mode not in ('vector', 'keyword', 'hybrid') then
        raise exception 'unknown search mode "%"', mode
            using errcode = '22023', hint = 'mode is one of vector, keyword, hybrid';
    end if;
    if k is null or k < 1 or k > 1000 then
        raise exception 'k must be between 1 and 1000, got %', k using errcode = '22023', hint = 'e.g. k => 10';
    end if;
end $$;

drop function if exists ai_internal._search_run(text, text, text, regclass, text, text, text, tsquery, text, int, int,
                                                float8, float8, int, text);
drop function if exists ai_internal._search_run(text, text, text, regclass, text, text, text[], tsquery[], text, int, int,
                                                float8, float8, int, text);
drop function if exists ai_internal._search_run(text, text, text, regclass, text, text, text[], tsquery[], text, int, int,
                                                float8, float8, int, text, int);
-- A text as a regular expression that matches it literally.
create or replace function ai_internal._regex_quote(t text) returns text
language sql immutable strict parallel safe set search_path = pg_catalog, pg_temp as $$
    select regexp_replace(t, '([!$()*+.:<=>?\[\\\]^{|}-])', '\\\1', 'g')
$$;

-- The retrieval itself, for ai.search and ai.search_images: one ranked list per query vector (qvs,
-- in the HNSW index, iterative scans so a selective filter still gives k rows) and one per keyword
-- query (tqs), and one of the pages that have a heading named in heads (an expansion's names:
-- ai_internal._expansion_headings); a single list is returned as it ranks, several are fused by
-- reciprocal rank.
-- similarity is to qvs[1], the question itself, or with its expansion in qvs[2] the mean of
-- both (RAG thresholds on it).  Runs with the
-- caller's rights (the filter is the caller's SQL).
create or replace function ai_internal._search_run(
    store text, key_json text, key_cols text, source regclass, source_key_cols text, filter text,
    qvs text[], tqs tsquery[], mode text, n int, k int, vector_weight float8, keyword_weight float8, rrf_k int, fusion text,
    per_source int default null, heads text[] default null)
returns table (key jsonb, chunk_seq int, chunk text, score float8, similarity float8,
               vector_rank int, keyword_rank int)
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    where_filter text := '';
    vector_sql text;
    keyword_sql text;
    heading_sql text;
    sim_sql text;
    lists int;
begin
    if mode = 'keyword' then
        qvs := null;       -- (keyword search alone needs no embedding: similarity is then null)
    end if;
    tqs := case when mode = 'vector' then null
                else array(select t from unnest(tqs) t where numnode(t) > 0) end;
    qvs := array(select v from unnest(qvs) v where v is not null);
    heads := case when mode = 'vector' then '{}' else coalesce(heads, '{}') end;
    lists := case when mode = 'keyword' then 0 else cardinality(qvs) end + coalesce(cardinality(tqs), 0)
             + case when cardinality(heads) > 0 then 1 else 0 end;
    if lists = 0 then
        return;
    end if;
    -- Row-level security on the source reaches the chunks: with a policy there, only chunks of rows the
    -- caller's own select on the source returns are found (every path goes through here: ai.search,
    -- RAG, images; HTTP search refuses such sources, since their policies are the owner's code)
    if filter is null and (select c.relrowsecurity from pg_class c where c.oid = _search_run.source) then
        filter := 'true';
    end if;
    if filter is not null then
        -- a SQL condition on the source table's columns, written by the caller and run with their rights
        where_filter := format(' and (%s) in (select %s from %s s where %s)',
                               _search_run.key_cols, _search_run.source_key_cols, _search_run.source, filter);
    end if;
    -- pgvector 0.8: keep scanning the HNSW index until k rows pass the filter
    perform set_config('hnsw.iterative_scan', 'relaxed_order', true);
    perform set_config('hnsw.ef_search', greatest(40, least(n, 1000))::text, true);
    -- similarity: to the question (qvs[1]); with an expansion (qvs[2]), the mean of the two.  The
    -- mean separates questions the documents answer from those they do not better than the
    -- question alone (AUC 0.95 against 0.90 on eval/dev2.jsonl; docs/benchmarks.md): an
    -- off-topic question's expansion is about something else, and lands far from every chunk.
    sim_sql := format(case when cardinality(qvs) > 1
                           then '(2 - (c.embedding operator(%1$I.<=>) $1[1]::%1$I.vector)
                                    - (c.embedding operator(%1$I.<=>) $1[2]::%1$I.vector)) / 2'
                           else '1 - (c.embedding operator(%1$I.<=>) $1[1]::%1$I.vector)' end,
                      ai_internal._vector_schema());
    -- each list: (list, is_vector, key, chunk_seq, chunk, sim, raw score, rank in the list)
    -- (the operator is schema-qualified: this function's search_path holds only pg_catalog)
    vector_sql := format('select q.i as list, true as is_vector, x.*, row_number() over (partition by q.i order by x.raw desc) as r
                          from unnest($1) with ordinality q(vec, i),
                          lateral (select %1$s as key, c.chunk_seq, c.chunk,
                                          %5$s as sim,
                                          1 - (c.embedding operator(%3$I.<=>) q.vec::%3$I.vector) as raw
                                   from %2$s c where true %4$s
                                   order by c.embedding operator(%3$I.<=>) q.vec::%3$I.vector limit $3) x',
                         _search_run.key_json, _search_run.store, ai_internal._vector_schema(), where_filter, sim_sql);
    keyword_sql := format('select -q.i as list, false as is_vector, x.*, row_number() over (partition by q.i order by x.raw desc) as r
                           from unnest($2) with ordinality q(tq, i),
                           lateral (select %1$s as key, c.chunk_seq, c.chunk,
                                           %5$s as sim,
                                           ts_rank(c.fts, q.tq, 1)::float8 as raw
                                    from %2$s c where c.fts @@ q.tq %4$s
                                    order by raw desc limit $3) x',
                          _search_run.key_json, _search_run.store, ai_internal._vector_schema(), where_filter, sim_sql);
    -- The heading list: the source rows with a heading line ("## COMMENT", "### 9.18.2. COALESCE")
    -- that is one of heads, a heading found in at most 3 of them (one that names a page, not
    -- "Examples"), in the order of heads; a row's chunks by similarity to the question.  The
    -- words' index finds the candidates, the pattern the headings.  A word match: keyword_weight.
    -- (No raw score: it fuses by rank only; a heading that matches has words, so the names' keyword
    -- list is there too and this list is never the only one.)
    heading_sql := format('with m as (select x.*, h.i
                                      from unnest($11) with ordinality h(head, i),
                                      lateral (select %1$s as key, c.chunk_seq, c.chunk, %5$s as sim
                                               from %2$s c
                                               where c.fts @@ ai_internal._all_words(h.head)
                                                 and c.chunk ~* (''(^|\n)#{1,6}[ \t]+([A-Z]?[0-9][0-9.]*[ \t]+)?''
                                                                 || ai_internal._regex_quote(h.head) || ''[ \t]*(\n|$)'') %4$s) x),
                                naming as (select m.i from m group by m.i having count(distinct m.key) <= 3),
                                p as (select m.key, m.chunk_seq, min(m.chunk) as chunk, max(m.sim) as sim,
                                             min(min(m.i)) over (partition by m.key) as o
                                      from m join naming using (i) group by m.key, m.chunk_seq),
                                y as (select p.*, row_number() over (order by p.o, p.sim desc nulls last, p.chunk_seq) as r from p)
                           select -1000::bigint as list, false as is_vector, y.key, y.chunk_seq, y.chunk, y.sim,
                                  null::float8 as raw, y.r
                           from y where y.r <= $3',
                          _search_run.key_json, _search_run.store, ai_internal._vector_schema(), where_filter, sim_sql);
    -- Reciprocal rank fusion.  By document (default): each source row ranks in a list by its best
    -- chunk there, rows are fused, and their chunks follow in order of their own fused score.  The
    -- retrievers often pick different chunks of the right document, which chunk-level fusion
    -- scores as half-hits (see docs/benchmarks.md).  One list alone keeps its own score (similarity
    -- or ts_rank).
    return query execute format('
        with lists as (%s union all %s union all (%s)),
             hits as (
                 select l.key, l.chunk_seq, min(l.chunk) as chunk, max(l.sim) as sim, max(l.raw) as raw,
                        min(l.r) filter (where l.is_vector) as vr, min(l.r) filter (where not l.is_vector) as wr,
                        sum(case when l.is_vector then $5 else $6 end / ($7 + l.r)) as chunk_score
                 from lists l group by l.key, l.chunk_seq),
             doc_lists as (
                 select l.key, bool_or(l.is_vector) as is_vector,
                        rank() over (partition by l.list order by min(l.r)) as dr
                 from lists l group by l.list, l.key),
             doc_scores as (
                 select d.key, sum(case when d.is_vector then $5 else $6 end / ($7 + d.dr)) as doc_score
                 from doc_lists d group by d.key)
        select h.key, h.chunk_seq, h.chunk,
               case when $9 = 1 then h.raw when $8 = ''document'' then d.doc_score else h.chunk_score end as score,
               h.sim, h.vr::int, h.wr::int
        from (select x.*, row_number() over (partition by x.key order by x.chunk_score desc, x.raw desc nulls last) as nth
              from hits x) h
        join doc_scores d on d.key = h.key
        where $10 is null or h.nth <= $10
        order by score desc, h.chunk_score desc, h.raw desc nulls last
        limit $4', vector_sql, keyword_sql, heading_sql)
        using case when mode = 'keyword' then null else qvs end, tqs, n, k, vector_weight, keyword_weight,
              rrf_k::float8, fusion, lists, per_source, heads;
end $$;

create or replace function ai.search(
    name text, query text, k int default 10, mode text default 'hybrid', filter text default null,
    rrf_k int default 60, vector_weight float8 default 1.0, keyword_weight float8 default 1.0,
    candidates int default null, rerank text default null, keyword_query text default null,
    fusion text default 'document', expand boolean default false, chunks_per_source int default null,
    expansion text default null)
returns table (key jsonb, chunk_seq int, chunk text, score float8, similarity float8,
               vector_rank int, keyword_rank int)
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    t record;
    qv text;
    tr text;
    kq text;
    ex text;
    qvs text[];
    tqs tsquery[];
    settings jsonb;
    n int;
begin
    if name is null or query is null then
        return;
    end if;
    perform ai_internal._check_search_args(mode, k);
    if fusion is null or fusion not in ('document', 'chunk') then
        raise exception 'unknown fusion "%"', fusion
            using errcode = '22023', hint = 'fusion is document (rank source rows by their best chunk in each list) or chunk';
    end if;
    perform ai_internal._check_query_length(array[query, keyword_query, expansion]);
    if rrf_k is null or rrf_k < 1 or rrf_k > 10000 then
        raise exception 'rrf_k must be between 1 and 10000, got %', rrf_k using errcode = '22023', hint = 'the usual value is 60';
    end if;
    if chunks_per_source is not null and chunks_per_source < 1 then
        raise exception 'chunks_per_source must be at least 1, got %', chunks_per_source
            using errcode = '22023', hint = 'leave it out for no limit, e.g. chunks_per_source => 2';
    end if;
    if candidates is not null and (candidates < 1 or candidates > 10000) then
        raise exception 'candidates must be between 1 and 10000, got %', candidates
            using errcode = '22023', hint = 'leave it out: it defaults to max(4 k, 40)';
    end if;
    if vector_weight is null or keyword_weight is null or vector_weight < 0 or keyword_weight < 0
       or vector_weight = 'Infinity' or keyword_weight = 'Infinity' or vector_weight = 'NaN' or keyword_weight = 'NaN' then
        raise exception 'weights must be finite numbers >= 0, got % and %', vector_weight, keyword_weight
            using errcode = '22023', hint = 'e.g. vector_weight => 1.0, keyword_weight => 0.5';
    end if;
    t := ai_internal._search_target(name, current_user);
    n := coalesce(candidates, greatest(k * 4, 40));
    if rerank is not null then
        -- the first stage's best candidates, re-scored by the rerank model (a cross-encoder)
        return query
            with first as (
                select s.key, s.chunk_seq, s.chunk, s.similarity, s.vector_rank, s.keyword_rank, s.pos
                from ai.search(name, query, n, mode, filter, rrf_k, vector_weight, keyword_weight, candidates,
                               keyword_query => keyword_query, fusion => fusion, expand => expand,
                               chunks_per_source => chunks_per_source, expansion => expansion) with ordinality
                     s(key, chunk_seq, chunk, score, similarity, vector_rank, keyword_rank, pos)),
            scored as (
                select r.idx, r.score from ai.rerank(rerank, query,
                    (select array_agg(f.chunk order by f.pos) from first f)) r)
            select f.key, f.chunk_seq, f.chunk, sc.score, f.similarity, f.vector_rank, f.keyword_rank
            from first f join scored sc on sc.idx = f.pos
            order by sc.score desc limit k;
        return;
    end if;
    -- the question in the knowledge base's language (itself unless translation applies): a model
    -- matches a question to passages best in their own language (e5-small: MRR 0.30 → 0.70 for
    -- Chinese questions on the English manual), and words only match words of the same language
    settings := ai_internal._kb_settings(t.config);
    if mode <> 'keyword' or keyword_query is null then
        tr := ai_internal._translate(settings, query);
    end if;
    -- the caller's expansion (RAG writes it first, to choose the sources' sentences with it too), else the model's
    ex := nullif(btrim(expansion), '');
    if ex is null and expand then
        ex := ai_internal._expand(settings, name, query);
    end if;
    -- similarity: 1 - cosine distance to the question, for every result (RAG thresholds on it);
    -- keyword search alone does not need the embedding model (similarity is then null)
    if mode <> 'keyword' then
        qvs := array[ai.embed(t.model, tr, 'query')::text];
        if ex is not null then
            qvs := qvs || ai.embed(t.model, ex, 'query')::text;
        end if;
    end if;
    if mode <> 'vector' then
        -- the question's own words and, for a question in the other language, its translation's:
        -- a knowledge base may hold documents in both languages
        kq := coalesce(keyword_query, case when tr = query then query else query || ' ' || tr end);
        tqs := array[ai.keyword_query(kq), ai.keyword_query(ai_internal._expansion_names(ex))];
    end if;
    return query select * from ai_internal._search_run(t.store, t.key_json, t.key_cols, t.source, t.source_key_cols,
                                                      filter, qvs, tqs, mode, n, k, vector_weight, keyword_weight,
                                                      rrf_k, fusion, chunks_per_source,
                                                      ai_internal._expansion_headings(ex));
end $$;

-- RAG: the question's best chunks (hybrid search), those above the similarity threshold as
-- numbered sources within a token budget, an instruction to cite them and to say when the
-- answer is not there, the answer from a chat model in the question's language.
drop function if exists ai._is_chinese(text);

create or replace function ai_internal._estimate_tokens(t text) returns int
language sql immutable strict as $$
    select length(regexp_replace(t, '[^\u3000-\u9fff\uff00-\uffef]', '', 'g'))
         + (length(regexp_replace(t, '[\u3000-\u9fff\uff00-\uffef]', '', 'g')) + 3) / 4
$$;

-- The answer prompts were chosen on the tuning sets (docs/benchmarks.md).  The Chinese one asks for
-- the command only when the question asks how: asked for one always, the 1.5B answered a
-- non-technical knowledge base's question with nothing (tests/test_search_rag.py's panda).
create or replace function ai.rag_defaults() returns jsonb
language sql immutable as $$ select '{
    "model": "qwen-1.5b",
    "k": 5,
    "chunks_per_source": 2,
    "threshold": 0.5,
    "rerank": null,
    "rerank_candidates": 5,
    "rerank_threshold": 0.5,
    "context_tokens": 2400,
    "source_sentences": [3, 3, 2, 1, 1],
    "max_tokens": 512,
    "system_en": "",
    "system_zh": "",
    "prompt_en": "Sources from the {topic} documentation:\n{sources}Question: {question}\nUsing only the sources, answer in one to three short sentences of your own words, in English, for {topic}. Start with the exact command, function or setting that does it, and cite the sources like [1].",
    "prompt_zh": "以下是{topic}文档中的资料:\n{sources}问题: {question}\n请只根据以上资料回答,针对{topic}。用一到三句简短的中文:第一句直接回答;问怎么做时,写出能做到这件事的具体命令、函数或设置名称并用中文说明,不要照抄资料。在句末注明出处编号,如 [1]。",
    "decline_en": "The knowledge base does not contain the answer.",
    "decline_zh": "知识库中没有这个问题的答案。",
    "language": null,
    "translate_model": "qwen-0.5b",
    "translate_prompt_en": "Translate this question into English. Reply with the English question only.\n\n{question}",
    "translate_prompt_zh": "把这个问题翻译成中文,只回答翻译后的问题。\n\n{question}",
    "expand": true,
    "expand_model": "qwen-1.5b",
    "expand_tokens": 64,
    "topic": null,
    "topic_model": "qwen-1.5b",
    "topic_threshold": 2.0,
    "topic_system": "You sort questions by subject. Answer only yes or no.",
    "topic_prompt": "A user of {topic} asks: \"{question}\"\n\nIs the question about {topic} itself (not about another product, program or subject)?",
    "expand_prompt_en": "Answer this question about {topic} in one or two short English sentences. Name the exact commands, functions, settings or terms involved.\n\nQuestion: {question}",
    "expand_prompt_zh": "用一两句简短的中文回答这个关于{topic}的问题,写出涉及的具体命令、函数、设置或术语。\n\n问题: {question}"
}'::jsonb $$;

-- A knowledge base's RAG and translation settings: the defaults, overridden by its own.
create or replace function ai_internal._kb_settings(config jsonb) returns jsonb
language sql immutable set search_path = pg_catalog, pg_temp as $$
    select ai.rag_defaults() || coalesce(config->'rag', '{}')
$$;

create or replace function ai.configure_rag(name text, config jsonb) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    vid int := ai_internal._vectorizer_id(name);
    unknown text[];
begin
    perform ai_internal._check_vectorizer_owner(vid);
    if config is null or jsonb_typeof(config) <> 'object' then
        raise exception 'RAG settings must be a JSON object' using errcode = '22023',
            hint = 'e.g. ''{"k": 5, "threshold": 0.4}''; the settings are the keys of ai.rag_defaults()';
    end if;
    select array_agg(x) into unknown from jsonb_object_keys(config) x where not ai.rag_defaults() ? x;
    if unknown is not null then
        raise exception 'unknown RAG settings: %', array_to_string(unknown, ', ')
            using errcode = '22023', hint = 'the settings are the keys of ai.rag_defaults()';
    end if;
    -- each value of the type and range ai.rag uses it with: a bad one must fail here, not in every ai.rag
    select array_agg(format('%s = %s', key, value)) into unknown from jsonb_each(config) where not case
        when key = 'source_sentences' then jsonb_typeof(value) = 'null' or ai_internal._json_count(value, 1, 100)
                               or (jsonb_typeof(value) = 'array' and jsonb_array_length(value) between 1 and 100
                                   and not exists (select from jsonb_array_elements(value) x
                                                    where not ai_internal._json_count(x, 1, 100)))
        when key in ('k', 'chunks_per_source', 'rerank_candidates') then ai_internal._json_count(value, 1, 100)
        when key in ('context_tokens', 'max_tokens') then ai_internal._json_count(value, 1, 100000)
        when key = 'expand_tokens' then ai_internal._json_count(value, 1, 512)
        when key = 'threshold' then jsonb_typeof(value) = 'null'
                               or (jsonb_typeof(value) = 'number' and value::text::numeric between -1 and 1)
        when key = 'language' then jsonb_typeof(value) = 'null' or value #>> '{}' in ('en', 'zh')
        when key in ('translate_model', 'rerank', 'expand_model', 'topic', 'topic_model') then jsonb_typeof(value) in ('null', 'string')
        when key = 'expand' then jsonb_typeof(value) = 'boolean'
        when key in ('rerank_threshold', 'topic_threshold') then jsonb_typeof(value) = 'number' and value::text::numeric between -1000 and 1000
        else jsonb_typeof(value) = 'string' end;
    if unknown is not null then
        raise exception 'invalid RAG settings: %', array_to_string(unknown, ', ')
            using errcode = '22023',
                  hint = 'k and chunks_per_source are 1..100, source_sentences 1..100, an array of them (one per source rank) or null; context_tokens and max_tokens positive integers, expand_tokens 1..512; threshold -1..1 or null; '
                         'language en, zh or null; rerank a model or null, rerank_candidates 1..100, '
                         'rerank_threshold and topic_threshold numbers; expand true or false; the others texts (see ai.rag_defaults())';
    end if;
    update ai.vectorizers v
       set config = jsonb_set(v.config, '{rag}', coalesce(v.config->'rag', '{}') || configure_rag.config)
     where v.id = vid;
    return ai_internal._kb_settings((select v.config from ai.vectorizers v where v.id = vid));
end $$;

-- The prompt's text of the sources, numbered: each chunk whole, or with per_source set its title
-- line and its per_source[n] sentences closest to the question and to its expansion (source n
-- past the array's end takes its last count; by the knowledge base's own model, one embedding call
-- for all), in their order; a chunk of no more sentences whole.  With 3 sentences each the chat
-- model read ~40% fewer tokens before its first than with whole chunks (~935 → ~560: first token
-- p50 14.1 → 9.7 s on 2 cores) for the same facts named on dev2 (docs/benchmarks.md).
-- Each source's "chunk" in the result stays whole.  The default gives lower-ranked sources fewer
-- sentences (3, 3, 2, 1, 1): ~22% fewer prompt tokens, first token p50 13.4 → 11.2 s, the same facts
-- in the answers on dev2 + dev3 (docs/benchmarks.md, stop 25).  One statement, no temporary table:
-- the HTTP API runs RAG read-only.
drop function if exists ai_internal._source_text(text, text, jsonb, int);
drop function if exists ai_internal._source_text(text, text, text, jsonb, int);
create or replace function ai_internal._source_text(model text, question text, expansion text, sources jsonb,
                                                    per_source int[])
returns text language sql volatile set search_path = pg_catalog, pg_temp as $$
    with src as (
        select (e->>'n')::int as n, e->>'chunk' as chunk,
               -- (a title line as the chunker writes one: chunking._TITLE)
               case when e->>'chunk' ~ '^#{1,6}\s+[^\n]{1,200}\n' then split_part(e->>'chunk', E'\n', 1) end as title,
               per_source[least((e->>'n')::int, cardinality(per_source))] as want
          from jsonb_array_elements(sources) e),
    -- Pieces split at sentence ends (a Chinese one needs no space after it) and line breaks; a
    -- piece that does not end a sentence (a setting's name on its own line, "To build it without
    -- locks:") stays with what follows it, so a description keeps the name it describes and an
    -- example its intro (a statement's ";" ends it).
    pieces as (
        select src.n, x.i, btrim(x.s) as s
          from src, regexp_split_to_table(case when src.title is null then src.chunk
                                               else substr(src.chunk, length(src.title) + 2) end,
                                          '(?<=[.!?])\s+|(?<=[\u3002\uff01\uff1f])\s*|\n+') with ordinality x(s, i)
         where src.want is not null and btrim(x.s) <> ''),
    grouped as (
        select p.*, coalesce(sum(case when p.s ~ '[.!?;\u3002\uff01\uff1f\uff1b]$' then 1 else 0 end)
                                 over (partition by p.n order by p.i rows between unbounded preceding and 1 preceding), 0) as g
          from pieces p),
    units as (
        select gr.n, string_agg(gr.s, ' ' order by gr.i) as s, row_number() over (order by gr.n, gr.g) as rn
          from grouped gr group by gr.n, gr.g having length(string_agg(gr.s, ' ')) > 2),
    batch as (select array_agg(u.s order by u.rn) as texts from units u),
    -- (the models are called only when there are sentences to choose from)
    vecs as (select e.idx, e.embedding from batch,
                    lateral ai_internal._embed_batch(model, batch.texts, 'document', current_user) e
              where batch.texts is not null),
    qv as (select e.idx as qi, e.embedding from batch,
                  lateral ai_internal._embed_batch(model, array_remove(array[question, expansion], null), 'query',
                                                   current_user) e
            where batch.texts is not null),
    pair as (select v.idx, qv.qi, sum(a * q) / nullif(sqrt(sum(a * a)) * sqrt(sum(q * q)), 0) as sim
               from vecs v, qv, unnest(v.embedding, qv.embedding) w(a, q) group by v.idx, qv.qi),
    cosine as (select pair.idx, max(pair.sim) filter (where pair.qi = 1) as sq,
                      coalesce(max(pair.sim) filter (where pair.qi = 2), max(pair.sim) filter (where pair.qi = 1)) as se
                 from pair group by pair.idx),
    -- a chunk's sentences taken by turns: its best by the question, its best by the expansion, its
    -- second by the question, …  The question's best always stays (an expansion from the model's
    -- prior may be wrong), and the expansion adds the sentence that names the command where the
    -- question only describes the task.
    turns as (select u.n, u.rn, u.s, row_number() over (partition by u.n order by c.sq desc nulls last) as rq,
                     row_number() over (partition by u.n order by c.se desc nulls last) as re
                from units u join cosine c on c.idx = u.rn),
    ranked as (select t.n, t.rn, t.s, row_number() over (partition by t.n order by least(t.rq, t.re), t.rq) as r
                 from turns t)
    select string_agg(format(E'[%s] %s\n\n', src.n,
                             case when src.want is null or (select count(*) from units u where u.n = src.n) <= src.want
                                  then src.chunk
                                  else coalesce(src.title || E'\n', '')
                                       || (select string_agg(r.s, ' … ' order by r.rn) from ranked r
                                            where r.n = src.n and r.r <= src.want) end),
                      '' order by src.n)
      from src
$$;

-- Retrieval and prompt, without generation: {"messages", "sources", "answered", "answer" (the
-- decline, when nothing passed the threshold), "model", "options"}.  ai.rag generates from it;
-- the CLI and the HTTP API stream from it.
create or replace function ai.rag_prompt(name text, question text, k int default null, model text default null,
                                         threshold float8 default null, filter text default null)
returns jsonb language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    t record;
    cfg jsonb;
    zh boolean;
    r record;
    sources jsonb := '[]';
    context text := '';
    budget int;
    used int := 0;
    n int := 0;
    topic_score float8;
    ex text;
begin
    if name is null or question is null then
        return null;
    end if;
    if btrim(question) = '' then
        raise exception 'the question is empty' using errcode = '22023', hint = 'ask something';
    end if;
    perform ai_internal._check_query_length(array[question]);
    t := ai_internal._search_target(name, current_user);
    cfg := ai_internal._kb_settings(t.config);
    k := coalesce(k, (cfg->>'k')::numeric::int);
    model := coalesce(model, cfg->>'model');
    -- the threshold: this call's, else the knowledge base's, else the embedding model's, else the default
    threshold := coalesce(threshold, (t.config->'rag'->>'threshold')::float8, t.model_threshold,
                          (cfg->>'threshold')::float8);
    zh := ai_internal._text_language(question) = 'zh';
    budget := (cfg->>'context_tokens')::numeric::int;
    -- A question about another subject (another product, the weather) is declined before any
    -- search: its best chunks can be as close as a real question's.
    topic_score := ai_internal._topic_score(cfg, question);
    -- Whether the knowledge base holds the answer is decided once, from the best chunk: its
    -- similarity (to the question and its expansion) against the threshold, or with a reranker in
    -- the settings its relevance against rerank_threshold (calibrated by `pgmind eval --calibrate`
    -- / `--rerank`).  Then the top k chunks are the sources, in the order ai.search ranks them
    -- (chunks of the best source rows first): rank fusion orders them better than similarity does.
    -- At most chunks_per_source of them from one source row: without a cap a wrong first row
    -- fills every source.
    if not coalesce(topic_score < (cfg->>'topic_threshold')::float8, false) then
        -- the expansion is written here, not in ai.search: the sources' sentences are chosen with it too
        if (cfg->>'expand')::boolean then
            ex := ai_internal._expand(cfg, name, question);
        end if;
        for r in with hits as (
                     select s.* from ai.search(name, question, k => k, mode => 'hybrid', filter => filter,
                                               chunks_per_source => (cfg->>'chunks_per_source')::numeric::int,
                                               rerank => cfg->>'rerank', expansion => ex,
                                               candidates => case when cfg->>'rerank' is not null
                                                                  then (cfg->>'rerank_candidates')::numeric::int end) with ordinality
                              s(key, chunk_seq, chunk, score, similarity, vector_rank, keyword_rank, pos))
                 select h.* from hits h
                 where (select max(case when cfg->>'rerank' is null then x.similarity else x.score end) from hits x)
                       >= case when cfg->>'rerank' is null then threshold else (cfg->>'rerank_threshold')::float8 end
                 order by h.pos loop
            exit when used + ai_internal._estimate_tokens(r.chunk) > budget and n > 0;
            n := n + 1;
            used := used + ai_internal._estimate_tokens(r.chunk);
            sources := sources || jsonb_build_object('n', n, 'key', r.key, 'chunk_seq', r.chunk_seq, 'chunk', r.chunk,
                                                     'score', r.score, 'similarity', r.similarity);
        end loop;
    end if;
    if n > 0 then
        -- (a number is every source's count, an array one per rank: configure_rag checked either)
        context := ai_internal._source_text(t.model, question, ex, sources,
                       case jsonb_typeof(cfg->'source_sentences')
                            when 'number' then array[(cfg->>'source_sentences')::numeric::int]
                            when 'array' then array(select x::numeric::int from jsonb_array_elements_text(cfg->'source_sentences')
                                                                        with ordinality a(x, i) order by a.i) end);
    end if;
    return jsonb_build_object(
        'answered', n > 0,
        'answer', case when n = 0 then cfg->>(case when zh then 'decline_zh' else 'decline_en' end) end,
        'sources', sources, 'model', model, 'topic_score', topic_score,
        'options', jsonb_build_object('max_tokens', (cfg->>'max_tokens')::numeric::int, 'temperature', 0.1),
        'messages', case when n > 0 then
            -- (small models follow one user message better than a system prompt: both are configurable)
            case when coalesce(cfg->>(case when zh then 'system_zh' else 'system_en' end), '') <> ''
                 then jsonb_build_array(jsonb_build_object('role', 'system',
                          'content', cfg->>(case when zh then 'system_zh' else 'system_en' end)))
                 else '[]'::jsonb end
            || jsonb_build_array(jsonb_build_object('role', 'user', 'content',
                   ai_internal._fill(cfg->>(case when zh then 'prompt_zh' else 'prompt_en' end),
                                     jsonb_build_object('sources', context, 'question', question,
                                                        'topic', coalesce(cfg->>'topic', name))))) end);
end $$;

create or replace function ai.rag(name text, question text, k int default null, model text default null,
                                  threshold float8 default null, filter text default null,
                                  options jsonb default '{}')
returns jsonb language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    p jsonb;
    reply jsonb;
begin
    p := ai.rag_prompt(name, question, k, model, threshold, filter);
    if p is null or not (p->>'answered')::boolean then
        return p - 'messages' - 'options' || '{"usage": null}';
    end if;
    reply := ai.chat(p->>'model', p->'messages', (p->'options') || coalesce(options, '{}'));
    return jsonb_build_object('answer', reply->'message'->>'content', 'sources', p->'sources', 'answered', true,
                              'usage', reply->'usage', 'model', p->>'model', 'topic_score', p->'topic_score');
end $$;

-- Image knowledge bases (vectorizers of an image model).  By words: the image model's text tower
-- where it has one (CLIP), and the images' descriptions (file name, labels, text in the image) by
-- their words and by the words of the labels closest in meaning to the query (the model server
-- finds those with the knowledge base's text model, "text_model" in its settings, default use-m3).
-- By picture: the image's vector.  Same columns as ai.search; similarity is the cosine similarity
-- (vectors are unit length, so <-> ranks the same).
create or replace function ai_internal._require_image_kb(p_name text, config jsonb) returns void
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
begin
    if config->>'modality' is distinct from 'image' then
        raise exception '"%" is not an image knowledge base', p_name
            using errcode = '22023', hint = 'search texts with ai.search; image vectorizers use an image model';
    end if;
end $$;

create or replace function ai.search_images(name text, query text, k int default 10, filter text default null,
                                            mode text default 'hybrid')
returns table (key jsonb, chunk_seq int, chunk text, score float8, similarity float8,
               vector_rank int, keyword_rank int)
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    t record;
    found jsonb;
    kq text;
    tq tsquery;
begin
    if name is null or query is null then
        return;
    end if;
    perform ai_internal._check_search_args(mode, k);
    if length(query) > 2000 then
        raise exception 'the query has % characters; an image search takes at most 2000', length(query)
            using errcode = '22023', hint = 'describe the picture in a sentence or two';
    end if;
    select * into t from ai_internal._search_target(name, current_user);
    perform ai_internal._require_image_kb(name, t.config);
    -- one call: the query in the images' space (text tower) and the labels nearest in meaning
    found := ai_internal._image_request('/pgmind/v1/images/query',
                 jsonb_build_object('model', t.model, 'query', query,
                                    'text_model', coalesce(t.config->>'text_model', 'use-m3'),
                                    'mode', mode));
    if found->'vector' = 'null'::jsonb and mode = 'vector' then
        raise exception 'model "%" has no text tower: it cannot place words among its images', t.model
            using errcode = '22023', hint = 'use mode => ''hybrid'' or ''keyword'' (descriptions and labels), or a CLIP model';
    end if;
    if mode <> 'vector' then
        kq := query || coalesce(' ' || (select string_agg(l->>'label', ' ') from jsonb_array_elements(found->'labels') l), '');
        tq := ai.keyword_query(kq);
    end if;
    return query select * from ai_internal._search_run(t.store, t.key_json, t.key_cols, t.source, t.source_key_cols,
        filter, array[nullif(found->>'vector', '')], array[tq],
        case when found->'vector' = 'null'::jsonb then 'keyword' else mode end,
        greatest(k * 4, 40), k, 1.0, 1.0, 60, 'document');
end $$;

create or replace function ai.search_images(name text, image bytea, k int default 10, filter text default null)
returns table (key jsonb, chunk_seq int, chunk text, score float8, similarity float8,
               vector_rank int, keyword_rank int)
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    t record;
begin
    if name is null or image is null then
        return;
    end if;
    perform ai_internal._check_search_args('vector', k);
    select * into t from ai_internal._search_target(name, current_user);
    perform ai_internal._require_image_kb(name, t.config);
    return query select * from ai_internal._search_run(t.store, t.key_json, t.key_cols, t.source, t.source_key_cols,
        filter, array[ai.embed_image(t.model, image)::text], null, 'vector', greatest(k * 4, 40), k, 1.0, 1.0, 60, 'document');
end $$;
