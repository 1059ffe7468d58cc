-- abuse desk, who held an address (R8): customers and the line identifiers
-- the network knows them by, static assignments, dynamic leases and CGNAT
-- port blocks, each stored overlap-free by an exclusion constraint (GiST;
-- btree_gist supplies `=` on inet/text for the mixed indexes, PGlite loads it).
-- The same GiST indexes serve attribution's `ip = $1 and valid && $2`.
-- See desk/attribute.ts, desk/leases.ts, desk/customers.ts.
create extension if not exists btree_gist;

create table if not exists customers (
  id text primary key,
  name text not null,
  email text,
  phone text,
  language text not null default 'en',
  time_zone text not null default 'UTC',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

-- How a lease names its customer: RADIUS User-Name, DHCP MAC (lower-case,
-- colon form) or relay-agent circuit-id, subscriber id. One line, one customer.
create table if not exists customer_lines (
  customer_id text not null references customers (id) on delete cascade,
  kind text not null check (kind in ('radius-user', 'mac', 'circuit-id', 'subscriber-id')),
  value text not null,
  primary key (kind, value)
);
create index if not exists customer_lines_customer on customer_lines (customer_id);

create table if not exists static_assignments (
  id bigserial primary key,
  customer_id text not null references customers (id) on delete cascade,
  network cidr not null,
  valid tstzrange not null check (not isempty(valid)),
  source text not null default '',
  constraint static_assignments_no_overlap exclude using gist (network inet_ops with &&, valid with &&)
);
create index if not exists static_assignments_customer on static_assignments (customer_id);

-- customer_id null: the lease's line maps to no customer (yet); attribution
-- then joins through customer_lines, so a later `customers import` resolves it.
create table if not exists leases (
  id bigserial primary key,
  ip inet not null,
  customer_id text,
  line_kind text,
  line_value text,
  valid tstzrange not null check (not isempty(valid)),
  source text not null default '',
  constraint leases_no_overlap exclude using gist (ip with =, valid with &&)
);
create index if not exists leases_customer on leases (customer_id) where customer_id is not null;
create index if not exists leases_line on leases (line_kind, line_value);

create table if not exists cgnat_blocks (
  id bigserial primary key,
  public_ip inet not null,
  ports int4range not null check (not isempty(ports) and lower(ports) >= 0 and upper(ports) <= 65536),
  valid tstzrange not null check (not isempty(valid)),
  customer_id text not null references customers (id) on delete cascade,
  source text not null default '',
  constraint cgnat_blocks_no_overlap exclude using gist (public_ip with =, ports with &&, valid with &&)
);
create index if not exists cgnat_blocks_customer on cgnat_blocks (customer_id);

-- One row per import run, for the console and `backstop leases status`.
create table if not exists lease_imports (
  id bigserial primary key,
  format text not null,
  file text not null,
  started_at timestamptz not null default now(),
  finished_at timestamptz,
  rows_read integer not null default 0,
  rows_added integer not null default 0,
  rows_unchanged integer not null default 0,
  rows_closed integer not null default 0,
  error text
);
create index if not exists lease_imports_started on lease_imports (started_at desc);
