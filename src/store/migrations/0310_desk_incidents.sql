-- abuse desk incidents (R9, RFC 6561): one incident per infected line, its
-- history and its evidence. customer_id is the customers table's id (text,
-- no foreign key: this migration does not depend on 0300's order).
create table if not exists incidents (
  id uuid primary key default gen_random_uuid(),
  customer_id text not null,
  state text not null check (state in ('suspected', 'notified', 'restricted', 'attested', 'probation', 'closed', 'evidence-hold')),
  -- evidence-hold remembers where it came from, so the desk's unhold goes back there.
  held_from text,
  opened_at timestamptz not null,
  state_since timestamptz not null,
  grace_until timestamptz,
  probation_until timestamptz,
  restriction_level text check (restriction_level is null or restriction_level in ('port25-block', 'smarthost', 'walled-garden')),
  self_releases_left integer not null default 2 check (self_releases_left >= 0),
  recurrences integer not null default 0,
  contact_snapshot jsonb not null default '{}',
  portal_token_hash text,
  portal_token_expires timestamptz,
  closed_at timestamptz
);
-- At most one open incident per customer: new evidence joins it.
create unique index if not exists incidents_one_open on incidents (customer_id) where state <> 'closed';
create index if not exists incidents_state on incidents (state, state_since);
create unique index if not exists incidents_portal_token on incidents (portal_token_hash) where portal_token_hash is not null;

create table if not exists incident_events (
  id bigserial primary key,
  incident_id uuid not null references incidents (id),
  at timestamptz not null,
  kind text not null,
  actor text not null,
  from_state text,
  to_state text,
  detail jsonb not null default '{}'
);
create index if not exists incident_events_incident on incident_events (incident_id, id);

create table if not exists incident_evidence (
  id bigserial primary key,
  incident_id uuid not null references incidents (id),
  at timestamptz not null,
  source text not null check (source in ('gateway', 'alias', 'form', 'arf')),
  ip inet not null,
  observed_at timestamptz not null,
  summary text not null default '',
  headers text,
  malware text[] not null default '{}'
);
create index if not exists incident_evidence_incident on incident_evidence (incident_id, observed_at);

-- the last restricted set published (enforcement outputs): a change is detected against it on every node.
create table if not exists desk_enforcement (
  id integer primary key check (id = 1),
  digest text not null,
  addresses text[] not null default '{}',
  published_at timestamptz not null
);
