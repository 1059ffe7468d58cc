import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rereadChange } from '../../src/desk/leases.ts';

test('rereadChange: a static assignment or CGNAT block read again — unchanged, closed or replaced', () => {
  const t = (iso: string) => new Date(iso);
  const cases: [string, { customer_id: string; upper: Date | null }, { customerId: string; to: Date | null }, ReturnType<typeof rereadChange>][] = [
    ['same customer, both open', { customer_id: 'C1', upper: null }, { customerId: 'C1', to: null }, 'unchanged'],
    ['same customer, same end', { customer_id: 'C1', upper: t('2026-03-01T00:00:00Z') }, { customerId: 'C1', to: t('2026-03-01T00:00:00Z') }, 'unchanged'],
    ['an open row gets an end', { customer_id: 'C1', upper: null }, { customerId: 'C1', to: t('2026-03-01T00:00:00Z') }, 'closed'],
    ['an open row gets an end and another customer', { customer_id: 'C1', upper: null }, { customerId: 'C2', to: t('2026-03-01T00:00:00Z') }, 'closed'],
    ['an ended row is reopened', { customer_id: 'C1', upper: t('2026-03-01T00:00:00Z') }, { customerId: 'C1', to: null }, 'added'],
    ['an end moves', { customer_id: 'C1', upper: t('2026-03-01T00:00:00Z') }, { customerId: 'C1', to: t('2026-04-01T00:00:00Z') }, 'added'],
    ['another customer, both open', { customer_id: 'C1', upper: null }, { customerId: 'C2', to: null }, 'added'],
    // The driver may hand the range's upper bound back as a string-like value: compared by instant, not by object.
    ['the end as the driver gives it', { customer_id: 'C1', upper: '2026-03-01 00:00:00+00' as unknown as Date }, { customerId: 'C1', to: t('2026-03-01T00:00:00Z') }, 'unchanged'],
  ];
  for (const [name, stored, read, want] of cases) assert.equal(rereadChange(stored, read), want, name);
});
