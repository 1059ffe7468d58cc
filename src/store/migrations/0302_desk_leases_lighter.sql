-- leases, cheaper to write and safe to search by start (issue 5, bench/attribution.ts).
--
-- leases_line serves one lookup: currentAddresses' leases whose customer is
-- not stored, resolved through customer_lines. A lease with a customer id
-- needs no entry, so closing or adding such a lease writes one index fewer.
--
-- Every lease is [start, end) with a start (the importer only writes
-- tstzrange(start, end)); with the exclusion constraint that makes "the
-- lease holding an instant" the one with the latest start at or before it,
-- which is how the importer and attribution find it in leases_ip_start.
drop index if exists leases_line;
create index if not exists leases_line on leases (line_kind, line_value) where customer_id is null;
alter table leases add constraint leases_valid_start_end check (lower_inc(valid) and not upper_inc(valid));
