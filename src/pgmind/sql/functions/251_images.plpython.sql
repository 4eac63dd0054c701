-- SQL image helpers: the model server does the work (Pillow, the image models, OCR), so the
-- database's Python stays the standard library.  Images travel as base64 in JSON.  NULL in, NULL out.

create or replace function ai_internal._b64(img bytea) returns text
language sql immutable strict set search_path = pg_catalog, pg_temp as $$
    select translate(encode(img, 'base64'), E'\n', '')
$$;
grant execute on function ai_internal._b64(bytea) to public;

create or replace function ai.load_file(url text) returns bytea
language sql volatile set search_path = pg_catalog, pg_temp as $$
    select case when url is null then null
                else decode(ai_internal._json_request('/pgmind/v1/images/load', jsonb_build_object('url', url))->>'data',
                            'base64') end
$$;
grant execute on function ai.load_file(text) to public;
comment on function ai.load_file(text) is
    'The bytes of a file (/path, file:///path), an http(s) URL or an s3:// object under a location an administrator allowed (ai.allow_load_from).';

create or replace function ai.resize_image(img bytea, width int, height int) returns bytea
language sql volatile set search_path = pg_catalog, pg_temp as $$
    select case when img is null or width is null or height is null then null
                else decode(ai_internal._json_request('/pgmind/v1/images/resize',
                                jsonb_build_object('data', ai_internal._b64(img), 'width', width, 'height', height))->>'data',
                            'base64') end
$$;
grant execute on function ai.resize_image(bytea, integer, integer) to public;
comment on function ai.resize_image(bytea, int, int) is
    'The image resized to width × height, in its own format; 0 for one side keeps the aspect ratio.';

create or replace function ai.image_as_base64(img bytea, prefix boolean default false) returns text
language sql volatile set search_path = pg_catalog, pg_temp as $$
    select case when img is null then null
                else ai_internal._json_request('/pgmind/v1/images/base64',
                         jsonb_build_object('data', ai_internal._b64(img), 'prefix', coalesce(prefix, false)))->>'text' end
$$;
grant execute on function ai.image_as_base64(bytea, boolean) to public;
comment on function ai.image_as_base64(bytea, boolean) is
    'The image as base64; prefix => true makes a data URI (data:image/png;base64,…).';

create or replace function ai.image_info(img bytea) returns jsonb
language sql volatile set search_path = pg_catalog, pg_temp as $$
    select case when img is null then null
                else ai_internal._json_request('/pgmind/v1/images/info', jsonb_build_object('data', ai_internal._b64(img))) end
$$;
grant execute on function ai.image_info(bytea) to public;
comment on function ai.image_info(bytea) is 'format, width, height, mode, mime and bytes of an image.';

-- An image's vector from an image model (ai.models where model_type = 'image_embedding').
create or replace function ai.embed_image(model text, img bytea) returns vector
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
    v text;
begin
    if model is null or img is null then
        return null;
    end if;
    v := ai_internal._json_request('/pgmind/v1/images/embed',
             jsonb_build_object('model', model, 'images', jsonb_build_array(ai_internal._b64(img)),
                                'encoding_format', 'float'))->'data'->0->>'embedding';
    return v;     -- '[…]' text into the vector result (pgvector's input function)
end $$;
grant execute on function ai.embed_image(text, bytea) to public;
comment on function ai.embed_image(text, bytea) is 'The vector of an image from an image model, e.g. ai.embed_image(''image-features'', img).';

create or replace function ai.image_labels(model text, img bytea, k int default 5)
returns table (label text, score float8)
language sql volatile set search_path = pg_catalog, pg_temp as $$
    select l->>'label', (l->>'score')::float8
    from jsonb_array_elements(case when model is null or img is null then '[]'::jsonb
        else ai_internal._json_request('/pgmind/v1/images/labels',
                 jsonb_build_object('model', model, 'data', ai_internal._b64(img), 'k', coalesce(k, 5)))->'labels' end) l
$$;
grant execute on function ai.image_labels(text, bytea, integer) to public;
comment on function ai.image_labels(text, bytea, int) is 'What an image classifier sees in the image (ImageNet labels), with probabilities.';

create or replace function ai.image_text(img bytea) returns text
language sql volatile set search_path = pg_catalog, pg_temp as $$
    select case when img is null then null
                else ai_internal._json_request('/pgmind/v1/images/ocr', jsonb_build_object('data', ai_internal._b64(img)))->>'text' end
$$;
grant execute on function ai.image_text(bytea) to public;
comment on function ai.image_text(bytea) is 'The text in an image (OCR, Chinese and English), lines top to bottom.';
