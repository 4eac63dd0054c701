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
grant execute on function ai_internal._reraise(text, text, text, text) to public;

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
grant execute on function ai_internal._py_client_init() to public;

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
grant execute on function ai_internal._server_request(text, text, name, double precision) to public;
-- ai_internal._server_request stays executable by everyone: it acts only as the role that runs it,
-- and the model server checks that role's grant on the model, so calling it directly gains nothing.

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
grant execute on function ai_internal._json_request(text, jsonb, double precision) to public;

-- Where the model server listens (not a secret; the server's own token is not in the database).
create or replace function ai_internal._server_url() returns text
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
    select value from ai._settings where key = 'server_url'
$$;
grant execute on function ai_internal._server_url() to public;
