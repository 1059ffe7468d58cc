-- notify: which malware names the postmaster has already been told about (one
-- immediate notice per name, across all nodes), and the detections waiting for
-- the next digest.
create table notice_names (
  name text primary key,
  first_seen_at timestamptz not null default now()
);

create table notice_digest_items (
  id uuid primary key default gen_random_uuid(),
  name text not null,
  client_ip inet not null,
  created_at timestamptz not null default now()
);
create index notice_digest_items_created on notice_digest_items (created_at);
