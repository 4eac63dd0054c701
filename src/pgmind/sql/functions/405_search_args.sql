-- The arguments of the search functions, checked before any model reads a query or any list is
-- ranked: each bad one a short error that says what is wrong and how to fix it.

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
grant execute on function ai_internal._check_query_length(text[]) to public;

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
grant execute on function ai_internal._check_search_args(text, integer) to public;

-- A caller's filter, tried on the source table alone first: a mistake in it ("nope = 1", a syntax
-- error) is reported as the filter's, with the table's columns, not as an error deep inside the
-- ranked lists' query (which was 60 lines of pgmind's SQL).  Runs with the caller's rights.
create or replace function ai_internal._check_filter(source regclass, filter text) returns void
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    f_state text;
    f_message text;
begin
    execute format('select from %s s where (%s) limit 0', source, filter);
exception when others then
    get stacked diagnostics f_state = returned_sqlstate, f_message = message_text;
    raise exception 'the filter is not a condition on %: %', source, f_message
        using errcode = f_state,
              hint = format('filter is a SQL condition on the columns of %s (%s), e.g. filter => %L', source,
                            (select string_agg(quote_ident(a.attname), ', ' order by a.attnum)
                               from pg_attribute a where a.attrelid = source and a.attnum > 0 and not a.attisdropped),
                            'lang = ''zh''');
end $$;
grant execute on function ai_internal._check_filter(regclass, text) to public;
