-- Embeddings and chat through the model server (plpython3u, standard library only), with the
-- caller's rights.

-- Embeddings for a batch of texts, in input order; NULL texts give NULL embeddings.  The vectors
-- travel as base64 float32 and come back as real[] (no text formatting or parsing of floats).
-- (dropped first: an earlier version returned vector, and create or replace cannot change that)
select ai_internal._drop_if_result_differs('ai_internal._embed_batch(text, text[], text, name, float8)', 'TABLE(idx integer, embedding real[])');
create or replace function ai_internal._embed_batch(model text, inputs text[], input_type text, caller name,
                                           timeout_s float8 default 300)
returns table (idx int, embedding real[])
language plpython3u volatile set search_path = pg_catalog, pg_temp as $py$
if 'pgmind_embed_plan' not in GD:
    GD['pgmind_embed_plan'] = plpy.prepare(
        'select ai_internal._server_request($1, $2, $3, $4) as r', ['text', 'text', 'name', 'float8'])
    plpy.execute('select ai_internal._py_client_init()')
json = GD['pgmind_json']
if inputs is None:
    return []
import array
import base64
import sys
big_endian = sys.byteorder == 'big'
todo = [(i, t) for i, t in enumerate(inputs) if t is not None]
out = [(i + 1, None) for i in range(len(inputs))]
if not todo:
    return out
# (SQL says when a text is over the model's limit, rather than embed part of it: the HTTP routes cut)
body = json.dumps({'model': model, 'input': [t for _, t in todo], 'input_type': input_type,
                   'encoding_format': 'base64', 'truncate': False}, ensure_ascii=False)
resp = json.loads(plpy.execute(GD['pgmind_embed_plan'], ['/v1/embeddings', body, caller, timeout_s])[0]['r'])
data = resp.get('data') if isinstance(resp, dict) else None
if not isinstance(data, list) or len(data) != len(todo):
    plpy.error('the model server returned %s embeddings for %d inputs'
               % (len(data) if isinstance(data, list) else 'no', len(todo)),
               hint='check the model server log', sqlstate='PM004')
for item in data:
    pos = todo[item['index']][0]
    floats = array.array('f', base64.b64decode(item['embedding']))
    if big_endian:
        floats.byteswap()   # the protocol sends little-endian float32
    out[pos] = (pos + 1, floats.tolist())
return out
$py$;
grant execute on function ai_internal._embed_batch(text, text[], text, name, double precision) to public;

-- (The real[] → vector conversions below are plpgsql assignments, which use pgvector's assignment
-- cast: the type need not be named, so it works whatever schema holds the vector extension.)
create or replace function ai.embed(model text, input text, input_type text default 'query')
returns vector language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
    e_state text;
    e_message text;
    e_detail text;
    e_hint text;
begin
    if model is null or input is null then
        return null;
    end if;
    return (select e.embedding from ai_internal._embed_batch(model, array[input], input_type, current_user) e);
exception when others then
    get stacked diagnostics e_state = returned_sqlstate, e_message = message_text,
                            e_detail = pg_exception_detail, e_hint = pg_exception_hint;
    perform ai_internal._reraise(e_state, e_message, e_detail, e_hint);
end $$;
grant execute on function ai.embed(text, text, text) to public;

-- ai.embed declared IMMUTABLE: PostgreSQL takes generated columns and expression indexes only over
-- immutable functions.  It is not truly immutable (another model, or the same id pointed at another
-- model, gives other vectors): rebuild what was computed with it after such a change (docs/sql.md).
-- (a SQL function with a SET clause is never inlined: the planner cannot see through to ai.embed)
create or replace function ai.embed_fixed(model text, input text, input_type text default 'document')
returns vector language sql immutable set search_path = pg_catalog, pg_temp as $$
    select ai.embed(model, input, input_type)
$$;
grant execute on function ai.embed_fixed(text, text, text) to public;

create or replace function ai.embed(model text, inputs text[], input_type text default 'query')
returns table (idx int, embedding vector)
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
    e record;
    e_state text;
    e_message text;
    e_detail text;
    e_hint text;
begin
    if model is null or inputs is null then
        return;
    end if;
    for e in select b.idx, b.embedding from ai_internal._embed_batch(model, inputs, input_type, current_user) b loop
        idx := e.idx;
        embedding := e.embedding;
        return next;
    end loop;
exception when others then
    get stacked diagnostics e_state = returned_sqlstate, e_message = message_text,
                            e_detail = pg_exception_detail, e_hint = pg_exception_hint;
    perform ai_internal._reraise(e_state, e_message, e_detail, e_hint);
end $$;
grant execute on function ai.embed(text, text[], text) to public;

-- Chat messages: a JSON array (one object is taken as an array of one).  What a message may hold
-- (roles, content parts, tool calls) is the model server's rule (models/validation.py check_messages).
create or replace function ai_internal._check_messages(messages jsonb) returns jsonb
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
begin
    if jsonb_typeof(messages) = 'object' then
        messages := jsonb_build_array(messages);
    end if;
    if jsonb_typeof(messages) <> 'array' or jsonb_array_length(messages) = 0 then
        raise exception 'messages must be a non-empty JSON array of {"role", "content"} objects'
            using errcode = '22023', hint = 'e.g. ''[{"role":"user","content":"hi"}]''::jsonb';
    end if;
    return messages;
end $$;
grant execute on function ai_internal._check_messages(jsonb) to public;

create or replace function ai_internal._check_options(options jsonb) returns jsonb
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
begin
    options := coalesce(options, '{}'::jsonb);
    if jsonb_typeof(options) <> 'object' then
        raise exception 'options must be a JSON object'
            using errcode = '22023', hint = 'e.g. ''{"temperature": 0.2, "max_tokens": 256}''::jsonb';
    end if;
    return options;
end $$;
grant execute on function ai_internal._check_options(jsonb) to public;

-- A chat completion: returns {"message": {...}, "finish_reason", "usage", "model"}, and "logprobs"
-- when the options ask for them ("logprobs": true, "top_logprobs": n).
create or replace function ai.chat(model text, messages jsonb, options jsonb default '{}')
returns jsonb language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    resp jsonb;
    body jsonb;
    e_state text;
    e_message text;
    e_detail text;
    e_hint text;
begin
    if model is null or messages is null then
        return null;
    end if;
    messages := ai_internal._check_messages(messages);
    options := ai_internal._check_options(options);
    -- OpenAI's request shape: options (temperature, max_tokens, seed, stop, ...) sit beside the messages
    body := (options - 'timeout') || jsonb_build_object('model', model, 'messages', messages, 'stream', false);
    resp := ai_internal._server_request('/v1/chat/completions', body::text, current_user,
                               coalesce((options->>'timeout')::float8, 300))::jsonb;
    return jsonb_build_object('message', resp->'choices'->0->'message',
                              'finish_reason', resp->'choices'->0->'finish_reason',
                              'usage', resp->'usage', 'model', resp->'model')
           -- {"content": [{token, logprob, top_logprobs}, ...]} when the options asked for logprobs
           || case when jsonb_typeof(resp->'choices'->0->'logprobs') = 'object'
                   then jsonb_build_object('logprobs', resp->'choices'->0->'logprobs') else '{}' end;
exception when others then
    get stacked diagnostics e_state = returned_sqlstate, e_message = message_text,
                            e_detail = pg_exception_detail, e_hint = pg_exception_hint;
    perform ai_internal._reraise(e_state, e_message, e_detail, e_hint);
end $$;
grant execute on function ai.chat(text, jsonb, jsonb) to public;

create or replace function ai.generate(model text, prompt text, system text default null,
                                       options jsonb default '{}')
returns text language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    messages jsonb := '[]';
begin
    if model is null or prompt is null then
        return null;
    end if;
    -- (a prompt of spaces alone, full-width ones too, asks nothing: the model would answer anything)
    if prompt !~ '[^[:space:]\u3000\u00a0\ufeff]' then
        raise exception 'the prompt is empty'
            using errcode = '22023',
                  hint = 'write the question or instruction (in any language), or pass NULL to get NULL';
    end if;
    if system is not null then
        messages := messages || jsonb_build_object('role', 'system', 'content', system);
    end if;
    messages := messages || jsonb_build_object('role', 'user', 'content', prompt);
    return ai.chat(model, messages, options)->'message'->>'content';
end $$;
grant execute on function ai.generate(text, text, text, jsonb) to public;
