-- gateway core: message log, quarantine, jobs (outbox and timers), audit
create table messages (
  id uuid primary key,
  received_at timestamptz not null,
  node text not null,
  client_ip inet not null,
  client_port integer not null,
  helo text not null,
  mail_from text not null,
  rcpt_to text[] not null,
  message_id text,
  subject text,
  size integer not null,
  verdict text not null check (verdict in ('clean','infected','banned','unscannable')),
  verdict_detail text,
  action text not null,
  reply text not null,
  scan_ms real not null,
  quarantine_id uuid
);
create index messages_received_at on messages (received_at);
create index messages_client_ip on messages (client_ip, received_at);
create index messages_verdict on messages (verdict, received_at);
create index messages_message_id on messages (message_id);

create table quarantine (
  id uuid primary key,
  created_at timestamptz not null default now(),
  message_log_id uuid not null,
  client_ip inet not null,
  helo text not null,
  mail_from text not null,
  rcpt_to text[] not null,
  message_id text,
  subject text,
  verdict text not null,
  verdict_detail text,
  size integer not null,
  sha256 text not null,
  raw bytea not null,
  released_at timestamptz,
  released_by text,
  deleted_at timestamptz
);
create index quarantine_created_at on quarantine (created_at);

create table jobs (
  id uuid primary key default gen_random_uuid(),
  kind text not null,
  payload jsonb not null,
  state text not null default 'queued' check (state in ('queued','running','done','failed','cancelled','review')),
  run_at timestamptz not null default now(),
  attempts integer not null default 0,
  max_attempts integer not null default 12,
  locked_by text,
  locked_until timestamptz,
  last_error text,
  dedupe_key text unique,
  created_at timestamptz not null default now(),
  done_at timestamptz
);
create index jobs_due on jobs (run_at) where state = 'queued';

create table audit (
  id uuid primary key default gen_random_uuid(),
  at timestamptz not null default now(),
  actor text not null,
  action text not null,
  target text not null,
  detail jsonb not null default '{}'::jsonb
);
create index audit_at on audit (at);
