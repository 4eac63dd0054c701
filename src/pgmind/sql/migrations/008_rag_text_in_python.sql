-- RAG's text rules move to the model server (pgmind.rag, issue 36): the SQL versions of the
-- prompt filling, token estimate, sentence choice and expansion parsers are dropped, and the
-- server calls of the images and RAG share one helper (ai_internal._json_request).
-- Released migrations are never edited: add a new numbered file instead.
drop function if exists ai_internal._source_text(text, text, text, jsonb, int[]);
drop function if exists ai_internal._estimate_tokens(text);
drop function if exists ai_internal._fill(text, jsonb);
drop function if exists ai_internal._expansion_headings(text);
drop function if exists ai_internal._expansion_names(text);
drop function if exists ai_internal._expansion_name_list(text);
drop function if exists ai_internal._image_request(text, jsonb, float8);
