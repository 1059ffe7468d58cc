/*
 * desk/formats/cgnat-csv — carrier-grade NAT port blocks:
 *
 *   public_ip,port_low,port_high,customer_id,valid_from,valid_to
 *   100.64.1.1,1024,2047,c-1001,2026-01-01T00:00:00Z,
 *
 * Ports inclusive (0–65535, low ≤ high); valid_to empty = still assigned.
 * Merged by desk/leases.ts importCgnatBlocks.
 */
import { z } from 'zod';
import type { Db } from '../../store/store.ts';
import { canonicalIp } from '../attribute.ts';
import { importCgnatBlocks, type CgnatRecord, type ImportCounts, type ImportSource } from '../leases.ts';
import { customerId, instant, optionalInstant, readCsvTable } from './csv-table.ts';

export const kind = 'cgnat';
const COLUMNS = ['public_ip', 'port_low', 'port_high', 'customer_id', 'valid_from', 'valid_to'] as const;

const port = z
  .string()
  .trim()
  .regex(/^\d{1,5}$/, 'a port number from 0 to 65535')
  .transform(Number)
  .refine((n) => n <= 65535, 'a port number from 0 to 65535');

const row = z
  .object({
    public_ip: z.string().transform((v, ctx) => {
      try {
        return canonicalIp(v);
      } catch {
        ctx.addIssue({ code: 'custom', message: 'one IP address' });
        return z.NEVER;
      }
    }),
    port_low: port,
    port_high: port,
    customer_id: customerId,
    valid_from: instant,
    valid_to: optionalInstant,
  })
  .refine((r) => r.port_low <= r.port_high, { path: ['port_high'], message: 'a port not below port_low' })
  .refine((r) => r.valid_to === null || r.valid_to > r.valid_from, { path: ['valid_to'], message: 'empty or a time after valid_from' });

export function parse(text: string): CgnatRecord[] {
  return readCsvTable('CGNAT block', text, COLUMNS, row).map(({ line, value: r }) => ({
    customerId: r.customer_id, publicIp: r.public_ip, low: r.port_low, high: r.port_high, from: r.valid_from, to: r.valid_to, line,
  }));
}

export async function importText(db: Db, text: string, source: ImportSource): Promise<ImportCounts> {
  return importCgnatBlocks(db, parse(text), source);
}
