/*
 * edge/release — sends a quarantined message on, whole and unchanged, to its
 * original recipients through the next hop. Used by the CLI and the console.
 * The row is claimed (marked released) before delivery, so two operators
 * releasing at once cannot deliver it twice; if the next hop does not say
 * 250 the claim is undone and the release can be tried again.
 *
 * A next hop that offers XFORWARD is told the original client with
 * SOURCE=LOCAL: the message comes from us, by an operator's decision, not
 * from a client that is connected now. Never XCLIENT: that would make the
 * next hop judge the (possibly infected) original client's connection again.
 */
import type { Config } from '../config/schema.ts';
import { audit } from '../store/audit.ts';
import { getQuarantined, markReleased, unmarkReleased } from '../store/quarantine.ts';
import type { Db } from '../store/store.ts';
import { parseNextHop } from './next-hop.ts';

export interface ReleaseResult {
  ok: boolean;
  reply: string;
  /** Recipients the next hop refused (the rest received the message). */
  refused: string[];
}

export async function releaseQuarantined(db: Db, config: Config, id: string, actor: string): Promise<ReleaseResult> {
  const row = await getQuarantined(db, id);
  if (!row) return { ok: false, reply: 'not found', refused: [] };
  if (row.deleted_at || row.released_at) return { ok: false, reply: `already ${row.deleted_at ? 'deleted' : 'released'}`, refused: [] };
  if (!(await markReleased(db, row.id, actor))) return { ok: false, reply: 'already released or deleted', refused: [] };
  const session = parseNextHop(config.nextHop, { xclient: false }).session(config.smtp.hostname);
  let delivered = false;
  try {
    const client = { addr: row.client_ip, port: null, name: null, helo: row.helo || null, proto: null, source: 'LOCAL' as const };
    const mail = await session.mail(row.mail_from, { size: row.size, client });
    if (mail.code !== 250) return { ok: false, reply: `${mail.code} ${mail.text}`, refused: [] };
    const refused: string[] = [];
    for (const rcpt of row.rcpt_to) {
      const r = await session.rcpt(rcpt);
      if (r.code !== 250 && r.code !== 251) refused.push(rcpt);
    }
    if (refused.length === row.rcpt_to.length) return { ok: false, reply: 'every recipient was refused by the next hop', refused };
    const answer = await session.data([row.raw]);
    if (answer.code !== 250) return { ok: false, reply: `${answer.code} ${answer.text}`, refused };
    delivered = true;
    await audit(db, actor, 'quarantine.release', row.id, { nextHop: config.nextHop, refused, reply: answer.text.slice(0, 200) });
    return { ok: true, reply: `${answer.code} ${answer.text}`, refused };
  } catch (err) {
    return { ok: false, reply: `next hop failed: ${(err as Error).message}`, refused: [] };
  } finally {
    session.close();
    if (!delivered) await unmarkReleased(db, row.id);
  }
}
