-- Registry-shaped model calls (ai.call_model: the model's own input and output functions) and
-- reranking, through the model server (plpython3u, standard library only).

-- call_model: the model's input function builds the request, the model server sends it (adding the
-- secret), the output function reads the answer.  The transform functions run with the caller's rights.
-- (caller_path: the caller's search_path, under which their transform functions run, as they would
-- if they called them themselves: POLAR_AI's tutorial calls ai_loadfile unqualified in one)
drop function if exists ai_internal._call_model(text, jsonb, boolean, text);
create or replace function ai_internal._call_model(model text, input jsonb, input_is_text boolean, raw_input text,
                                                   caller_path text)
returns jsonb language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    m record;
    request jsonb;
    headers jsonb := '{}';
    response jsonb;
    result jsonb;
    arg_type regtype;
    e_state text;
    e_message text;
    e_detail text;
    e_hint text;
begin
    select * into m from ai_internal._model_for_call(model, current_user);
    perform set_config('search_path', coalesce(caller_path, 'pg_catalog, pg_temp'), true);
    if m.in_fn is not null then
        select proargtypes[1]::regtype into arg_type from pg_proc where oid = m.in_fn;
        if arg_type = 'text'::regtype then
            execute format('select pg_catalog.to_jsonb(%s($1, $2))', m.in_fn) into request using model, raw_input;
        else
            execute format('select pg_catalog.to_jsonb(%s($1, $2::%s))', m.in_fn, arg_type) into request using model, input;
        end if;
    else
        request := case when input_is_text then jsonb_build_object('input', raw_input) else input end;
    end if;
    if m.header_fn is not null then
        select proargtypes[1]::regtype into arg_type from pg_proc where oid = m.header_fn;
        if arg_type = 'text'::regtype then
            execute format('select pg_catalog.to_jsonb(%s($1, $2))', m.header_fn) into headers using model, raw_input;
        else
            execute format('select pg_catalog.to_jsonb(%s($1, $2::%s))', m.header_fn, arg_type) into headers using model, input;
        end if;
        if jsonb_typeof(headers) is distinct from 'object' then
            raise exception 'header function % returned %, not a JSON object', m.header_fn, jsonb_typeof(headers)
                using errcode = '22023', hint = 'make it return jsonb like {"X-Header": "value"}';
        end if;
    end if;
    perform set_config('search_path', 'pg_catalog, pg_temp', true);
    response := ai_internal._server_request('/pgmind/v1/call',
        jsonb_build_object('model', model, 'body', request, 'headers', headers)::text, current_user,
        coalesce((m.options->>'timeout')::float8, 300))::jsonb;
    if m.out_fn is null then
        return response;
    end if;
    perform set_config('search_path', coalesce(caller_path, 'pg_catalog, pg_temp'), true);
    select proargtypes[1]::regtype into arg_type from pg_proc where oid = m.out_fn;
    execute format('select pg_catalog.to_jsonb(%s($1, $2::%s))', m.out_fn, arg_type) into result using model, response;
    return result;
exception when others then
    get stacked diagnostics e_state = returned_sqlstate, e_message = message_text,
                            e_detail = pg_exception_detail, e_hint = pg_exception_hint;
    perform ai_internal._reraise(e_state, e_message, e_detail, e_hint);
end $$;
grant execute on function ai_internal._call_model(text, jsonb, boolean, text, text) to public;

-- (no SET search_path here: these pass on the caller's; every name in them is qualified)
create or replace function ai.call_model(model text, input text) returns jsonb
language sql volatile as $$
    select case when model is null or input is null then null
                else ai_internal._call_model(model, pg_catalog.to_jsonb(input), true, input,
                                             pg_catalog.current_setting('search_path')) end
$$;
grant execute on function ai.call_model(text, text) to public;

create or replace function ai.call_model(model text, input jsonb) returns jsonb
language sql volatile as $$
    select case when model is null or input is null then null
                else ai_internal._call_model(model, input, false, input::text,
                                             pg_catalog.current_setting('search_path')) end
$$;
grant execute on function ai.call_model(text, jsonb) to public;

-- Relevance scores of documents for a query, from a rerank model (cross-encoder), in document order.
create or replace function ai_internal._rerank(model text, query text, documents text[])
returns table (idx int, score float8)
language plpython3u volatile set search_path = pg_catalog, pg_temp as $py$
if model is None or query is None or documents is None:
    return []
if 'pgmind_rerank_plan' not in GD:
    GD['pgmind_rerank_plan'] = plpy.prepare(
        'select ai_internal._server_request($1, $2, current_user, 300) as r', ['text', 'text'])
    plpy.execute('select ai_internal._py_client_init()')
json = GD['pgmind_json']
todo = [(i, d) for i, d in enumerate(documents) if d is not None]
if not todo:
    return []
resp = json.loads(plpy.execute(GD['pgmind_rerank_plan'], ['/v1/rerank', json.dumps(
    {'model': model, 'query': query, 'documents': [d for _, d in todo]}, ensure_ascii=False)])[0]['r'])
return [(todo[r['index']][0] + 1, r['relevance_score']) for r in resp['results']]
$py$;
grant execute on function ai_internal._rerank(text, text, text[]) to public;

create or replace function ai.rerank(model text, query text, documents text[])
returns table (idx int, score float8)
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    e_state text;
    e_message text;
    e_detail text;
    e_hint text;
begin
    return query select r.idx, r.score from ai_internal._rerank(model, query, documents) r;
exception when others then
    get stacked diagnostics e_state = returned_sqlstate, e_message = message_text,
                            e_detail = pg_exception_detail, e_hint = pg_exception_hint;
    perform ai_internal._reraise(e_state, e_message, e_detail, e_hint);
end $$;
grant execute on function ai.rerank(text, text, text[]) to public;
