-- SQL functions that call models through the model server (plpython3u, standard library only).
-- Public functions run with the caller's rights; ai_internal._server_request sends the model server the
-- credential of the role it runs as, so the server acts for that role and no other.

-- PL/Python prefixes the messages of the errors it raises with the exception's type
-- ("plpy.Error: ...", "spiexceptions.X: ..."): the public functions catch them and raise them
-- again as they were meant, with SQLSTATE, message, detail and hint.
create or replace function ai_internal._reraise(state text, message text, detail text, hint text) returns void
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
begin
    message := regexp_replace(message, '^((spiexceptions|plpy)\.\w+: )+', '');
    detail := nullif(nullif(detail, 'None'), '');
    hint := nullif(nullif(hint, 'None'), '');
    if detail is null and hint is null then
        raise exception using errcode = state, message = message;
    elsif detail is null then
        raise exception using errcode = state, message = message, hint = hint;
    elsif hint is null then
        raise exception using errcode = state, message = message, detail = detail;
    end if;
    raise exception using errcode = state, message = message, detail = detail, hint = hint;
end $$;

-- The HTTP client, defined once per backend and kept in GD with its open connection.
create or replace function ai_internal._py_client_init() returns void
language plpython3u volatile set search_path = pg_catalog, pg_temp as $py$
if 'pgmind_client' in GD:
    return
import http.client
import json
import select
import socket
import time
import urllib.parse


class PgmindClient:
    """Talks to the model server over one kept-alive HTTP connection."""

    def __init__(self):
        self.conn = None
        self.token = None
        self.host = None
        self.tick = plpy.prepare('select 1')

    def _load_settings(self):
        url = plpy.execute("select ai_internal._server_url() as u")[0]['u']
        if url is None:
            plpy.error('the model server is not configured in this database',
                       hint='run `pgmind install`, which tells the database where the model server listens',
                       sqlstate='PM001')
        values = {'server_url': url}
        url = urllib.parse.urlsplit(values['server_url'])
        self.host, self.port, self.base = url.hostname, url.port or 80, url.path.rstrip('/')
        self.url = values['server_url']
        self.close()

    def close(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def request(self, path, body, token, timeout):
        """token: the calling role's own credential (ai_internal._role_token): the server acts for
        the role it belongs to, and for no other."""
        if not isinstance(timeout, (int, float)) or not (0 < timeout <= 86400):
            plpy.error('timeout must be a number of seconds between 0 and 86400, got %r' % (timeout,),
                       hint='e.g. options => \'{"timeout": 60}\'', sqlstate='22023')
        if self.host is None:
            self._load_settings()
        headers = {'Authorization': 'Bearer ' + token, 'Content-Type': 'application/json',
                   'X-Pgmind-Client': 'sql'}
        payload = body.encode('utf-8', 'surrogatepass')
        for attempt in range(3):
            reused = self.conn is not None
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=min(timeout, 10))
                    self.conn.connect()
                    # small request/response pairs: do not let Nagle hold a segment back
                    self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.conn.sock.settimeout(timeout)
                self.conn.request('POST', self.base + path, body=payload, headers=headers)
                self._wait(timeout)
                resp = self.conn.getresponse()
                data = resp.read()
            except socket.timeout:
                self.close()
                plpy.error('the model server did not answer within %g s' % timeout,
                           hint='pass a larger options {"timeout": seconds}, or check the model server',
                           sqlstate='PM003')
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                    http.client.BadStatusLine):
                # a kept-alive connection the server closed: reconnect once and send again
                self.close()
                if reused:
                    continue
                plpy.error('the model server at %s closed the connection' % self.url,
                           hint='check the model server log; start it with `pgmind serve`', sqlstate='08001')
            except OSError as e:
                self.close()
                plpy.error('cannot reach the model server at %s: %s' % (self.url, e.strerror or e),
                           hint='start it with `pgmind serve`', sqlstate='08001')
            except BaseException:
                # cancelled (statement_timeout, pg_cancel_backend) or anything unforeseen: drop the
                # connection, so the server stops working for us and nothing half-read is reused
                self.close()
                raise
            if resp.status >= 400:
                self._raise(resp.status, data)
            return data.decode('utf-8')
        plpy.error('the model server at %s keeps closing the connection' % self.url,
                   hint='check the model server log', sqlstate='08001')

    def _wait(self, timeout):
        """Waits for the answer in short slices, running a trivial statement between them: that is
        where PostgreSQL delivers statement_timeout and pg_cancel_backend, so a cancelled call stops
        waiting at once (and closing the connection tells the server to stop generating)."""
        deadline = time.monotonic() + timeout
        while True:
            ready, _, _ = select.select([self.conn.sock], [], [], 0.2)
            if ready:
                return
            plpy.execute(self.tick)
            if time.monotonic() > deadline:
                raise socket.timeout()

    def _raise(self, status, data):
        try:
            err = json.loads(data)['error']
            if not isinstance(err, dict):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            plpy.error('the model server answered HTTP %d: %s' % (status, data[:300].decode('utf-8', 'replace')),
                       hint='check the model server log', sqlstate='PM002')
        extra = {k: str(err[k]) for k in ('detail', 'hint') if err.get(k)}
        plpy.error(str(err.get('message') or 'model server error'), sqlstate=str(err.get('sqlstate') or 'PM002'),
                   **extra)


GD['pgmind_client'] = PgmindClient()
GD['pgmind_json'] = json
$py$;

-- The one way from SQL to the model server.  SECURITY INVOKER: it sends the token of the role it
-- runs as (current_user, which no code can forge: a role reads only its own token), so the server
-- acts for that role.  ``caller`` must be that role (the public functions pass current_user).
-- (create or replace, never drop: calls in flight in other sessions hold it)
create or replace function ai_internal._server_request(path text, body text, caller name, timeout_s float8 default 300)
returns text language plpython3u volatile set search_path = pg_catalog, pg_temp as $py$
if 'pgmind_token_plan' not in GD:
    GD['pgmind_token_plan'] = plpy.prepare('select current_user as me, ai_internal._role_token() as t')
    plpy.execute('select ai_internal._py_client_init()')
row = plpy.execute(GD['pgmind_token_plan'])[0]
if caller != row['me']:
    plpy.error('role %s cannot act as role %s' % (row['me'], caller), sqlstate='42501',
               hint='call the ai.* functions, not the internal ai._* ones')
token = row['t']
if token is None:
    # a role made since the last install: its token is made now (not possible in a read-only
    # transaction, whose error says so)
    try:
        with plpy.subtransaction():
            plpy.execute('select ai_internal._issue_role_tokens()')
    except plpy.SPIError as e:
        plpy.error('role %s has no model server credential yet' % row['me'], sqlstate='55000',
                   hint='make one model call outside a read-only transaction, or re-run `pgmind install`')
    token = plpy.execute(GD['pgmind_token_plan'])[0]['t']
return GD['pgmind_client'].request(path, body, token, 300 if timeout_s is None else timeout_s)
$py$;

-- A JSON request to one of the model server's own routes (images, RAG's text rules), as the
-- caller; its errors as SQL errors without PL/Python's prefixes.
create or replace function ai_internal._json_request(path text, body jsonb, timeout_s float8 default 300)
returns jsonb language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    e_state text;
    e_message text;
    e_detail text;
    e_hint text;
begin
    return ai_internal._server_request(path, body::text, current_user, timeout_s)::jsonb;
exception when others then
    get stacked diagnostics e_state = returned_sqlstate, e_message = message_text,
                            e_detail = pg_exception_detail, e_hint = pg_exception_hint;
    perform ai_internal._reraise(e_state, e_message, e_detail, e_hint);
end $$;

-- Where the model server listens (not a secret; the server's own token is not in the database).
create or replace function ai_internal._server_url() returns text
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select value from ai._settings where key = 'server_url'
$$;

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

-- ai.embed declared IMMUTABLE: PostgreSQL takes generated columns and expression indexes only over
-- immutable functions.  It is not truly immutable (another model, or the same id pointed at another
-- model, gives other vectors): rebuild what was computed with it after such a change (docs/sql.md).
-- (a SQL function with a SET clause is never inlined: the planner cannot see through to ai.embed)
create or replace function ai.embed_fixed(model text, input text, input_type text default 'document')
returns vector language sql immutable set search_path = pg_catalog, pg_temp as $$
    select ai.embed(model, input, input_type)
$$;

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

-- Chat messages: a JSON array (one object is taken as an array of one).  What a message may hold
-- (roles, content parts, tool calls) is the model server's rule (models/base.py check_messages).
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

create or replace function ai.generate(model text, prompt text, system text default null,
                                       options jsonb default '{}')
returns text language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    messages jsonb := '[]';
begin
    if model is null or prompt is null then
        return null;
    end if;
    if system is not null then
        messages := messages || jsonb_build_object('role', 'system', 'content', system);
    end if;
    messages := messages || jsonb_build_object('role', 'user', 'content', prompt);
    return ai.chat(model, messages, options)->'message'->>'content';
end $$;

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

-- (no SET search_path here: these pass on the caller's; every name in them is qualified)
create or replace function ai.call_model(model text, input text) returns jsonb
language sql volatile as $$
    select case when model is null or input is null then null
                else ai_internal._call_model(model, pg_catalog.to_jsonb(input), true, input,
                                             pg_catalog.current_setting('search_path')) end
$$;

create or replace function ai.call_model(model text, input jsonb) returns jsonb
language sql volatile as $$
    select case when model is null or input is null then null
                else ai_internal._call_model(model, input, false, input::text,
                                             pg_catalog.current_setting('search_path')) end
$$;

-- ai_internal._server_request stays executable by everyone: it acts only as the role that runs it,
-- and the model server checks that role's grant on the model, so calling it directly gains nothing.

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
