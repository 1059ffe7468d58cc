-- notify: a digest job claims its window's items before it sends (job_id), and
-- deletes them only with its done mark after the relay's 250. Two nodes' digest
-- jobs can never put one item into two digests, and a digest resent after a
-- crash carries the items it first carried.
alter table notice_digest_items add column job_id uuid;
create index notice_digest_items_job on notice_digest_items (job_id) where job_id is not null;
