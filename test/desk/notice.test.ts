/*
 * The customer notice (pure composition, parsed back with postal-mime) and
 * the desk: configuration section's defaults and refusals.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import PostalMime from 'postal-mime';
import { configSchema } from '../../src/config/schema.ts';
import { composeCustomerNotice, noticeLanguage } from '../../src/desk/notice.ts';

const base = {
  contact: { name: 'Jean\r\nBcc: evil@example.org', email: 'jean@customer.example', language: 'fr', time_zone: 'America/New_York' },
  evidence: [{ observedAt: new Date('2026-07-01T12:00:00Z'), ip: '192.0.2.9', malware: ['Win.Trojan.Agent'], summary: 'x' }],
  portalUrl: 'https://portal.isp.example/portal/abc',
  graceUntil: new Date('2026-07-04T12:00:00Z'),
  from: 'Abuse desk <abuse@isp.example>',
  messageId: '<n1@isp.example>',
  now: new Date('2026-07-01T12:05:00Z'),
};

test('unknown language falls back to the default (en); times in the customer zone; no header injection through the name', async () => {
  const raw = await composeCustomerNotice({ ...base, reason: 'opened' });
  const m = await PostalMime.parse(raw);
  assert.equal(m.subject, 'Security notice about your Internet connection');
  assert.equal(m.to?.[0]?.address, 'jean@customer.example');
  assert.equal(m.bcc, undefined);
  assert.match(m.text ?? '', /Dear Jean Bcc: evil@example\.org,/);
  assert.match(m.text ?? '', /2026-07-01 08:00:00 EDT, address 192\.0\.2\.9: Win\.Trojan\.Agent/);
  assert.match(m.text ?? '', /If the problem is not solved by 2026-07-04 08:00:00 EDT,/);
  assert.match(m.text ?? '', /https:\/\/portal\.isp\.example\/portal\/abc/);
  assert.ok(m.headers.some((h) => h.key === 'auto-submitted' && h.value === 'auto-generated'));
});

test('configured texts replace the built-in ones per language and reason; the default language is configurable', async () => {
  const texts = { fr: { restricted: { subject: 'Connexion restreinte', body: 'Bonjour {name}, voir {portal}\n{evidence}' } } };
  assert.equal(noticeLanguage('fr-CA', texts), 'fr');
  assert.equal(noticeLanguage('it', texts, 'de'), 'de');
  assert.equal(noticeLanguage('it', {}, 'xx'), 'en');
  const m = await PostalMime.parse(await composeCustomerNotice({ ...base, reason: 'restricted', texts }));
  assert.equal(m.subject, 'Connexion restreinte');
  assert.match(m.text ?? '', /^Bonjour Jean Bcc: evil@example\.org, voir https:\/\/portal\.isp\.example\/portal\/abc/);
  // a reason the configured language does not have comes from the built-in texts (en, as fr has none)
  const r = await PostalMime.parse(await composeCustomerNotice({ ...base, reason: 'recurrence', texts }));
  assert.equal(r.subject, 'Your Internet connection has been restricted again');
  const de = await PostalMime.parse(await composeCustomerNotice({ ...base, contact: { ...base.contact, language: 'it' }, reason: 'opened', defaultLanguage: 'de' }));
  assert.equal(de.subject, 'Sicherheitshinweis zu Ihrem Internetanschluss');
});

test('desk: configuration — defaults, and refusals that name the key and what was expected', () => {
  const parse = (desk: unknown) => configSchema.safeParse({ nextHop: 'smtp://127.0.0.1:25', store: 'pglite-memory:', desk });
  const ok = parse({});
  assert.ok(ok.success);
  assert.equal(ok.data.desk!.graceHours, 72);
  assert.equal(ok.data.desk!.probationDays, 14);
  assert.equal(ok.data.desk!.selfReleases, 2);
  assert.equal(ok.data.desk!.restriction.level, 'walled-garden');
  assert.deepEqual(ok.data.desk!.restriction.allowed.map((a) => `${a.name}:${a.proto}/${a.ports.join(',')}`), ['dns:udp/53', 'dns-tcp:tcp/53', 'dhcp:udp/67,547', 'submission:tcp/587']);
  assert.equal(ok.data.desk!.portal.tokenTtl, 30 * 86_400_000);
  const cases: [unknown, RegExp, string][] = [
    [{ restriction: { level: 'bounce' } }, /restriction\.level/, 'expected one of'],
    [{ graceHours: 0 }, /graceHours/, 'greater than 0'],
    [{ selfReleases: -1 }, /selfReleases/, 'must not be negative'],
    [{ restriction: { smarthost: ['192.0.2.300'] } }, /restriction\.smarthost\.0/, 'expected an IP address or CIDR'],
    [{ enforcement: { webhook: { url: 'http://h/x', secret: 'short' } } }, /enforcement\.webhook\.secret/, 'at least 16'],
    [{ enforcement: { listToken: 'short' } }, /enforcement\.listToken/, 'at least 16'],
    [{ portal: { tokenTtl: '30 days' } }, /portal\.tokenTtl/, 'duration'],
    [{ portal: { baseUrl: 'javascript:alert(1)' } }, /portal\.baseUrl/, 'URL'],
    [{ restriction: { allowed: [{ name: 'x"; drop', proto: 'tcp', ports: [80] }] } }, /restriction\.allowed\.0\.name/, 'letters'],
    [{ unknownKey: 1 }, /desk|unknownKey/, 'nrecognized'],
  ];
  for (const [desk, path, message] of cases) {
    const r = parse(desk);
    assert.equal(r.success, false, JSON.stringify(desk));
    const issue = r.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}${'keys' in i ? ` ${(i as { keys: string[] }).keys.join(',')}` : ''}`).join('\n');
    assert.match(issue, path, issue);
    assert.ok(issue.includes(message), `${issue} should say ${message}`);
  }
});
