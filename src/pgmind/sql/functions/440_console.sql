-- Answer feedback (ai.feedback, migration 010): a role records feedback as itself, naming a
-- knowledge base it may search (the id must be that name's); the writer reads its own rows, the
-- knowledge base's owner (members of its role) and administrators read and delete every row about it.
alter table ai.feedback enable row level security;
drop policy if exists feedback_insert on ai.feedback;
-- (only on a knowledge base the role may search: _search_target raises 42501 for anyone else, so
-- nobody can fill another owner's feedback with rows about what they cannot see)
create policy feedback_insert on ai.feedback for insert
    with check (created_by = current_user
                and vectorizer_id = (select t.vid from ai_internal._search_target(vectorizer, current_user) t));
drop policy if exists feedback_select on ai.feedback;
create policy feedback_select on ai.feedback for select
    using (created_by = current_user or ai_internal._owns_vectorizer(vectorizer_id, current_user));
drop policy if exists feedback_delete on ai.feedback;
create policy feedback_delete on ai.feedback for delete
    using (ai_internal._owns_vectorizer(vectorizer_id, current_user));
grant select, insert, delete on ai.feedback to public;
grant usage on sequence ai.feedback_id_seq to public;

-- One page of a vectorizer's queue ('pending') or quarantine ('quarantined') for the web console, in
-- the primary key's order after the cursor (version, key).  Security definer: the row security of
-- those tables calls ai_internal._owns_vectorizer once per row, which made a page of a long queue
-- cost a call per queued row; here the caller's right is checked once (the same rule: the table's
-- owner, a member of its role, or an administrator) and the page is an index range scan.
select ai_internal._drop_if_result_differs('ai_internal._queue_page(int, text, int, jsonb, int)', 'TABLE(key jsonb, version integer, at timestamp with time zone, attempts integer, leased boolean, error text, sqlstate text)');
create or replace function ai_internal._queue_page(vid int, state text, after_version int, after_key jsonb, n int)
returns table (key jsonb, version int, at timestamptz, attempts int, leased boolean, error text, sqlstate text)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
begin
    if not ai_internal._owns_vectorizer(vid, ai_internal._session_role()) then
        raise exception 'permission denied for the queue of this vectorizer'
            using errcode = '42501', hint = 'its source table''s owner and pgmind administrators may see it';
    end if;
    n := least(greatest(coalesce(n, 50), 1), 1000);
    if state = 'pending' then
        return query select q.key, q.version, q.queued_at, q.attempts, coalesce(q.lease_until >= now(), false),
                            q.last_error, null::text
                     from ai.vectorizer_queue q
                     where q.vectorizer_id = vid
                       and (after_version is null or (q.version, q.key) > (after_version, after_key))
                     order by q.version, q.key limit n;
    elsif state = 'quarantined' then
        return query select e.key, e.version, e.failed_at, e.attempts, false, e.error, e.sqlstate
                     from ai._vectorizer_errors e
                     where e.vectorizer_id = vid
                       and (after_version is null or (e.version, e.key) > (after_version, after_key))
                     order by e.version, e.key limit n;
    else
        raise exception 'unknown state "%"', state using errcode = '22023', hint = 'pending or quarantined';
    end if;
end $$;
grant execute on function ai_internal._queue_page(integer, text, integer, jsonb, integer) to public;

-- The model call log for pgmind administrators in the web console.  ai.call_log stays readable by the
-- service role only (its payloads can hold users' text); these definer functions check that the
-- session's role is an administrator first (42501 for anyone else, even where a grant was changed
-- by hand), then return one page of calls without the payload, newest first after the cursor (the
-- id of the page's last row), or per-minute aggregates of the last hour(s).
select ai_internal._drop_if_result_differs('ai_internal._call_log_page(text, text, name, boolean, timestamptz, timestamptz, bigint, int)', 'TABLE(id bigint, called_at timestamp with time zone, model_id text, provider text, operation text, client text, caller name, items integer, input_tokens integer, output_tokens integer, latency_ms double precision, status text, http_status integer, error text)');
create or replace function ai_internal._call_log_page(p_model text, p_operation text, p_caller name,
                                                      p_errors_only boolean, p_since timestamptz,
                                                      p_until timestamptz, p_before bigint, n int)
returns table (id bigint, called_at timestamptz, model_id text, provider text, operation text, client text,
               caller name, items int, input_tokens int, output_tokens int, latency_ms float8, status text,
               http_status int, error text)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
begin
    perform ai_internal._require_admin('may read the model call log');
    return query
        select c.id, c.called_at, c.model_id, c.provider, c.operation, c.client, c.caller, c.items,
               c.input_tokens, c.output_tokens, c.latency_ms, c.status, c.http_status, c.error
        from ai.call_log c
        where (p_model is null or c.model_id = p_model)
          and (p_operation is null or c.operation = p_operation)
          and (p_caller is null or c.caller = p_caller)
          and (not coalesce(p_errors_only, false) or c.status = 'error')
          and (p_since is null or c.called_at >= p_since)
          and (p_until is null or c.called_at < p_until)
          and (p_before is null or c.id < p_before)
        order by c.id desc
        limit least(greatest(coalesce(n, 50), 1), 500);
end $$;
grant execute on function ai_internal._call_log_page(text, text, name, boolean, timestamptz, timestamptz, bigint, integer) to pgmind_admin;

select ai_internal._drop_if_result_differs('ai_internal._call_log_minutes(text, text, name, int)', 'TABLE(minute timestamp with time zone, calls bigint, errors bigint, p50_ms double precision, p95_ms double precision)');
create or replace function ai_internal._call_log_minutes(p_model text, p_operation text, p_caller name, minutes int)
returns table (minute timestamptz, calls bigint, errors bigint, p50_ms float8, p95_ms float8)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
begin
    perform ai_internal._require_admin('may read the model call log');
    minutes := least(greatest(coalesce(minutes, 60), 1), 1440);
    return query
        select date_trunc('minute', c.called_at), count(*), count(*) filter (where c.status = 'error'),
               percentile_cont(0.5) within group (order by c.latency_ms),
               percentile_cont(0.95) within group (order by c.latency_ms)
        from ai.call_log c
        where c.called_at >= now() - make_interval(mins => minutes)
          and (p_model is null or c.model_id = p_model)
          and (p_operation is null or c.operation = p_operation)
          and (p_caller is null or c.caller = p_caller)
        group by 1 order by 1;
end $$;
grant execute on function ai_internal._call_log_minutes(text, text, name, integer) to pgmind_admin;

-- Rows and chunks written per minute by each vectorizer (all its versions) over the last minutes,
-- for the health page of the web console, administrators only: ai.vectorizer_progress is internal
-- (revoked from public); this checks the session's role first (42501 for anyone else) and returns
-- the per-minute sums, nothing else.
select ai_internal._drop_if_result_differs('ai_internal._throughput_minutes(int)', 'TABLE(vectorizer text, minute timestamp with time zone, rows bigint, chunks bigint)');
create or replace function ai_internal._throughput_minutes(minutes int)
returns table (vectorizer text, minute timestamptz, rows bigint, chunks bigint)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
begin
    perform ai_internal._require_admin('may read the vectorizers'' throughput');
    minutes := least(greatest(coalesce(minutes, 60), 1), 1440);
    return query
        select v.name::text, date_trunc('minute', p.at), sum(p.rows)::bigint, sum(p.chunks)::bigint
        from ai.vectorizer_progress p join ai.vectorizers v on v.id = p.vectorizer_id
        where p.at >= now() - make_interval(mins => minutes)
        group by 1, 2 order by 1, 2;
end $$;
grant execute on function ai_internal._throughput_minutes(integer) to pgmind_admin;
