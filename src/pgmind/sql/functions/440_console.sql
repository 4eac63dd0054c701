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
