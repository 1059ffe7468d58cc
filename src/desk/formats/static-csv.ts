/*
 * desk/formats/static-csv — static assignments as the ISP exports them:
 *
 *   customer_id,network,valid_from,valid_to
 *   c-1001,198.51.100.0/29,2025-01-01,
 *   c-1002,2001:db8:100::/48,2025-03-01T00:00:00Z,2026-03-01T00:00:00Z
 *
 * network: CIDR with the host bits zero, or one address (/32, /128);
 * valid_from: ISO 8601 with a zone or a date (00:00 UTC); valid_to empty =
 * still assigned. Merged by desk/leases.ts importStaticAssignments.
 */
import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import type { Db } from '../../store/store.ts';
import { importStaticAssignments, type ImportCounts, type ImportSource, type StaticRecord } from '../leases.ts';
import { customerId, instant, optionalInstant, readCsvTable } from './csv-table.ts';

export const kind = 'static';
const COLUMNS = ['customer_id', 'network', 'valid_from', 'valid_to'] as const;

/** A network in PostgreSQL's cidr spelling, or null when it is not one (or has host bits set). */
export function canonicalNetwork(text: string): string | null {
  const v = text.trim();
  try {
    if (!v.includes('/')) {
      if (!ipaddr.isValid(v) || (v.includes('.') && !v.includes(':') && !ipaddr.IPv4.isValidFourPartDecimal(v))) return null;
      const a = ipaddr.parse(v);
      return `${a.toString()}/${a.kind() === 'ipv4' ? 32 : 128}`;
    }
    const [addr, bits] = ipaddr.parseCIDR(v);
    if (addr.kind() === 'ipv4' && !ipaddr.IPv4.isValidFourPartDecimal(v.split('/')[0]!)) return null;
    const net = addr.kind() === 'ipv4' ? ipaddr.IPv4.networkAddressFromCIDR(v) : ipaddr.IPv6.networkAddressFromCIDR(v);
    if (net.toString() !== addr.toString()) return null;
    return `${addr.toString()}/${bits}`;
  } catch {
    return null;
  }
}

const row = z
  .object({
    customer_id: customerId,
    network: z.string().transform((v, ctx) => canonicalNetwork(v) ?? (ctx.addIssue({ code: 'custom', message: 'a CIDR network with its host bits zero (198.51.100.0/29) or one address' }), z.NEVER)),
    valid_from: instant,
    valid_to: optionalInstant,
  })
  .refine((r) => r.valid_to === null || r.valid_to > r.valid_from, { path: ['valid_to'], message: 'empty or a time after valid_from' });

export function parse(text: string): StaticRecord[] {
  return readCsvTable('static assignment', text, COLUMNS, row).map(({ line, value: r }) => ({ customerId: r.customer_id, network: r.network, from: r.valid_from, to: r.valid_to, line }));
}

export async function importText(db: Db, text: string, source: ImportSource): Promise<ImportCounts> {
  return importStaticAssignments(db, parse(text), source);
}
