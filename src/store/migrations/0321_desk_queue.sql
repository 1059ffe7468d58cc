-- the desk's queue worked by hand (desk/queue.ts): an agent assigns an
-- unattributed report to a customer or dismisses it with a reason.
--
-- An assigned report becomes 'attributed' exactly like one attributed on
-- arrival (customer_id and incident_id from 0320, then the forward job, then
-- 'forwarded'), so customer_id is the assignee and no second customer column
-- exists; assigned_by/assigned_at say it was a person, not attribute().
-- A dismissed report leaves the queue in state 'dismissed' with who, when and
-- why. The report's own `reason` (why nobody could be named) is kept as it was.
alter table desk_reports add column if not exists assigned_by text;
alter table desk_reports add column if not exists assigned_at timestamptz;
alter table desk_reports add column if not exists dismissed_by text;
alter table desk_reports add column if not exists dismissed_at timestamptz;
alter table desk_reports add column if not exists dismiss_reason text;

alter table desk_reports drop constraint if exists desk_reports_state_check;
alter table desk_reports add constraint desk_reports_state_check check (state in ('attributed', 'unattributed', 'forwarded', 'dismissed'));
-- Dismissed means all three of who, when, why (the reason at most 500 characters), and nothing else has them.
alter table desk_reports add constraint desk_reports_dismissal check (
  (state = 'dismissed') = (dismissed_at is not null)
  and (dismissed_at is null) = (dismissed_by is null)
  and (dismissed_at is null) = (dismiss_reason is null)
  and (dismiss_reason is null or char_length(dismiss_reason) between 1 and 500)
);
-- An assignment names who did it and the customer it went to.
alter table desk_reports add constraint desk_reports_assignment check (
  (assigned_at is null) = (assigned_by is null)
  and (assigned_at is null or customer_id is not null)
);
