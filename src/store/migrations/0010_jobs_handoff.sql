-- The outbox's at-least-once, made visible (store/jobs): a job is marked
-- `sending` (with when and by which worker) just before its mail is handed to
-- the relay and `done` right after the relay's 250. A job found in `sending`
-- after its lease ran out was handed over by a worker that died before it
-- could say so: it is retried with the same Message-ID and flagged as a
-- possible duplicate, so the console and the CLI can say which ones.
alter table jobs drop constraint if exists jobs_state_check;
alter table jobs add constraint jobs_state_check check (state in ('queued','running','sending','done','failed','cancelled','review'));
alter table jobs add column sending_at timestamptz;
alter table jobs add column sent_by text;
alter table jobs add column handoffs integer not null default 0;
alter table jobs add column possible_duplicate boolean not null default false;
create index jobs_possible_duplicate on jobs (created_at) where possible_duplicate;
