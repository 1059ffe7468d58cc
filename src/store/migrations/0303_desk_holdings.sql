-- desk_holdings: the records of one address around a time, for attribution
-- (desk/attribute.ts findHoldings; decide() says what they mean).
--
-- A function so that its statements' plans are cached per connection: as one
-- query sent from the application, planning the three kinds of record cost
-- about twice their execution (≈0.4 of ≈0.55 ms server CPU per lookup on a
-- 2-million-lease table; ≈0.16 ms in total here, bench/attribution.ts).
--
-- Leases through the btree leases_ip_start: storage is overlap-free (the
-- exclusion constraint) and every lease is [start, end) (0302), so only the
-- lease with the latest start at or before p_lo can reach into [p_lo, p_hi]
-- from before it; the others start inside it. One index descent for an
-- instant, two for a window — the GiST index visits several pages per lookup.
-- p_any_lease (a question without a time): every lease of the address, up to
-- 200, since its mere existence makes the question ambiguous.
-- A lease's customer is its stored one or, when its line was unknown at
-- import, the one customer_lines names now.
create or replace function desk_holdings(p_ip inet, p_lo timestamptz, p_hi timestamptz, p_any_lease boolean)
returns table (via text, customer_id text, lo timestamptz, hi timestamptz, plo integer, phi integer)
language plpgsql stable as $$
begin
  return query
    select 'static'::text, s.customer_id, lower(s.valid), upper(s.valid), null::integer, null::integer
      from static_assignments s
      where s.network >>= p_ip and s.valid && tstzrange(p_lo, p_hi, '[]');
  return query
    select 'cgnat'::text, c.customer_id, lower(c.valid), upper(c.valid), lower(c.ports), upper(c.ports) - 1
      from cgnat_blocks c
      where c.public_ip = p_ip and c.valid && tstzrange(p_lo, p_hi, '[]');
  if p_any_lease then
    return query
      select 'lease'::text, coalesce(l.customer_id, cl.customer_id), lower(l.valid), upper(l.valid), null::integer, null::integer
        from (select x.customer_id, x.line_kind, x.line_value, x.valid from leases x where x.ip = p_ip limit 200) l
        left join customer_lines cl on l.customer_id is null and cl.kind = l.line_kind and cl.value = l.line_value;
    return;
  end if;
  return query
    select 'lease'::text, coalesce(l.customer_id, cl.customer_id), lower(l.valid), upper(l.valid), null::integer, null::integer
      from (select x.customer_id, x.line_kind, x.line_value, x.valid from leases x
              where x.ip = p_ip and lower(x.valid) <= p_lo order by lower(x.valid) desc limit 1) l
      left join customer_lines cl on l.customer_id is null and cl.kind = l.line_kind and cl.value = l.line_value
      where l.valid && tstzrange(p_lo, p_hi, '[]');
  if p_hi > p_lo then
    return query
      select 'lease'::text, coalesce(l.customer_id, cl.customer_id), lower(l.valid), upper(l.valid), null::integer, null::integer
        from (select x.customer_id, x.line_kind, x.line_value, x.valid from leases x
                where x.ip = p_ip and lower(x.valid) > p_lo and lower(x.valid) <= p_hi order by lower(x.valid) limit 199) l
        left join customer_lines cl on l.customer_id is null and cl.kind = l.line_kind and cl.value = l.line_value;
  end if;
end
$$;
