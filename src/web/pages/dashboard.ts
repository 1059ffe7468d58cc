/*
 * web/pages/dashboard — what is happening, at a glance: messages per minute
 * by verdict and by action over the last hour, day or week (drawn in the page
 * by uPlot from /api/dashboard/series), the top malware names and failed
 * tests, and the networks (/24 for IPv4, /48 for IPv6) sending the most
 * that was not clean.
 *
 * Reads the message log only; every query is bounded by the time range and a
 * LIMIT, and uses the received_at index. Malware names and client networks
 * are peer-influenced strings: escaped by html``, cut by clip().
 */
import { sql } from 'kysely';
import { bytes, clip, html, qs, utc } from '../html.ts';
import type { ConsolePage } from './registry.ts';

export const RANGES = {
  hour: { ms: 3_600_000, bucketSeconds: 60, label: 'Last hour' },
  day: { ms: 86_400_000, bucketSeconds: 600, label: 'Last day' },
  week: { ms: 7 * 86_400_000, bucketSeconds: 3600, label: 'Last week' },
} as const;
export type RangeName = keyof typeof RANGES;

export const VERDICTS = ['clean', 'infected', 'banned', 'unscannable'] as const;

const rangeQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { range: { type: 'string', enum: Object.keys(RANGES), default: 'hour' } },
} as const;

const seriesResponse = {
  200: {
    type: 'object',
    required: ['range', 'bucketSeconds', 't', 'verdict', 'action'],
    properties: {
      range: { type: 'string' },
      bucketSeconds: { type: 'integer' },
      t: { type: 'array', items: { type: 'number' } },
      verdict: { type: 'object', additionalProperties: { type: 'array', items: { type: 'number' } } },
      action: { type: 'object', additionalProperties: { type: 'array', items: { type: 'number' } } },
    },
  },
} as const;

export interface Series {
  range: RangeName;
  bucketSeconds: number;
  /** Bucket starts, Unix seconds. */
  t: number[];
  /** Messages per minute in each bucket. */
  verdict: Record<string, number[]>;
  action: Record<string, number[]>;
}

export const page: ConsolePage = {
  slot: 'dashboard',
  label: 'Dashboard',
  path: '/',
  role: 'analyst',
  routes(app, ctx) {
    const db = ctx.db;

    async function series(range: RangeName, now = Date.now()): Promise<Series> {
      const { ms, bucketSeconds } = RANGES[range];
      const first = Math.floor((now - ms) / 1000 / bucketSeconds) * bucketSeconds + bucketSeconds;
      const from = new Date(first * 1000);
      const rows = await sql<{ t: number; verdict: string; action: string; n: number }>`
        select (floor(extract(epoch from received_at) / ${bucketSeconds}) * ${bucketSeconds})::float8 as t,
               verdict, action, count(*)::int as n
        from messages where received_at >= ${from}
        group by 1, 2, 3`.execute(db);
      const t: number[] = [];
      for (let s = first; s <= now / 1000; s += bucketSeconds) t.push(s);
      const index = new Map(t.map((s, i) => [s, i]));
      const perMinute = 60 / bucketSeconds;
      const verdict: Record<string, number[]> = Object.fromEntries(VERDICTS.map((v) => [v, t.map(() => 0)]));
      const action: Record<string, number[]> = {};
      for (const row of rows.rows) {
        const i = index.get(Number(row.t));
        if (i === undefined) continue;
        (verdict[row.verdict] ??= t.map(() => 0))[i]! += row.n * perMinute;
        (action[row.action] ??= t.map(() => 0))[i]! += row.n * perMinute;
      }
      return { range, bucketSeconds, t, verdict, action };
    }

    app.get('/api/dashboard/series', { config: { role: 'analyst' }, schema: { querystring: rangeQuery, response: seriesResponse } }, async (request) => {
      const { range } = request.query as { range: RangeName };
      return series(range);
    });

    app.get('/', { config: { role: 'analyst' }, schema: { querystring: rangeQuery } }, async (request, reply) => {
      const { range } = request.query as { range: RangeName };
      const from = new Date(Date.now() - RANGES[range].ms);
      const [totals, malware, networks, held] = await Promise.all([
        db.selectFrom('messages').select(['verdict', (eb) => eb.fn.countAll<number>().as('n'), (eb) => eb.fn.sum<number>('size').as('bytes')]).where('received_at', '>=', from).groupBy('verdict').execute(),
        sql<{ verdict: string; name: string | null; n: number; sources: number; last: Date }>`
          select verdict, verdict_detail as name, count(*)::int as n, count(distinct client_ip)::int as sources, max(received_at) as last
          from messages where received_at >= ${from} and verdict <> 'clean'
          group by 1, 2 order by n desc, name limit 10`.execute(db),
        sql<{ net: string; total: number; bad: number; last: Date }>`
          select network(set_masklen(client_ip, case when family(client_ip) = 4 then 24 else 48 end))::text as net,
                 count(*)::int as total, (count(*) filter (where verdict <> 'clean'))::int as bad, max(received_at) as last
          from messages where received_at >= ${from}
          group by 1 order by bad desc, total desc, net limit 10`.execute(db),
        db.selectFrom('quarantine').select((eb) => eb.fn.countAll<number>().as('n')).where('released_at', 'is', null).where('deleted_at', 'is', null).executeTakeFirstOrThrow(),
      ]);
      const count = (v: string) => Number(totals.find((r) => r.verdict === v)?.n ?? 0);
      const all = totals.reduce((s, r) => s + Number(r.n), 0);
      const volume = totals.reduce((s, r) => s + Number(r.bytes ?? 0), 0);
      const tabs = (Object.keys(RANGES) as RangeName[]).map(
        (r) => html`<a href="/${qs({ range: r === 'hour' ? undefined : r })}"${r === range ? html` class="on" aria-current="true"` : ''}>${RANGES[r].label}</a>`,
      );
      const src = `/api/dashboard/series${qs({ range })}`;
      const body = html`
<div class="head"><h1>Dashboard</h1><nav class="tabs">${tabs}</nav></div>
<section class="stats">
  <div><b>${all.toLocaleString('en')}</b><span>messages</span></div>
  <div class="v-clean"><b>${count('clean').toLocaleString('en')}</b><span>clean</span></div>
  <div class="v-infected"><b>${count('infected').toLocaleString('en')}</b><span>infected</span></div>
  <div class="v-banned"><b>${count('banned').toLocaleString('en')}</b><span>banned</span></div>
  <div class="v-unscannable"><b>${count('unscannable').toLocaleString('en')}</b><span>unscannable</span></div>
  <div><b>${bytes(volume)}</b><span>received</span></div>
  <div><b><a href="/quarantine">${Number(held.n).toLocaleString('en')}</a></b><span>held in quarantine</span></div>
</section>
<section class="charts">
  <figure class="panel"><figcaption>Messages per minute by verdict</figcaption><div class="chart" data-src="${src}" data-group="verdict" role="img" aria-label="Messages per minute by verdict"></div></figure>
  <figure class="panel"><figcaption>Messages per minute by action</figcaption><div class="chart" data-src="${src}" data-group="action" role="img" aria-label="Messages per minute by action"></div></figure>
</section>
<section class="cols">
  <div class="panel">
    <h2>Top malware and failed tests</h2>
    ${malware.rows.length === 0
      ? html`<p class="empty">Nothing infected, banned or unscannable in this range.</p>`
      : html`<table class="grid"><thead><tr><th>Name or test</th><th>Verdict</th><th class="num">Messages</th><th class="num">Sources</th><th>Last seen (UTC)</th></tr></thead><tbody>
      ${malware.rows.map((r) => html`<tr><td class="mono"><a href="/trace${qs({ verdict: r.verdict, from: from.toISOString() })}">${clip(r.name ?? r.verdict, 70)}</a></td><td><span class="badge v-${r.verdict}">${r.verdict}</span></td><td class="num">${r.n}</td><td class="num">${r.sources}</td><td class="nowrap">${utc(r.last)}</td></tr>`)}
      </tbody></table>`}
  </div>
  <div class="panel">
    <h2>Top source networks</h2>
    ${networks.rows.length === 0
      ? html`<p class="empty">No messages in this range.</p>`
      : html`<table class="grid"><thead><tr><th>Network (/24, /48)</th><th class="num">Not clean</th><th class="num">All</th><th>Last seen (UTC)</th></tr></thead><tbody>
      ${networks.rows.map((r) => html`<tr><td class="mono"><a href="/trace${qs({ ip: r.net, from: from.toISOString() })}">${r.net}</a></td><td class="num${r.bad > 0 ? ' bad' : ''}">${r.bad}</td><td class="num">${r.total}</td><td class="nowrap">${utc(r.last)}</td></tr>`)}
      </tbody></table>`}
  </div>
</section>`;
      return ctx.render(request, reply, { title: 'Dashboard', slot: 'dashboard', body, scripts: ['/assets/vendor/uplot/uPlot.iife.min.js', '/assets/dashboard.js'] });
    });
  },
};
