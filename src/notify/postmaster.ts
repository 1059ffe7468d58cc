/*
 * notify/postmaster — tells the postmaster, and only the postmaster, what the
 * gateway found, without drowning them during an outbreak: the first
 * detection of a name is a notice at once, later ones are gathered into one
 * digest per window. The "seen" set and the digest items live in the store,
 * so every node agrees; sending is a job, so nothing is lost or sent twice.
 *
 * Sent with a null envelope sender (MAIL FROM:<>, RFC 5321 §4.5.5: nothing
 * bounces back) through the configured relay. Never to the message's sender.
 */
import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { Config } from '../config/schema.ts';
import { SmtpClient } from '../edge/smtp-client.ts';
import { enqueue, type Handoff, type Job, type JobContext } from '../store/jobs.ts';
import type { Db } from '../store/store.ts';
import { composeDigest, composeNotice, noticeKey, type DigestEntry, type Detection } from './notice.ts';

export const NOTICE_JOB = 'postmaster-notice';
export const DIGEST_JOB = 'postmaster-digest';

/** The end of the digest window `now` falls in (windows are aligned, so every node picks the same one). */
export function digestWindowEnd(now: Date, digestMinutes: number): Date {
  const size = digestMinutes * 60_000;
  return new Date(Math.floor(now.getTime() / size) * size + size);
}

/** Records one detection: a notice job for a new name, else a digest item and the window's digest job. */
export async function recordDetection(db: Db, d: Detection, digestMinutes: number, now = new Date()): Promise<'notice' | 'digest'> {
  const [outcome] = await recordDetections(db, [d], digestMinutes, now);
  return outcome!;
}

/**
 * The same for a batch, set-based: a handful of statements per batch rather
 * than per detection, so an outbreak costs the store little (embedded PGlite
 * runs on the gateway's own thread). The first detection of a new name in the
 * batch gets the notice; the rest of the batch go to the digest.
 */
export async function recordDetections(db: Db, ds: readonly Detection[], digestMinutes: number, now = new Date()): Promise<('notice' | 'digest')[]> {
  if (ds.length === 0) return [];
  const names = ds.map((d) => noticeKey(d.verdict, d.detail));
  // Inside the gateway's group commit the caller's transaction is used as it is (Kysely has no nesting).
  const inTransaction = <R>(work: (tx: Db) => Promise<R>): Promise<R> => (db.isTransaction ? work(db) : db.transaction().execute(work));
  return inTransaction(async (tx) => {
    // Names in one order on every node, so two nodes' groups never wait on each other in a cycle.
    const fresh = new Set(
      (await tx.insertInto('notice_names').values([...new Set(names)].sort().map((name) => ({ name }))).onConflict((oc) => oc.column('name').doNothing()).returning('name').execute()).map((r) => r.name),
    );
    const outcomes = names.map((name) => {
      if (!fresh.has(name)) return 'digest' as const;
      fresh.delete(name); // only the first of the batch is the notice
      return 'notice' as const;
    });
    for (const [i, d] of ds.entries()) {
      if (outcomes[i] === 'notice') await enqueue(tx, { kind: NOTICE_JOB, payload: d, dedupeKey: `notice:${d.id}` });
    }
    const digestItems = ds.flatMap((d, i) => (outcomes[i] === 'digest' ? [{ name: names[i]!, client_ip: d.clientIp, created_at: now }] : []));
    if (digestItems.length > 0) {
      await tx.insertInto('notice_digest_items').values(digestItems).execute();
      const windowEnd = digestWindowEnd(now, digestMinutes);
      await enqueue(tx, { kind: DIGEST_JOB, payload: { windowEnd: windowEnd.toISOString() }, runAt: windowEnd, dedupeKey: `digest:${windowEnd.toISOString()}` });
    }
    return outcomes;
  });
}

/** Forward-confirmed reverse DNS: the PTR name only if it resolves back to the address. */
export async function verifiedReverseName(ip: string, timeoutMs = 1500): Promise<string | null> {
  if (!isIP(ip)) return null;
  const resolver = new Resolver({ timeout: timeoutMs, tries: 1 });
  try {
    const [name] = await resolver.reverse(ip);
    if (!name) return null;
    const addresses = isIP(ip) === 6 ? await resolver.resolve6(name) : await resolver.resolve4(name);
    return addresses.includes(ip) ? name : null;
  } catch {
    return null;
  }
}

/**
 * Hands one message to the relay, by default with a null sender; throws (so
 * the job is retried) unless the relay says 250. The recipient is checked:
 * it arrived from outside (RDAP, DNS) and goes into an SMTP command line.
 * With a job's handoff (store/jobs), the job is marked `sending` after the
 * relay took the recipient and before the message, and `done` the moment
 * the relay's 250 arrives: a crash between the two is the one way a mail
 * goes out twice, and it leaves the job flagged as a possible duplicate.
 */
export async function sendThroughRelay(relay: string, hostname: string, to: string, raw: Buffer, envelopeFrom = '', handoff?: Pick<Handoff, 'sending' | 'sent'>): Promise<void> {
  if (!/^[^\s<>@]{1,64}@[A-Za-z0-9.-]{1,253}$/.test(to)) throw new Error('refusing to send to a malformed address');
  const hostPort = relay.slice('smtp://'.length);
  const at = hostPort.lastIndexOf(':');
  const client = await SmtpClient.open({
    host: at === -1 ? hostPort : hostPort.slice(0, at).replace(/^\[(.*)\]$/, '$1'),
    port: at === -1 ? 25 : Number(hostPort.slice(at + 1)),
    heloName: hostname,
  });
  try {
    const mail = await client.command(`MAIL FROM:<${envelopeFrom}>`);
    if (mail.code !== 250) throw new Error(`relay refused MAIL: ${mail.code} ${mail.text}`);
    const rcpt = await client.command(`RCPT TO:<${to}>`);
    if (rcpt.code !== 250 && rcpt.code !== 251) throw new Error(`relay refused RCPT: ${rcpt.code} ${rcpt.text}`);
    await handoff?.sending();
    const done = await client.data([raw]);
    if (done.code !== 250) throw new Error(`relay refused DATA: ${done.code} ${done.text}`);
    await handoff?.sent();
  } finally {
    client.close();
  }
}

type Notify = NonNullable<Config['notify']>;

/** The job handlers a node runs when `notify:` is configured. */
export function postmasterHandlers(db: Db, notify: Notify, hostname: string, reverse: (ip: string) => Promise<string | null> = verifiedReverseName) {
  const settings = { from: notify.from, postmaster: notify.postmaster, hostname };
  return {
    [NOTICE_JOB]: async (payload: unknown, job: Job, ctx?: JobContext) => {
      const d = payload as Detection;
      await sendThroughRelay(notify.relay, hostname, notify.postmaster, await composeNotice(d, settings, await reverse(d.clientIp), ctx?.handoff.messageId), '', ctx?.handoff);
    },
    [DIGEST_JOB]: async (payload: unknown, job: Job, ctx?: JobContext) => {
      const windowEnd = new Date((payload as { windowEnd: string }).windowEnd);
      // The window's items are claimed for this job, sent, and only then deleted, with the job's done mark, in
      // one transaction: a relay failure leaves them for the retry, another node's digest never takes them,
      // and a crash after the relay's 250 sends them again under the same Message-ID (flagged).
      const items = await db
        .updateTable('notice_digest_items')
        .set({ job_id: job.id })
        .where('created_at', '<', windowEnd)
        .where((eb) => eb.or([eb('job_id', 'is', null), eb('job_id', '=', job.id)]))
        .returning(['id', 'name', 'client_ip'])
        .execute();
      if (items.length === 0) return;
      {
        const byName = new Map<string, DigestEntry>();
        for (const item of items) {
          const entry = byName.get(item.name) ?? { detail: item.name, count: 0, sources: [] };
          entry.count++;
          if (!entry.sources.includes(item.client_ip)) entry.sources.push(item.client_ip);
          byName.set(item.name, entry);
        }
        const entries = [...byName.values()].sort((a, b) => b.count - a.count);
        const raw = await composeDigest(windowEnd.toISOString(), entries, settings, job.id);
        const ids = items.map((i) => i.id);
        const consume = (tx: Db) => tx.deleteFrom('notice_digest_items').where('id', 'in', ids).execute();
        await sendThroughRelay(notify.relay, hostname, notify.postmaster, raw, '', {
          sending: () => ctx?.handoff.sending() ?? Promise.resolve(),
          sent: () =>
            db.transaction().execute(async (tx) => {
              await consume(tx);
              await ctx?.handoff.sent(tx);
            }),
        });
      }
    },
  };
}
