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
grant execute on function ai_internal._require_image_kb(text, jsonb) to public;

-- (two columns were added to the result, chunk_score and lists, with ai.search's: older shapes dropped)
select ai_internal._drop_if_result_differs('ai.search_images(text, text, int, text, text)',
    'TABLE(key jsonb, chunk_seq integer, chunk text, score double precision, similarity double precision, vector_rank integer, keyword_rank integer, chunk_score double precision, lists jsonb)');
select ai_internal._drop_if_result_differs('ai.search_images(text, bytea, int, text)',
    'TABLE(key jsonb, chunk_seq integer, chunk text, score double precision, similarity double precision, vector_rank integer, keyword_rank integer, chunk_score double precision, lists jsonb)');
create or replace function ai.search_images(name text, query text, k int default 10, filter text default null,
                                            mode text default 'hybrid')
returns table (key jsonb, chunk_seq int, chunk text, score float8, similarity float8,
               vector_rank int, keyword_rank int, chunk_score float8, lists jsonb)
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
    found := ai_internal._json_request('/pgmind/v1/images/query',
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
grant execute on function ai.search_images(text, text, integer, text, text) to public;

create or replace function ai.search_images(name text, image bytea, k int default 10, filter text default null)
returns table (key jsonb, chunk_seq int, chunk text, score float8, similarity float8,
               vector_rank int, keyword_rank int, chunk_score float8, lists jsonb)
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
grant execute on function ai.search_images(text, bytea, integer, text) to public;
