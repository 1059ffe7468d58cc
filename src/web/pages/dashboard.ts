/*
 * web/pages/dashboard — what is happening, at a glance: messages per minute
 * by verdict and by action over the last hour, day or week (drawn in the page
 * by uPlot from /api/dashboard/series, refreshed while the page is open), the
 * top malware names and failed tests, the networks (/24 for IPv4, /48 for
 * IPv6) sending the most that was not clean, what the backscatter shield
 * refused, the notices and reports sent, and a banner when a malware name's
 * rate jumps (web/outbreak decides; /api/dashboard/outbreaks serves it).
 *
 * Reads the message log, the job queue and the backscatter record; every
 * query is bounded by the time range and a LIMIT. Malware names, actions and
 * client networks are peer-influenced strings: escaped by html``, cut by clip().
 */
import { sql } from 'kysely';
import { bytes, clip, html, qs, utc, type SafeHtml } from '../html.ts';
import { OUTBREAK_DEFAULTS, outbreaks, type Outbreak, type OutbreakSettings } from '../outbreak.ts';
import { noQuery } from '../schemas.ts';
import type { ConsolePage } from './registry.ts';

export const RANGES = {
  // refreshSeconds: how often an open page asks again; longer ranges change slower and cost more to count.
  hour: { ms: 3_600_000, bucketSeconds: 60, refreshSeconds: 5, label: 'Last hour' },
  day: { ms: 86_400_000, bucketSeconds: 600, refreshSeconds: 60, label: 'Last day' },
  week: { ms: 7 * 86_400_000, bucketSeconds: 3600, refreshSeconds: 300, label: 'Last week' },
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
    required: ['range', 'bucketSeconds', 't', 'verdict', 'action', 'totals'],
    properties: {
      range: { type: 'string' },
      bucketSeconds: { type: 'integer' },
      t: { type: 'array', items: { type: 'number' } },
      verdict: { type: 'object', additionalProperties: { type: 'array', items: { type: 'number' } } },
      action: { type: 'object', additionalProperties: { type: 'array', items: { type: 'number' } } },
      totals: { type: 'object', additionalProperties: { type: 'integer' } },
    },
  },
} as const;

const outbreakResponse = {
  200: {
    type: 'object',
    required: ['recentMinutes', 'baselineMinutes', 'outbreaks'],
    properties: {
      recentMinutes: { type: 'integer' },
      baselineMinutes: { type: 'integer' },
      outbreaks: {
        type: 'array',
        items: {
          type: 'object',
          required: ['name', 'recent', 'baseline', 'recentRate', 'ratio'],
          properties: { name: { type: 'string' }, recent: { type: 'integer' }, baseline: { type: 'integer' }, recentRate: { type: 'number' }, ratio: { type: 'number' } },
        },
      },
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
  /** Messages in the range by verdict (the stat tiles the page refreshes). */
  totals: Record<string, number>;
}

/** The shield's refusals are logged with an action that names it ("backscatter-refuse", …). */
const BACKSCATTER_ACTION = 'backscatter%';

/** The outbreak banner: names, counts and how steep the rise is. Also rebuilt by dashboard.js from the same endpoint. */
function outbreakBanner(found: Outbreak[], settings: OutbreakSettings): SafeHtml {
  return html`<div class="outbreak" role="alert" data-src="/api/dashboard/outbreaks"${found.length ? '' : html` hidden`}>
  <b>Outbreak:</b> <span class="names">${found.slice(0, 5).map((o, i) => html`${i ? ', ' : ''}<a class="mono" href="/trace${qs({ verdict: 'infected', from: new Date(Date.now() - settings.recentMinutes * 60_000).toISOString() })}">${clip(o.name, 60)}</a> ${o.recent} in ${settings.recentMinutes} min (${o.ratio >= 100 ? '100+' : o.ratio.toFixed(0)}× its rate in the ${settings.baselineMinutes} min before)`)}</span>
</div>`;
}

export const page: ConsolePage = {
  slot: 'dashboard',
  label: 'Dashboard',
  path: '/',
  role: 'analyst',
  routes(app, ctx) {
    const db = ctx.db;
    const settings: OutbreakSettings = ctx.deps.config?.web.outbreak ?? OUTBREAK_DEFAULTS;

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
      const totals: Record<string, number> = Object.fromEntries(VERDICTS.map((v) => [v, 0]));
      for (const row of rows.rows) {
        const i = index.get(Number(row.t));
        if (i === undefined) continue;
        (verdict[row.verdict] ??= t.map(() => 0))[i]! += row.n * perMinute;
        (action[row.action] ??= t.map(() => 0))[i]! += row.n * perMinute;
        totals[row.verdict] = (totals[row.verdict] ?? 0) + row.n;
      }
      return { range, bucketSeconds, t, verdict, action, totals };
    }

    /** Detections per malware name in the recent window and the baseline window before it, judged by web/outbreak. */
    async function currentOutbreaks(now = Date.now()): Promise<Outbreak[]> {
      const { recentMinutes, baselineMinutes } = settings;
      const split = new Date(now - recentMinutes * 60_000);
      const start = new Date(split.getTime() - baselineMinutes * 60_000);
      const rows = await sql<{ name: string; recent: number; baseline: number }>`
        select verdict_detail as name,
               (count(*) filter (where received_at >= ${split}))::int as recent,
               (count(*) filter (where received_at < ${split}))::int as baseline
        from messages
        where received_at >= ${start} and verdict = 'infected' and verdict_detail is not null
        group by 1
        having count(*) filter (where received_at >= ${split}) >= ${settings.minRecent}
        order by recent desc limit 50`.execute(db);
      return outbreaks(rows.rows, settings);
    }

    app.get('/api/dashboard/series', { config: { role: 'analyst' }, schema: { querystring: rangeQuery, response: seriesResponse } }, async (request) => {
      const { range } = request.query as { range: RangeName };
      return series(range);
    });

    app.get('/api/dashboard/outbreaks', { config: { role: 'analyst' }, schema: { querystring: noQuery, response: outbreakResponse } }, async () => ({
      recentMinutes: settings.recentMinutes,
      baselineMinutes: settings.baselineMinutes,
      outbreaks: await currentOutbreaks(),
    }));

    app.get('/', { config: { role: 'analyst' }, schema: { querystring: rangeQuery } }, async (request, reply) => {
      const { range } = request.query as { range: RangeName };
      const from = new Date(Date.now() - RANGES[range].ms);
      const [totals, malware, networks, held, shieldLogged, shieldEvents, sent, found] = await Promise.all([
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
        sql<{ action: string; n: number }>`
          select action, count(*)::int as n from messages
          where received_at >= ${from} and action like ${BACKSCATTER_ACTION}
          group by 1 order by n desc limit 20`.execute(db),
        // The shield's own record of each bounce it judged (store 0200).
        sql<{ class: string; action: string; n: number }>`
          select class, action, count(*)::int as n from backscatter_events
          where received_at >= ${from} and verdict = 'backscatter'
          group by 1, 2 order by n desc limit 20`
          .execute(db)
          .then((r) => r.rows),
        sql<{ kind: string; sent: number; waiting: number; review: number; failed: number }>`
          select kind,
                 (count(*) filter (where state = 'done'))::int as sent,
                 (count(*) filter (where state in ('queued', 'running')))::int as waiting,
                 (count(*) filter (where state = 'review'))::int as review,
                 (count(*) filter (where state = 'failed'))::int as failed
          from jobs where done_at >= ${from} or state in ('queued', 'running', 'review', 'failed')
          group by 1 order by 1 limit 50`.execute(db),
        currentOutbreaks(),
      ]);
      const count = (v: string) => Number(totals.find((r) => r.verdict === v)?.n ?? 0);
      const all = totals.reduce((s, r) => s + Number(r.n), 0);
      const volume = totals.reduce((s, r) => s + Number(r.bytes ?? 0), 0);
      const refusedLogged = shieldLogged.rows.reduce((s, r) => s + r.n, 0);
      const sentTotal = sent.rows.reduce((s, r) => s + r.sent, 0);
      const tabs = (Object.keys(RANGES) as RangeName[]).map(
        (r) => html`<a href="/${qs({ range: r === 'hour' ? undefined : r })}"${r === range ? html` class="on" aria-current="true"` : ''}>${RANGES[r].label}</a>`,
      );
      const src = `/api/dashboard/series${qs({ range })}`;
      const tile = (v: string) => html`<div class="v-${v}" data-verdict="${v}"><b>${count(v).toLocaleString('en')}</b><span>${v}</span></div>`;
      const body = html`
<div class="head"><h1>Dashboard</h1><nav class="tabs">${tabs}</nav></div>
${outbreakBanner(found, settings)}
<section class="stats" data-src="${src}">
  <div data-verdict="all"><b>${all.toLocaleString('en')}</b><span>messages</span></div>
  ${VERDICTS.map(tile)}
  <div><b>${bytes(volume)}</b><span>received</span></div>
  <div><b><a href="/quarantine">${Number(held.n).toLocaleString('en')}</a></b><span>held in quarantine</span></div>
  <div><b>${refusedLogged.toLocaleString('en')}</b><span>backscatter refused</span></div>
  <div><b><a href="/outbox${qs({ state: 'done' })}">${sentTotal.toLocaleString('en')}</a></b><span>notices and reports sent</span></div>
</section>
<section class="charts" data-refresh="${RANGES[range].refreshSeconds}">
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
  <div class="panel">
    <h2>Backscatter shield</h2>
    ${shieldLogged.rows.length === 0 && shieldEvents.length === 0
      ? html`<p class="empty">No backscatter refused or judged in this range.</p>`
      : html`<table class="grid"><thead><tr><th>Source</th><th>What</th><th class="num">Messages</th></tr></thead><tbody>
      ${shieldLogged.rows.map((r) => html`<tr><td>message log</td><td class="mono"><a href="/trace${qs({ action: r.action, from: from.toISOString() })}">${clip(r.action, 40)}</a></td><td class="num">${r.n}</td></tr>`)}
      ${shieldEvents.map((r) => html`<tr><td>bounces judged backscatter</td><td class="mono">${r.class} → ${r.action}</td><td class="num">${r.n}</td></tr>`)}
      </tbody></table>`}
  </div>
  <div class="panel">
    <h2>Notices and reports</h2>
    ${sent.rows.length === 0
      ? html`<p class="empty">Nothing sent or waiting in this range.</p>`
      : html`<table class="grid"><thead><tr><th>Kind</th><th class="num">Sent</th><th class="num">Waiting</th><th class="num">For review</th><th class="num">Failed</th></tr></thead><tbody>
      ${sent.rows.map((r) => html`<tr><td class="mono"><a href="/outbox${qs({ kind: r.kind })}">${r.kind}</a></td><td class="num">${r.sent}</td><td class="num">${r.waiting}</td><td class="num${r.review > 0 ? ' bad' : ''}">${r.review}</td><td class="num${r.failed > 0 ? ' bad' : ''}">${r.failed}</td></tr>`)}
      </tbody></table>`}
  </div>
</section>`;
      return ctx.render(request, reply, { title: 'Dashboard', slot: 'dashboard', body, scripts: ['/assets/vendor/uplot/uPlot.iife.min.js', '/assets/dashboard.js'] });
    });
  },
};
