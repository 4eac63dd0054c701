-- PolarDB POLAR_AI's names, as thin aliases, so its tutorials run with only URLs, paths and tokens
-- changed.  Each is one call of the ai function that does the work (and has its rights and checks).
-- No SET search_path: ai_callmodel passes the caller's on to the transform functions it runs.
create schema if not exists polar_ai;
grant usage on schema polar_ai to public;

create or replace function polar_ai.ai_createmodel(model_id text, model_url text, model_provider text, model_type text,
                                                   model_name text, model_config jsonb default '{}',
                                                   model_headers_fn regproc default null,
                                                   model_in_transform_fn regproc default null,
                                                   model_out_transform_fn regproc default null)
returns void language sql volatile as $$
    select ai.create_model(model_id, model_url, model_provider, model_type, model_name, model_config,
                           model_headers_fn, model_in_transform_fn, model_out_transform_fn)
$$;
grant execute on function polar_ai.ai_createmodel(text, text, text, text, text, jsonb, regproc, regproc, regproc) to public;

create or replace function polar_ai.ai_callmodel(model_id text, input text) returns jsonb
language sql volatile as $$ select ai.call_model(model_id, input) $$;
grant execute on function polar_ai.ai_callmodel(text, text) to public;

create or replace function polar_ai.ai_callmodel(model_id text, input jsonb) returns jsonb
language sql volatile as $$ select ai.call_model(model_id, input) $$;
grant execute on function polar_ai.ai_callmodel(text, jsonb) to public;

create or replace function polar_ai.ai_dropmodel(model_id text) returns void
language sql volatile as $$ select ai.drop_model(model_id) $$;
grant execute on function polar_ai.ai_dropmodel(text) to public;

create or replace function polar_ai.ai_loadfile(url text) returns bytea
language sql volatile as $$ select ai.load_file(url) $$;
grant execute on function polar_ai.ai_loadfile(text) to public;

create or replace function polar_ai.ai_resizeimage(img bytea, width int, height int) returns bytea
language sql volatile as $$ select ai.resize_image(img, width, height) $$;
grant execute on function polar_ai.ai_resizeimage(bytea, integer, integer) to public;

create or replace function polar_ai.ai_imageasbase64(img bytea, with_prefix boolean default false) returns text
language sql volatile as $$ select ai.image_as_base64(img, with_prefix) $$;
grant execute on function polar_ai.ai_imageasbase64(bytea, boolean) to public;

-- the tutorial calls them unqualified: they also live in public (where the tutorial's own functions go)
create or replace function public.ai_loadfile(url text) returns bytea
language sql volatile as $$ select ai.load_file(url) $$;
grant execute on function public.ai_loadfile(text) to public;
create or replace function public.ai_resizeimage(img bytea, width int, height int) returns bytea
language sql volatile as $$ select ai.resize_image(img, width, height) $$;
grant execute on function public.ai_resizeimage(bytea, integer, integer) to public;
create or replace function public.ai_imageasbase64(img bytea, with_prefix boolean default false) returns text
language sql volatile as $$ select ai.image_as_base64(img, with_prefix) $$;
grant execute on function public.ai_imageasbase64(bytea, boolean) to public;
