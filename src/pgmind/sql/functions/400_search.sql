-- Search over a vectorizer's chunks (PL/pgSQL): who may search what, the ranked lists and their
-- fusion (the words of a query: 402_search_words.sql).  Query understanding (translation, expansion, topic) is
-- 410_query.sql, RAG 420_rag.sql, image search 430_image_search.sql.  ai.search needs the model
-- server for the vector side and for an expansion; keyword search alone works anywhere.  Runs
-- with the caller's rights: the caller must be able to read the chunks (and the source table when
-- filtering).

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
grant execute on function ai_internal._search_target(text, name) to public;

-- Locks a knowledge base's chunk table and source table for the rest of the transaction, for a
-- session role that may read the chunks, and returns them (HTTP search: ai_internal._gateway_search).
-- A definer, so the source is locked even where the role may not read it (a filter still plans a
-- query there).  Both are locked by name, so each name is looked up again once the lock is held: a
-- rename while the lock waited (another table given the source's name) is refused, since ai.search
-- reads the source by its OID.  A source that is gone is refused too: nothing is left unlocked.
-- (A role that may read the chunks can hold these two locks as long as its transaction lasts, as
-- reading the chunks would; ACCESS SHARE blocks only ALTER, DROP and the like.)
drop function if exists ai_internal._search_tables(text);
create or replace function ai_internal._lock_search_tables(p_name text, out store text, out source regclass)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    me name := ai_internal._session_role();
    vid int := ai_internal._vectorizer_id(p_name);
    source_name text;
begin
    select format('%I.%I', v.dest_schema, ver.store_table), v.source,
           (select format('%I.%I', n.nspname, c.relname) from pg_class c join pg_namespace n on n.oid = c.relnamespace
            where c.oid = v.source)
      into store, source, source_name
    from ai.vectorizers v join ai.vectorizer_versions ver on ver.vectorizer_id = v.id and ver.status = 'active'
    where v.id = vid;
    if store is null or to_regclass(store) is null or not has_table_privilege(me, store, 'select') then
        raise exception 'permission denied for knowledge base "%"', p_name
            using errcode = '42501',
                  hint = format('its owner can run: grant select on %s to %I (and on the source table, for filters)',
                                coalesce(store, 'its chunk table'), me);
    end if;
    if source_name is null then
        raise exception 'the source table of knowledge base "%" is gone', p_name
            using errcode = '42P01', hint = 're-create the vectorizer over a table (ai.drop_vectorizer, ai.create_vectorizer)';
    end if;
    execute format('lock table %s, %s in access share mode', store, source_name);
    if to_regclass(source_name) is distinct from source then
        raise exception 'the source table of knowledge base "%" was renamed during the search', p_name
            using errcode = '42501', hint = 'search again; if this repeats, ask the owner why its tables keep changing';
    end if;
end $$;
grant execute on function ai_internal._lock_search_tables(text) to public;

-- HTTP search's way in (pgmind.server.search_api), in the gateway's session, as one call: act as the
-- key's role (ai_internal._act_as), lock the knowledge base's tables (ai_internal._lock_search_tables),
-- then check them — the chunk table by ai.search's own ai_internal._search_target, the source here —
-- so their owner cannot turn them into something that runs its code between the check and the
-- search.  Refused: a source that is no longer a plain table, or whose views, rules, indexes,
-- statistics or constraints hold code the planner would run (ai_internal._planner_safe); row
-- security on the source (its policies are the owner's code, and this session's user is the
-- gateway, not the caller); a filter column of a type of the owner's own (its casts are the owner's
-- functions).  Then both tables are planned once and checked again: planning locks every index of
-- a table, so an owner who holds one index's lock (REINDEX in an open transaction) to keep the
-- search waiting while it adds an index with its code is found here, not in the search's own plan.
-- SECURITY INVOKER without a SET clause, like _act_as: the role must outlive the call.
create or replace function ai_internal._gateway_search(role_name name, p_name text, filter_columns text[])
returns void language plpgsql volatile as $$
declare
    t record;      -- the tables: ai_internal._lock_search_tables
    c record;      -- what the source has become
    readable boolean;
begin
    perform ai_internal._act_as(role_name);
    select * into t from ai_internal._lock_search_tables(p_name);
    readable := pg_catalog.has_table_privilege(t.source, 'select');
    -- (a filter plans a query on the source, and planning comes before the permission check: the
    -- source is planned here only by a role that may read it)
    if not readable and pg_catalog.cardinality(filter_columns) operator(pg_catalog.>) 0 then
        raise exception 'permission denied for the source table of knowledge base "%"', p_name
            using errcode = '42501', hint = 'search without a filter, or ask the owner to grant select on the source table';
    end if;
    for i in 1..2 loop
        select k.relrowsecurity as rls,
               k.relkind operator(pg_catalog.<>) all ('{r,p}'::"char"[]) or k.relhasrules
                   or not ai_internal._planner_safe(k.oid) as not_table,
               exists (select 1 from pg_catalog.pg_attribute a
                       where a.attrelid operator(pg_catalog.=) k.oid and a.atttypid operator(pg_catalog.>=) 16384
                         and a.attname operator(pg_catalog.=) any (coalesce(filter_columns, '{}'::text[]))
                         and not a.attisdropped) as owned_types
          into c from pg_catalog.pg_class k where k.oid operator(pg_catalog.=) t.source;
        if c.not_table or not ai_internal._store_is_plain(pg_catalog.to_regclass(t.store)) then
            raise exception 'the source or the chunk table of knowledge base "%" is no longer a plain table', p_name
                using errcode = '42501', hint = 'search it from SQL as your own role, or re-create the vectorizer over a table';
        end if;
        if c.rls then
            raise exception 'knowledge base "%" keeps its source table''s row security, which HTTP search does not run', p_name
                using errcode = '42501', hint = 'call ai.search / ai.rag from SQL as your own role';
        end if;
        if c.owned_types then
            raise exception 'filters over HTTP work on columns of built-in types only'
                using errcode = '22023', hint = 'filter on text, number, boolean or date columns, or call ai.search from SQL';
        end if;
        exit when i operator(pg_catalog.=) 2;
        -- (planned, not run: EXPLAIN takes the indexes' locks and reads nothing; the source with its
        -- children and partitions, which a filter's query plans too — _act_as turned the folding of
        -- their constraints off)
        execute pg_catalog.format('explain select 1 from only %s', t.store);
        if readable then
            execute pg_catalog.format('explain select 1 from %s', t.source);
        end if;
    end loop;
end
$$;
grant execute on function ai_internal._gateway_search(name, text, text[]) to public;

drop function if exists ai.search(text, text, int, text, text, int, float8, float8, int);
drop function if exists ai.search(text, text, int, text, text, int, float8, float8, int, text);
drop function if exists ai.search(text, text, int, text, text, int, float8, float8, int, text, text);
drop function if exists ai.search(text, text, int, text, text, int, float8, float8, int, text, text, text);
drop function if exists ai.search(text, text, int, text, text, int, float8, float8, int, text, text, text, boolean);
drop function if exists ai.search(text, text, int, text, text, int, float8, float8, int, text, text, text, boolean, int);
-- (two columns were added to the result, chunk_score and lists: the previous shape is dropped here)
select ai_internal._drop_if_result_differs(
    'ai.search(text, text, int, text, text, int, float8, float8, int, text, text, text, boolean, int, text)',
    'TABLE(key jsonb, chunk_seq integer, chunk text, score double precision, similarity double precision, vector_rank integer, keyword_rank integer, chunk_score double precision, lists jsonb)');
select ai_internal._drop_if_result_differs(
    'ai_internal._search_run(text, text, text, regclass, text, text, text[], tsquery[], text, int, int, float8, float8, int, text, int, text[])',
    'TABLE(key jsonb, chunk_seq integer, chunk text, score double precision, similarity double precision, vector_rank integer, keyword_rank integer, chunk_score double precision, lists jsonb)');
drop function if exists ai_internal._search_run(text, text, text, regclass, text, text, text, tsquery, text, int, int,
                                                float8, float8, int, text);
drop function if exists ai_internal._search_run(text, text, text, regclass, text, text, text[], tsquery[], text, int, int,
                                                float8, float8, int, text);
drop function if exists ai_internal._search_run(text, text, text, regclass, text, text, text[], tsquery[], text, int, int,
                                                float8, float8, int, text, int);
-- The retrieval itself, for ai.search and ai.search_images: one ranked list per query vector (qvs,
-- in the HNSW index, iterative scans so a selective filter still gives k rows) and one per keyword
-- query (tqs), and one of the pages that have a heading named in heads (an expansion's names:
-- pgmind.rag.text.expansion_headings); a single list is returned as it ranks, several are fused by
-- reciprocal rank.
-- similarity is to qvs[1], the question itself, or with its expansion in qvs[2] the mean of
-- both (RAG thresholds on it).  Runs with the
-- caller's rights (the filter is the caller's SQL).
create or replace function ai_internal._search_run(
    store text, key_json text, key_cols text, source regclass, source_key_cols text, filter text,
    qvs text[], tqs tsquery[], mode text, n int, k int, vector_weight float8, keyword_weight float8, rrf_k int, fusion text,
    per_source int default null, heads text[] default null)
returns table (key jsonb, chunk_seq int, chunk text, score float8, similarity float8,
               vector_rank int, keyword_rank int, chunk_score float8, lists jsonb)
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
    -- (an empty keyword query stays in its place as null: a list's place is its name in ``lists``)
    tqs := case when mode = 'vector' then null
                else array(select case when numnode(t) > 0 then t end from unnest(tqs) t) end;
    qvs := array(select v from unnest(qvs) v where v is not null);
    heads := case when mode = 'vector' then '{}' else coalesce(heads, '{}') end;
    lists := case when mode = 'keyword' then 0 else cardinality(qvs) end
             + coalesce((select count(*) from unnest(tqs) t where t is not null), 0)::int
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
        perform ai_internal._check_filter(_search_run.source, filter);
        -- a SQL condition on the source table's columns, written by the caller and run with their rights
        where_filter := format(' and (%s) in (select %s from %s s where %s)',
                               _search_run.key_cols, _search_run.source_key_cols, _search_run.source, filter);
    end if;
    -- pgvector 0.8: keep scanning the HNSW index until k rows pass the filter
    perform set_config('hnsw.iterative_scan', 'relaxed_order', true);
    -- ef_search grows with the table: 40 up to 10k chunks, ~160 at 100k, ~630 at 1M (the index alone
    -- found 0.93 of the exact ten at 10k with 40, 0.77 at 100k, where 160 found 0.95, and 0.30 at 1M:
    -- docs/experiments/scale-curves.md); never under the candidates asked for; at most 1000
    perform set_config('hnsw.ef_search', least(1000, greatest(40, n, ceil(40 * power(greatest(0,
        (select c.reltuples from pg_class c where c.oid = to_regclass(_search_run.store))) / 10000.0, 0.6))))::int::text,
        true);
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
                                    from %2$s c where q.tq is not null and c.fts @@ q.tq %4$s
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
    -- What a reader sees matches the order: score is what ordered the row (the document's fused
    -- score under document fusion, the same for its chunks), chunk_score the chunk's own (its fused
    -- score, or its list's score when one list ran), vector_rank / keyword_rank and lists the ranks
    -- that made the score (the document's rank in each list under document fusion, else the
    -- chunk's), lists by name with each list's own score of the row's best chunk there.
    -- (each row's lists are built for the k rows returned only, after the limit: building them for
    -- every candidate cost English keyword search 10%; bench/bench_versions.py)
    return query execute format('
        with lists as (select case when a.list = 1 then ''vector'' when a.list = 2 then ''expansion''
                                   when a.list = -1 then ''keyword'' when a.list = -2 then ''expansion_keywords''
                                   when a.list = -1000 then ''headings'' else a.list::text end as name, a.*
                       from (%s union all %s union all (%s)) a),
             hits as (
                 select l.key, l.chunk_seq, min(l.chunk) as chunk, max(l.sim) as sim, max(l.raw) as raw,
                        min(l.r) filter (where l.is_vector) as vr, min(l.r) filter (where not l.is_vector) as wr,
                        sum(case when l.is_vector then $5 else $6 end / ($7 + l.r)) as chunk_score
                 from lists l group by l.key, l.chunk_seq),
             doc_lists as (
                 select l.key, l.name, bool_or(l.is_vector) as is_vector, max(l.raw) as raw,
                        rank() over (partition by l.list order by min(l.r)) as dr
                 from lists l group by l.list, l.name, l.key),
             doc_scores as (
                 select d.key, sum(case when d.is_vector then $5 else $6 end / ($7 + d.dr)) as doc_score,
                        min(d.dr) filter (where d.is_vector) as dvr, min(d.dr) filter (where not d.is_vector) as dwr
                 from doc_lists d group by d.key),
             top as (
                 select h.key, h.chunk_seq, h.chunk,
                        case when $9 = 1 then h.raw when $8 = ''document'' then d.doc_score else h.chunk_score end as score,
                        h.sim,
                        (case when $8 = ''document'' then d.dvr else h.vr end)::int as vr,
                        (case when $8 = ''document'' then d.dwr else h.wr end)::int as wr,
                        case when $9 = 1 then h.raw else h.chunk_score end as chunk_score,
                        h.chunk_score as fused, h.raw
                 from (select x.*, row_number() over (partition by x.key order by x.chunk_score desc, x.raw desc nulls last) as nth
                       from hits x) h
                 join doc_scores d on d.key = h.key
                 where $10 is null or h.nth <= $10
                 order by score desc, h.chunk_score desc, h.raw desc nulls last
                 limit $4)
        select t.key, t.chunk_seq, t.chunk, t.score, t.sim, t.vr, t.wr, t.chunk_score,
               case when $8 = ''document''
                    then (select jsonb_object_agg(d.name, jsonb_build_object(''rank'', d.dr, ''score'', d.raw))
                          from doc_lists d where d.key = t.key)
                    else (select jsonb_object_agg(l.name, jsonb_build_object(''rank'', l.r, ''score'', l.raw))
                          from lists l where l.key = t.key and l.chunk_seq = t.chunk_seq) end
        from top t
        order by t.score desc, t.fused desc, t.raw desc nulls last', vector_sql, keyword_sql, heading_sql)
        using case when mode = 'keyword' then null else qvs end, tqs, n, k, vector_weight, keyword_weight,
              rrf_k::float8, fusion, lists, per_source, heads;
end $$;
grant execute on function ai_internal._search_run(text, text, text, regclass, text, text, text[], tsquery[], text, integer, integer, double precision, double precision, integer, text, integer, text[]) to public;

create or replace function ai.search(
    name text, query text, k int default 10, mode text default 'hybrid', filter text default null,
    rrf_k int default 60, vector_weight float8 default 1.0, keyword_weight float8 default 1.0,
    candidates int default null, rerank text default null, keyword_query text default null,
    fusion text default 'document', expand boolean default false, chunks_per_source int default 2,
    expansion text default null)
returns table (key jsonb, chunk_seq int, chunk text, score float8, similarity float8,
               vector_rank int, keyword_rank int, chunk_score float8, lists jsonb)
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
    terms jsonb;
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
                select s.key, s.chunk_seq, s.chunk, s.similarity, s.vector_rank, s.keyword_rank, s.lists, s.pos
                from ai.search(name, query, n, mode, filter, rrf_k, vector_weight, keyword_weight, candidates,
                               keyword_query => keyword_query, fusion => fusion, expand => expand,
                               chunks_per_source => chunks_per_source, expansion => expansion) with ordinality
                     s(key, chunk_seq, chunk, score, similarity, vector_rank, keyword_rank, chunk_score, lists, pos)),
            scored as (
                select r.idx, r.score, rank() over (order by r.score desc) as rk from ai.rerank(rerank, query,
                    (select array_agg(f.chunk order by f.pos) from first f)) r)
            -- (the reranker's score orders: it is score and chunk_score; lists gains the rerank list)
            select f.key, f.chunk_seq, f.chunk, sc.score, f.similarity, f.vector_rank, f.keyword_rank, sc.score,
                   f.lists || jsonb_build_object('rerank', jsonb_build_object('rank', sc.rk, 'score', sc.score))
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
    -- what the expansion names (a keyword list) and the headings those names may be (a list of
    -- pages titled so): pgmind.rag.text reads them
    if ex is not null then
        terms := ai_internal._json_request('/pgmind/v1/rag/expansion-terms', jsonb_build_object('expansion', ex));
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
        tqs := array[ai.keyword_query(kq), ai.keyword_query(terms->>'names')];
    end if;
    return query select * from ai_internal._search_run(t.store, t.key_json, t.key_cols, t.source, t.source_key_cols,
                                                      filter, qvs, tqs, mode, n, k, vector_weight, keyword_weight,
                                                      rrf_k, fusion, chunks_per_source,
                                                      array(select h from jsonb_array_elements_text(terms->'headings') with ordinality x(h, i)
                                                            order by x.i));
end $$;
grant execute on function ai.search(text, text, integer, text, text, integer, double precision, double precision, integer, text, text, text, boolean, integer, text) to public;

