-- Query understanding before RAG searches: translation, expansion and the topic check.  Their
-- rules (prompts, how replies are read) are pgmind.rag.query, run by the model server
-- (/pgmind/v1/rag/*) with the caller's rights: each is a logged model call of the caller's.  SQL
-- keeps what needs no model: whether a call is needed at all.

-- The language of a text, as the knowledge-base settings name it: 'zh' when it has Chinese
-- characters.  The twin of pgmind.rag.text.language (tests/test_search_rag.py checks they agree):
-- SQL decides with it whether a question needs translating before it calls anything.
create or replace function ai_internal._text_language(t text) returns text
language sql immutable strict as $$ select case when t ~ '[\u4e00-\u9fff]' then 'zh' else 'en' end $$;
grant execute on function ai_internal._text_language(text) to public;

-- A question in the knowledge base's language: the question itself, or, when the knowledge base
-- has a language ("language", set by ingest) and a translation model ("translate_model", null to
-- turn translation off) and the question is in the other language, its translation by that model.
-- ai.search embeds the translation and adds its words to the keyword query.
create or replace function ai.translate_query(name text, question text) returns text
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
begin
    if name is null or question is null then
        return question;
    end if;
    return ai_internal._translate(ai_internal._kb_settings((ai_internal._search_target(name, current_user)).config), question);
end $$;
grant execute on function ai.translate_query(text, text) to public;

-- ai.translate_query for settings already read (ai.search has them at hand).
create or replace function ai_internal._translate(settings jsonb, question text) returns text
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
begin
    if question is null or settings->>'language' is null or settings->>'translate_model' is null
       or ai_internal._text_language(question) = settings->>'language' then
        return question;
    end if;
    return ai_internal._json_request('/pgmind/v1/rag/translate',
                                     jsonb_build_object('settings', settings, 'question', question))->>'text';
end $$;
grant execute on function ai_internal._translate(jsonb, text) to public;

-- Query expansion (HyDE): a short answer the chat model writes from what it already knows, naming
-- the terms the documents would use (pgmind.rag.query.expand_request).  null when turned off.
create or replace function ai_internal._expand(settings jsonb, name text, question text) returns text
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
begin
    if question is null or settings->>'expand_model' is null then
        return null;
    end if;
    return ai_internal._json_request('/pgmind/v1/rag/expand',
                                     jsonb_build_object('settings', settings, 'name', name, 'question', question))->>'expansion';
end $$;
grant execute on function ai_internal._expand(jsonb, text, text) to public;

-- Whether a question is about the knowledge base's topic at all: the chat model's log-odds of
-- "yes" against "no" as its first token (pgmind.rag.query.topic_request).  null when the
-- knowledge base names no topic or turns the check off.
create or replace function ai_internal._topic_score(settings jsonb, question text) returns float8
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
begin
    if question is null or settings->>'topic' is null or settings->>'topic_model' is null then
        return null;
    end if;
    return (ai_internal._json_request('/pgmind/v1/rag/topic',
                                      jsonb_build_object('settings', settings, 'question', question))->>'score')::float8;
end $$;
grant execute on function ai_internal._topic_score(jsonb, text) to public;

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
grant execute on function ai.topic_score(text, text) to public;
