-- Every model call the model server makes or serves: who, which model, how long, how many tokens, how it ended.
create table ai.call_log (
    id            bigint generated always as identity primary key,
    called_at     timestamptz not null default now(),
    model_id      text not null,
    provider      text,
    operation     text not null,            -- embed | chat | call
    client        text not null,            -- sql | openai-api | dashscope-api | worker | cli
    caller        name,                     -- the database role, for calls from SQL
    items         int,                      -- inputs in the request (batched embeddings)
    input_tokens  int,
    output_tokens int,
    latency_ms    double precision not null,
    status        text not null check (status in ('ok', 'error')),
    http_status   int,
    error         text,
    payload       jsonb                     -- only when the operator turned payload logging on
);
create index call_log_called_at on ai.call_log (called_at);
create index call_log_model on ai.call_log (model_id, called_at);
revoke all on ai.call_log from public;
