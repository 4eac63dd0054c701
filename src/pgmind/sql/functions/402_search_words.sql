-- The words of a query as the chunks' full-text column holds them (ai.search's keyword lists and
-- the heading list read them; 400_search.sql).

-- The words of a text as the chunks' fts column stems them (320_vectorizer_registration.sql), once each.  The
-- stored generated column cannot call this without rebuilding every store, so the two expressions
-- are twins: tests/test_search_rag.py runs the column's own expression against this one.
create or replace function ai_internal._fts_words(t text) returns text[]
language sql immutable strict parallel safe set search_path = pg_catalog, pg_temp as $$
    select tsvector_to_array(to_tsvector('english'::regconfig, ai.fts_text(t)))
$$;
grant execute on function ai_internal._fts_words(text) to public;

-- The words of a question as an OR query (a question is not a conjunction of its words; ranking
-- sorts out which documents have more of them).
create or replace function ai.keyword_query(query text) returns tsquery
language sql immutable strict parallel safe set search_path = pg_catalog, pg_temp as $$
    select to_tsquery('simple', string_agg(quote_literal(w), ' | ')) from unnest(ai_internal._fts_words(query)) w
$$;
grant execute on function ai.keyword_query(text) to public;

-- All the words of a text as an AND query (null for none).
create or replace function ai_internal._all_words(t text) returns tsquery
language sql immutable strict parallel safe set search_path = pg_catalog, pg_temp as $$
    select to_tsquery('simple', string_agg(quote_literal(w), ' & ')) from unnest(ai_internal._fts_words(t)) w
$$;
grant execute on function ai_internal._all_words(text) to public;

-- A text as a regular expression that matches it literally.
create or replace function ai_internal._regex_quote(t text) returns text
language sql immutable strict parallel safe set search_path = pg_catalog, pg_temp as $$
    select regexp_replace(t, '([!$()*+.:<=>?\[\\\]^{|}-])', '\\\1', 'g')
$$;
grant execute on function ai_internal._regex_quote(text) to public;
