-- Training on the user's own rows: ai.finetune queues a job (a model server or `pgmind finetune`
-- runs it); ai.training_jobs shows its state, progress, loss curve and before/after metrics.
-- Which models can be trained and how is the Python side's rule (pgmind.training): here only what
-- the caller may do, and the pairs query, which runs with the caller's rights.

drop policy if exists own_jobs on ai.training_jobs;
create policy own_jobs on ai.training_jobs
    using (owner = current_user or ai_internal._is_admin(current_user));
drop policy if exists own_pairs on ai.training_pairs;
create policy own_pairs on ai.training_pairs
    using (exists (select 1 from ai.training_jobs j where j.id = job_id));
drop policy if exists own_images on ai.training_images;
create policy own_images on ai.training_images
    using (exists (select 1 from ai.training_jobs j where j.id = job_id));

create or replace function ai_internal._create_training_job(p_kind text, p_source text, p_base text, p_name text,
                                                            p_options jsonb) returns bigint
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    jid bigint;
    known text[];
    unknown text;
begin
    if not ai_internal._is_admin(ai_internal._session_role()) then
        raise exception 'only pgmind administrators train models'
            using errcode = '42501', hint = 'a trained model is registered for everyone to be granted: ask an administrator';
    end if;
    if p_name is null or p_name !~ '^[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,199}$' then
        raise exception 'invalid model name "%"', p_name
            using errcode = '22023', hint = 'a model id is 1-200 letters, digits and _ . : / @ + -';
    end if;
    if exists (select 1 from ai.model_registry where model_id = p_name)
       or exists (select 1 from ai.training_jobs where new_model = p_name and state in ('queued', 'running')) then
        raise exception 'model "%" already exists (or a job is making it)', p_name
            using errcode = '42710', hint = 'choose another name, or drop the model first';
    end if;
    if not exists (select 1 from ai.model_registry where model_id = p_base) then
        raise exception 'model "%" is not registered', p_base
            using errcode = '42704', hint = 'list the models with select * from ai.models';
    end if;
    if jsonb_typeof(coalesce(p_options, '{}')) <> 'object' then
        raise exception 'options must be a JSON object'
            using errcode = '22023', hint = 'e.g. ''{"method": "lora", "epochs": 2}''';
    end if;
    -- an option misspelt is refused now, not accepted and ignored (the runner checks the values;
    -- pgmind.training's TrainOptions and image trainer read these names: a test compares them)
    known := case p_kind
        when 'embedding' then array['batch_size', 'device', 'epochs', 'eval_fraction', 'eval_pool', 'force',
                                    'lora_alpha', 'lora_dropout', 'lora_r', 'lr', 'method', 'question_model',
                                    'questions', 'seed']
        else array['batch_size', 'captions', 'channels', 'device', 'epochs', 'force', 'image_size', 'lr',
                   'question_model', 'seed', 'translate'] end;
    select k into unknown from jsonb_object_keys(coalesce(p_options, '{}')) k
    where not k = any (known) and not (p_kind = 'image_encoder' and k = 'images') order by k limit 1;
    if unknown is not null then
        raise exception 'unknown training option "%"', unknown
            using errcode = '22023', hint = 'the options are ' || array_to_string(known, ', ');
    end if;
    insert into ai.training_jobs (kind, source, base_model, new_model, options, owner)
    values (p_kind, p_source, p_base, p_name, coalesce(p_options, '{}'), ai_internal._session_role()) returning id into jid;
    perform pg_notify('pgmind_training', jid::text);
    return jid;
end $$;
grant execute on function ai_internal._create_training_job(text, text, text, text, jsonb) to public;

create or replace function ai_internal._add_training_pairs(p_job bigint, pairs jsonb) returns int
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    n int;
begin
    perform ai_internal._check_job_owner(p_job);
    insert into ai.training_pairs (job_id, seq, question, key)
    select p_job, (row_number() over ())::int, p->>'question', p->'key' from jsonb_array_elements(pairs) p;
    get diagnostics n = row_count;
    return n;
end $$;
grant execute on function ai_internal._add_training_pairs(bigint, jsonb) to public;

create or replace function ai_internal._check_job_owner(p_job bigint) returns void
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
begin
    if not exists (select 1 from ai.training_jobs
                   where id = p_job and owner = ai_internal._session_role() and state = 'queued') then
        raise exception 'training job % is not yours, or has started', p_job using errcode = '42501',
            hint = 'add training data to a queued job of your own';
    end if;
end $$;

-- The image encoder's labelled images, copied into the job (see ai.train_image_encoder).
create or replace function ai_internal._add_training_images(p_job bigint, images bytea[], labels text[]) returns int
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    n int;
begin
    perform ai_internal._check_job_owner(p_job);
    insert into ai.training_images (job_id, seq, image, label)
    select p_job, i::int, images[i], btrim(labels[i]) from generate_subscripts(images, 1) i
    where images[i] is not null and btrim(coalesce(labels[i], '')) <> '';
    get diagnostics n = row_count;
    return n;
end $$;
grant execute on function ai_internal._add_training_images(bigint, bytea[], text[]) to public;

-- pairs: a query of yours returning (question text, key): key is the source row's key (a value,
-- or a JSON object of the key columns).  It runs with your rights and your search_path (no SET
-- clause: it is SECURITY INVOKER, so it can do nothing you could not; the names it uses itself
-- are schema-qualified).
create or replace function ai.finetune(kb text, base text default 'e5-small', name text default null,
                                       pairs text default null, options jsonb default '{}')
returns bigint language plpgsql volatile as $$
declare
    vid int;
    jid bigint;
    collected jsonb;
    n int;
begin
    vid := ai_internal._vectorizer_id(kb);
    if not ai_internal._owns_vectorizer(vid, current_user) then
        raise exception 'must own the table of vectorizer "%" to train on it', kb using errcode = '42501',
            hint = 'train on a knowledge base you own';
    end if;
    jid := ai_internal._create_training_job('embedding', kb, base, coalesce(name, base || '-' || kb), options);
    if pairs is not null then
        begin
            -- (the first two columns, whatever their names: the question and the key)
            execute pg_catalog.format('select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(''question'', x.q, ''key'', pg_catalog.to_jsonb(x.k))), ''[]'')
                            from (%s) as x(q, k)', pairs) into collected;
        exception when others then
            raise exception 'the pairs query failed: %', sqlerrm using errcode = sqlstate,
                hint = 'pairs is a query returning two columns, the question and the row''s key, e.g. select question, id from my_faq';
        end;
        n := pg_catalog.jsonb_array_length(collected);
        if n < 8 then
            raise exception 'the pairs query returned % pairs; training needs at least 8', n using errcode = '22023',
                hint = 'give more pairs, or leave pairs out and the chat model writes questions for the knowledge base';
        end if;
        perform ai_internal._add_training_pairs(jid, collected);
    end if;
    return jid;
end $$;
grant execute on function ai.finetune(text, text, text, text, jsonb) to public;

create or replace function ai.cancel_training(job_id bigint) returns boolean
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
    update ai.training_jobs j set cancel_requested = true,
           state = case when j.state = 'queued' then 'cancelled' else j.state end,
           finished_at = case when j.state = 'queued' then now() else j.finished_at end
    where j.id = job_id and j.state in ('queued', 'running')
      and (j.owner = ai_internal._session_role() or ai_internal._is_admin(ai_internal._session_role()));
    return found;
end $$;
grant execute on function ai.cancel_training(bigint) to public;

-- An image encoder taught your labels: images is a query of yours returning (image bytea, label
-- text); it runs now, with your rights, and what it returns is copied into the job (the runner,
-- pgmind's service role, never runs a query of yours).
create or replace function ai.train_image_encoder(source text, images text, text_model text default 'use-m3',
                                                  name text default null, options jsonb default '{}')
returns bigint language plpgsql volatile as $$
declare
    n bigint;
    labels bigint;
    jid bigint;
    imgs bytea[];
    lbls text[];
begin
    if images is null then
        raise exception 'images is required' using errcode = '22023',
            hint = 'a query returning (image bytea, label text), e.g. select img, label from my_photos';
    end if;
    begin
        execute pg_catalog.format('select pg_catalog.count(*), pg_catalog.count(distinct x.label)
                                   from (%s) as x(img, label) where x.img is not null and x.label is not null', images)
            into n, labels;
    exception when others then
        raise exception 'the images query failed: %', sqlerrm using errcode = sqlstate,
            hint = 'images is a query returning two columns, the image (bytea) and its label, e.g. select img, label from my_photos';
    end;
    if labels < 2 then
        raise exception 'the images have % label(s); an encoder needs at least 2', labels using errcode = '22023',
            hint = 'give labelled images of two or more kinds';
    end if;
    if n < 20 then
        raise exception 'the images query returned % labelled images; training needs at least 20', n
            using errcode = '22023', hint = 'give more images (hundreds per label train well)';
    end if;
    jid := ai_internal._create_training_job('image_encoder', source, text_model, coalesce(name, source || '-encoder'),
                                            coalesce(options, '{}') || pg_catalog.jsonb_build_object('images', images));
    execute pg_catalog.format('select pg_catalog.array_agg(x.img), pg_catalog.array_agg(x.label::text)
                               from (%s) as x(img, label) where x.img is not null and x.label is not null', images)
        into imgs, lbls;
    perform ai_internal._add_training_images(jid, imgs, lbls);
    return jid;
end $$;
grant execute on function ai.train_image_encoder(text, text, text, text, jsonb) to public;

-- A trained model, registered for its job's owner by the training runner (pgmind's service role,
-- which may not write the registry itself): a local model of the job's own name, nothing else.
create or replace function ai_internal._register_trained_model(p_job bigint, p_type text, p_name text,
                                                                p_options jsonb, p_dims int) returns void
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
    j ai.training_jobs;
begin
    select * into j from ai.training_jobs where id = p_job and state = 'running';
    if not found then
        raise exception 'training job % is not running', p_job using errcode = '55000',
            hint = 'only a running job registers its model';
    end if;
    if p_type not in ('embedding', 'image_embedding') or jsonb_typeof(p_options) <> 'object' then
        raise exception 'a trained model is an embedding model with options' using errcode = '22023';
    end if;
    insert into ai.model_registry (model_id, url, provider, model_type, model_name, options, dimensions, owner)
    values (j.new_model, ai_internal._default_url('pgmind'), 'pgmind', p_type, p_name, p_options, p_dims, j.owner);
    perform ai_internal._registry_changed(j.new_model);
end $$;
