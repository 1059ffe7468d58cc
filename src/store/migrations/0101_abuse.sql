-- abuse reports (R6): per source IP its current report window, shared by all
-- nodes; the global hourly cap; opt-outs; the contact cache by returned range;
-- what each report job found and did; sender notices sent per day (R2).
create table abuse_sources (
  client_ip inet primary key,
  window_start timestamptz not null,
  window_end timestamptz not null,
  -- consecutive windows with detections: past the first, reports are sampled
  streak integer not null default 1,
  detections integer not null,
  last_seen timestamptz not null,
  decision text not null default 'pending',
  job_id uuid
);

create table abuse_hours (
  hour timestamptz primary key,
  reports integer not null
);

create table abuse_optouts (
  contact text primary key,
  at timestamptz not null default now(),
  note text not null default ''
);

create table abuse_contacts (
  id uuid primary key default gen_random_uuid(),
  source text not null,
  range cidr not null,
  contact text,
  detail text not null,
  fetched_at timestamptz not null default now(),
  expires_at timestamptz not null
);
create index abuse_contacts_range on abuse_contacts using gist (range inet_ops);

create table abuse_reports (
  job_id uuid primary key,
  client_ip inet not null,
  window_start timestamptz not null,
  outcome text not null,
  contact text,
  source text,
  steps jsonb not null,
  at timestamptz not null default now()
);
create index abuse_reports_ip on abuse_reports (client_ip, at);

create table sender_notices (
  sender text not null,
  day date not null,
  primary key (sender, day)
);
