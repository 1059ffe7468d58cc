-- leases by address and start (btree): the lease importer's probes ("the
-- stored lease of this address with this start", "the next start after
-- this one") are an order of magnitude cheaper here than in the exclusion
-- constraint's GiST index, which stays the guard against overlaps.
create index if not exists leases_ip_start on leases (ip, lower(valid));
