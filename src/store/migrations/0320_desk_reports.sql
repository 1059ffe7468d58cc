-- abuse desk intake (R8): every report that reached the desk — by a per-IP
-- alias, the abuse@ mailbox or the public form — with what it said and what
-- became of it. Unattributed rows are the desk's queue (reason says why).
-- customer_id / incident_id are the attribution's and incidents' ids (text:
-- no foreign key, so this table does not depend on their migrations' order).
create table if not exists desk_reports (
  id uuid primary key default gen_random_uuid(),
  received_at timestamptz not null default now(),
  via text not null check (via in ('alias', 'abuse', 'form')),
  -- Who sent it (envelope sender or form client address): for the desk's eyes only, never forwarded.
  reporter text not null default '',
  ip inet,
  port integer check (port is null or (port between 1 and 65535)),
  observed_at timestamptz,
  time_source text not null default 'none',
  zoneless boolean not null default false,
  kind text not null check (kind in ('arf', 'x-arf', 'free-text', 'form')),
  feedback_type text,
  summary text not null default '',
  headers text,
  malware text[] not null default '{}',
  state text not null check (state in ('attributed', 'unattributed', 'forwarded')),
  reason text,
  customer_id text,
  incident_id text
);
create index if not exists desk_reports_queue on desk_reports (received_at) where state = 'unattributed';
create index if not exists desk_reports_ip on desk_reports (ip, observed_at);

-- public report form: submissions per client address and clock window, shared by all nodes.
create table if not exists desk_form_throttle (
  client text not null,
  window_start timestamptz not null,
  hits integer not null default 0,
  primary key (client, window_start)
);
