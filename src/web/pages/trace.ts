/*
 * web/pages/trace — find a message in the message log (time range, client
 * IP or network, envelope sender or recipient, Message-ID, verdict, action)
 * and read one message's story: the session, the scan, the action and the
 * reply, its quarantine record, the jobs it caused (postmaster and sender
 * notices, the digest it was counted in, the abuse report about its source,
 * each with its state in the outbox), the reports' outcomes, and what people
 * did to it (audit).
 *
 * Every search is bounded by a time range (default: the last 24 hours) and a
 * row limit; text matches are LIKE patterns with the user's % and _ escaped.
 * Everything shown came from the sender and is escaped; addresses are cut in
 * lists and shown whole (escaped) on the message's own page.
 */
import { isIP } from 'node:net';
import { sql } from 'kysely';
import { bytes, clip, html, qs, utc, type SafeHtml } from '../html.ts';
import { noticeKey } from '../../notify/notice.ts';
import type { Db } from '../../store/store.ts';
import { idParams, noQuery } from '../schemas.ts';
import type { ConsolePage } from './registry.ts';
import { VERDICTS } from './dashboard.ts';

const TIME = '^\\d{4}-\\d{2}-\\d{2}([T ]\\d{2}:\\d{2}(:\\d{2}(\\.\\d{1,6})?)?(Z|[+-]\\d{2}:\\d{2})?)?$';

const searchQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    from: { type: 'string', pattern: TIME },
    to: { type: 'string', pattern: TIME },
    ip: { type: 'string', maxLength: 50 },
    sender: { type: 'string', maxLength: 320 },
    recipient: { type: 'string', maxLength: 320 },
    message_id: { type: 'string', maxLength: 500 },
    verdict: { type: 'string', enum: ['', ...VERDICTS] },
    action: { type: 'string', maxLength: 40, pattern: '^[a-z-]*$' },
    limit: { type: 'integer', minimum: 1, maximum: 1000, default: 200 },
  },
} as const;

export interface TraceQuery {
  from?: string;
  to?: string;
  ip?: string;
  sender?: string;
  recipient?: string;
  message_id?: string;
  verdict?: string;
  action?: string;
  limit: number;
}

/** A form's "2024-01-26T14:05" has no zone: the console speaks UTC everywhere. */
export function parseTime(value: string | undefined): Date | undefined {
  if (!value) return undefined;
  const v = value.replace(' ', 'T');
  const d = new Date(/(Z|[+-]\d{2}:\d{2})$/.test(v) || !v.includes('T') ? v : `${v}Z`);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/** An address or CIDR ("192.0.2.0/24", "2001:db8::/48"), or null when it is neither. */
export function parseNetwork(value: string): string | null {
  const [addr, bits, extra] = value.trim().split('/');
  if (!addr || extra !== undefined) return null;
  const family = isIP(addr);
  if (!family) return null;
  if (bits === undefined) return addr;
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > (family === 4 ? 32 : 128)) return null;
  return `${addr}/${bits}`;
}

/** The user's text as a LIKE substring pattern: their % and _ are literal. */
const likeContains = (text: string) => `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

const toLocalInput = (d: Date) => d.toISOString().slice(0, 16);

function verdictBadge(verdict: string, detail: string | null, max = 50): SafeHtml {
  return html`<span class="badge v-${VERDICTS.includes(verdict as never) ? verdict : 'other'}">${verdict}</span>${detail ? html` <span class="mono">${clip(detail, max)}</span>` : ''}`;
}

export const page: ConsolePage = {
  slot: 'trace',
  label: 'Message trace',
  path: '/trace',
  role: 'analyst',
  routes(app, ctx) {
    const db = ctx.db;

    app.get('/trace', { config: { role: 'analyst' }, schema: { querystring: searchQuery } }, async (request, reply) => {
      const q = request.query as TraceQuery;
      const problems: string[] = [];
      const to = parseTime(q.to) ?? new Date();
      const from = parseTime(q.from) ?? new Date(to.getTime() - 86_400_000);
      if (q.from && !parseTime(q.from)) problems.push('"From" is not a date and time.');
      if (q.to && !parseTime(q.to)) problems.push('"To" is not a date and time.');
      const network = q.ip ? parseNetwork(q.ip) : null;
      if (q.ip && !network) problems.push('"Client IP" must be an address or a network such as 192.0.2.0/24.');

      let rows: { id: string; received_at: Date; client_ip: string; mail_from: string; rcpt_to: string[]; subject: string | null; message_id: string | null; verdict: string; verdict_detail: string | null; action: string; size: number; quarantine_id: string | null }[] = [];
      if (problems.length === 0) {
        let query = db
          .selectFrom('messages')
          .select(['id', 'received_at', sql<string>`host(client_ip)`.as('client_ip'), 'mail_from', 'rcpt_to', 'subject', 'message_id', 'verdict', 'verdict_detail', 'action', 'size', 'quarantine_id'])
          .where('received_at', '>=', from)
          .where('received_at', '<=', to)
          .orderBy('received_at', 'desc')
          .limit(q.limit);
        if (network) query = query.where(sql<boolean>`client_ip <<= ${network}::inet`);
        if (q.sender) query = query.where(sql<boolean>`mail_from ilike ${likeContains(q.sender)}`);
        if (q.recipient) query = query.where(sql<boolean>`exists (select 1 from unnest(rcpt_to) as r(a) where r.a ilike ${likeContains(q.recipient)})`);
        if (q.message_id) {
          const bare = q.message_id.trim().replace(/^<|>$/g, '');
          query = query.where((eb) => eb.or([eb('message_id', '=', bare), eb('message_id', '=', `<${bare}>`)]));
        }
        if (q.verdict) query = query.where('verdict', '=', q.verdict);
        if (q.action) query = query.where('action', '=', q.action);
        rows = await query.execute();
      }

      const body = html`
<div class="head"><h1>Message trace</h1></div>
<form class="filters panel" method="get" action="/trace">
  <label>From (UTC) <input type="datetime-local" name="from" value="${toLocalInput(from)}"></label>
  <label>To (UTC) <input type="datetime-local" name="to" value="${toLocalInput(to)}"></label>
  <label>Client IP / network <input name="ip" value="${q.ip ?? ''}" placeholder="192.0.2.7 or 192.0.2.0/24" maxlength="50"></label>
  <label>Envelope sender <input name="sender" value="${q.sender ?? ''}" maxlength="320"></label>
  <label>Recipient <input name="recipient" value="${q.recipient ?? ''}" maxlength="320"></label>
  <label>Message-ID <input name="message_id" value="${q.message_id ?? ''}" maxlength="500"></label>
  <label>Verdict <select name="verdict"><option value="">any</option>${VERDICTS.map((v) => html`<option${v === q.verdict ? html` selected` : ''}>${v}</option>`)}</select></label>
  <button type="submit">Search</button> <a href="/trace">Reset</a>
</form>
${problems.map((p) => html`<p class="problem" role="alert">${p}</p>`)}
<p class="meta">${rows.length === q.limit ? html`Showing the newest ${rows.length}; narrow the search to see older ones.` : html`${rows.length} message${rows.length === 1 ? '' : 's'}.`}</p>
${rows.length === 0
  ? html`<p class="empty">No message matches.</p>`
  : html`<table class="grid"><thead><tr><th>Received (UTC)</th><th>Client</th><th>Sender</th><th>Recipients</th><th>Subject</th><th>Verdict</th><th>Action</th><th class="num">Size</th></tr></thead><tbody>
${rows.map((r) => html`<tr>
<td class="nowrap"><a href="/trace/${r.id}">${utc(r.received_at)}</a></td>
<td class="mono">${r.client_ip}</td>
<td class="mono">${clip(r.mail_from || '<>', 40)}</td>
<td class="mono">${clip(r.rcpt_to.join(', '), 40)}</td>
<td>${clip(r.subject, 60)}</td>
<td>${verdictBadge(r.verdict, r.verdict_detail, 30)}</td>
<td>${r.action}${r.quarantine_id ? html` <a href="/quarantine/${r.quarantine_id}">held</a>` : ''}</td>
<td class="num">${bytes(r.size)}</td></tr>`)}
</tbody></table>`}`;
      return ctx.render(request, reply, { title: 'Message trace', slot: 'trace', body, status: problems.length ? 400 : 200 });
    });

    app.get(
      '/trace/:id',
      {
        config: { role: 'analyst' },
        schema: {
          params: idParams,
          querystring: noQuery,
        },
      },
      async (request, reply) => {
        const { id } = request.params as { id: string };
        const m = await db
          .selectFrom('messages')
          .selectAll()
          .select(sql<string>`host(client_ip)`.as('client_ip'))
          .where('id', '=', id)
          .executeTakeFirst();
        if (!m) return ctx.render(request, reply, { title: 'Not found', slot: 'trace', status: 404, body: html`<p class="empty">No message with that id in the log.</p>` });
        const q = m.quarantine_id
          ? await db.selectFrom('quarantine').select(['id', 'released_at', 'released_by', 'deleted_at', 'sha256']).where('id', '=', m.quarantine_id).executeTakeFirst()
          : undefined;
        const targets = [m.id, ...(m.quarantine_id ? [m.quarantine_id] : [])];
        const [events, reports, jobs] = await Promise.all([
          db.selectFrom('audit').select(['at', 'actor', 'action', 'target', 'detail']).where('target', 'in', targets).orderBy('at').limit(100).execute(),
          db
            .selectFrom('abuse_reports')
            .select(['window_start', 'outcome', 'contact', 'source', 'at'])
            .where(sql<boolean>`client_ip = ${m.client_ip}::inet`)
            .where('window_start', '<=', m.received_at)
            .where('window_start', '>', new Date(m.received_at.getTime() - 7 * 86_400_000))
            .orderBy('at')
            .limit(20)
            .execute()
            .catch(() => []),
          jobsCausedBy(db, m),
        ]);
        const body = html`
<div class="head"><h1>Message ${m.id}</h1><a href="/trace${qs({ ip: m.client_ip, from: new Date(m.received_at.getTime() - 3_600_000).toISOString(), to: new Date(m.received_at.getTime() + 3_600_000).toISOString() })}">Same client ±1 h</a></div>
<section class="cols">
<div class="panel">
<h2>Envelope and session</h2>
<table class="kv">
<tr><th>Received</th><td>${utc(m.received_at)} on node <span class="mono">${m.node}</span></td></tr>
<tr><th>Client</th><td class="mono">${m.client_ip} port ${m.client_port}</td></tr>
<tr><th>HELO</th><td class="mono wrap">${m.helo}</td></tr>
<tr><th>MAIL FROM</th><td class="mono wrap">&lt;${m.mail_from}&gt;</td></tr>
<tr><th>RCPT TO</th><td class="mono wrap">${m.rcpt_to.map((r, i) => html`${i ? html`<br>` : ''}&lt;${r}&gt;`)}</td></tr>
<tr><th>Message-ID</th><td class="mono wrap">${m.message_id ?? html`<span class="none">none</span>`}</td></tr>
<tr><th>Subject</th><td class="wrap">${m.subject ?? html`<span class="none">none</span>`}</td></tr>
<tr><th>Size</th><td>${bytes(m.size)}</td></tr>
</table>
</div>
<div class="panel">
<h2>What Backstop did</h2>
<ol class="story">
<li><b>${utc(m.received_at)}</b> message received from <span class="mono">${m.client_ip}</span></li>
<li>scanned in ${Math.round(m.scan_ms)} ms: ${verdictBadge(m.verdict, m.verdict_detail, 200)}</li>
<li>action <b>${m.action}</b>, answered <span class="mono">${m.reply}</span></li>
${q ? html`<li>held in quarantine as <a class="mono" href="/quarantine/${q.id}">${q.id}</a> (SHA-256 <span class="mono">${q.sha256.slice(0, 16)}…</span>)${q.released_at ? html`; released ${utc(q.released_at)} by ${q.released_by}` : ''}${q.deleted_at ? html`; deleted ${utc(q.deleted_at)}` : ''}</li>` : ''}
${jobs.map((j) => html`<li><b>${utc(j.done_at ?? j.run_at)}</b> ${j.how}: <a class="mono" href="/outbox/${j.id}">${j.kind}</a> <span class="state s-${j.state}">${j.state}</span>${j.last_error ? html` <span class="mono">${clip(j.last_error, 120)}</span>` : ''}</li>`)}
${reports.map((r) => html`<li><b>${utc(r.at)}</b> abuse report about this source (window from ${utc(r.window_start)}): ${r.outcome}${r.contact ? html` to <span class="mono">${r.contact}</span>` : ''}${r.source ? html` (${r.source})` : ''}</li>`)}
${events.map((e) => html`<li><b>${utc(e.at)}</b> ${e.actor}: ${e.action}</li>`)}
</ol>
</div>
</section>`;
        return ctx.render(request, reply, { title: `Message ${m.id}`, slot: 'trace', body });
      },
    );
  },
};

interface CausedJob {
  id: string;
  kind: string;
  state: string;
  run_at: Date;
  done_at: Date | null;
  last_error: string | null;
  /** How the job relates to the message, for the story. */
  how: string;
}

/**
 * The outbox jobs a message caused: the notices whose payload is its
 * detection (store 0401 indexes that id), the digest it was counted in when
 * it had no notice of its own, and the abuse report about its source's window.
 */
async function jobsCausedBy(db: Db, m: { id: string; received_at: Date; client_ip: string; verdict: string; verdict_detail: string | null }): Promise<CausedJob[]> {
  const columns = ['id', 'kind', 'state', 'run_at', 'done_at', 'last_error'] as const;
  const direct = db
    .selectFrom('jobs')
    .select(columns)
    .select(sql<string>`'sent about this message'`.as('how'))
    .where(sql<boolean>`coalesce(payload->>'id', payload->'detection'->>'id') = ${m.id}`)
    .where('kind', '<>', 'abuse-report')
    .orderBy('created_at')
    .limit(20)
    .execute();
  const report = db
    .selectFrom('jobs')
    .select(columns)
    .select(sql<string>`'abuse report about its source'`.as('how'))
    .where('kind', '=', 'abuse-report')
    .where(sql<boolean>`payload->>'clientIp' = ${m.client_ip}`)
    .where(sql<boolean>`(payload->>'windowStart')::timestamptz <= ${m.received_at}`)
    .where(sql<boolean>`(payload->>'windowStart')::timestamptz > ${new Date(m.received_at.getTime() - 7 * 86_400_000)}`)
    .orderBy(sql`(payload->>'windowStart')::timestamptz`, 'desc')
    .limit(1)
    .execute();
  // A detection goes to a notice or to the digest, never both. Digest items carry no message id, so a message
  // without its own notice is matched to the digest that counted its name from its client after it arrived.
  const noticed = (await direct).some((j) => j.kind === 'postmaster-notice');
  const digest =
    !noticed && (m.verdict === 'infected' || m.verdict === 'banned') && m.verdict_detail
      ? sql<Omit<CausedJob, 'how'>>`
          select j.id, j.kind, j.state, j.run_at, j.done_at, j.last_error from jobs j
          where j.kind = 'postmaster-digest' and (j.payload->>'windowEnd')::timestamptz > ${m.received_at}
            and exists (select 1 from notice_digest_items i
                        where i.name = ${noticeKey(m.verdict, m.verdict_detail)} and i.client_ip = ${m.client_ip}::inet
                          and i.created_at >= ${m.received_at} and i.created_at <= (j.payload->>'windowEnd')::timestamptz)
          order by (j.payload->>'windowEnd')::timestamptz limit 1`
          .execute(db)
          .then((r) => r.rows.map((j) => ({ ...j, how: 'counted in the postmaster digest' })))
      : Promise.resolve([]);
  return (await Promise.all([direct, digest, report])).flat();
}
