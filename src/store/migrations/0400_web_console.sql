-- web console: local users, sessions, the shared signing key, login throttling.
-- Everything a node needs to agree with the others lives here, never in one process.
create table web_users (
  name text primary key check (name ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
  role text not null check (role in ('admin','analyst')),
  password_hash text not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  disabled_at timestamptz
);

-- A session's id is a random 256-bit token in a signed cookie; the store keeps
-- only its SHA-256, so a read of this table does not hand out live sessions.
create table web_sessions (
  id_hash text primary key,
  user_name text not null references web_users (name) on delete cascade,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  last_seen_at timestamptz not null default now(),
  client_ip text not null
);
create index web_sessions_expires_at on web_sessions (expires_at);
create index web_sessions_user on web_sessions (user_name);

-- Keys made once by whichever node starts first (insert … on conflict do nothing).
create table web_secrets (
  name text primary key,
  value text not null,
  created_at timestamptz not null default now()
);

-- Failed logins per key ("user:NAME", "ip:ADDR") in a fixed window.
create table web_login_throttle (
  key text primary key,
  window_start timestamptz not null,
  failures integer not null
);
