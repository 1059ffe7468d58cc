-- backscatter: the one record a bounce or notice may leave (classification and
-- verdict, peer text already cleaned), and per-organisation complaint counts so
-- that a bouncing organisation hears from us at most once per 7 days (issue 4, R7).
create table backscatter_events (
  id uuid primary key default gen_random_uuid(),
  received_at timestamptz not null default now(),
  client_ip inet not null,
  helo text not null,
  class text not null check (class in ('dsn','delay','av-notice','challenge','auto-reply','read-receipt','normal')),
  format text,
  verdict text not null check (verdict in ('ours','backscatter','unknown')),
  action text not null check (action in ('pass','refuse','quarantine','would-refuse','would-quarantine')),
  reporting_mta text,
  original_message_id text,
  virus_name text,
  reasons text[] not null default '{}'
);
create index backscatter_events_received on backscatter_events (received_at);
create index backscatter_events_client on backscatter_events (client_ip, received_at);

create table backscatter_complaints (
  organisation text primary key,
  last_sent_at timestamptz,
  bounces_seen integer not null default 0,
  complaints_sent integer not null default 0
);
