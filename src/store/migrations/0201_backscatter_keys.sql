-- backscatter keys: the BATV (prvs) keys and the Message-ID stamp keys live in
-- the store, so every node signs and verifies with the same ones and a restart
-- loses nothing. One current key per kind (retired_at null); rotation retires
-- it and inserts the next, and retired keys keep verifying for a while
-- (backscatter/keys.ts decides how long).
create table backscatter_keys (
  id bigserial primary key,
  kind text not null check (kind in ('batv','stamp')),
  num integer not null check (num between 0 and 9),
  secret bytea not null check (octet_length(secret) between 16 and 64),
  created_at timestamptz not null default now(),
  retired_at timestamptz
);
create unique index backscatter_keys_current on backscatter_keys (kind) where retired_at is null;
create index backscatter_keys_retired on backscatter_keys (kind, retired_at);
