/*
 * test/web/helpers — a console over an in-memory store, users, a cookie jar
 * for inject(), and hostile mail data to feed every page.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { silentLogger } from '../../src/obs/log.ts';
import { quarantineMessage } from '../../src/store/quarantine.ts';
import type { Store } from '../../src/store/store.ts';
import { addUser } from '../../src/web/auth/users.ts';
import type { WebDeps } from '../../src/web/deps.ts';
import { buildWebApp } from '../../src/web/server.ts';
import { openTestStore, STORE_KINDS } from '../helpers/pg.ts';

export const PASSWORD = 'correct horse battery';

export async function withUsers(store: Store): Promise<void> {
  await addUser(store.db, 'admin', 'admin', PASSWORD);
  await addUser(store.db, 'ana', 'analyst', PASSWORD);
}

/**
 * Declares `body`'s tests twice: on an in-memory PGlite and on a fresh
 * PostgreSQL database, each with the test users. `store()` is the run's store.
 */
export function onEachStore(title: string, prefix: string, body: (store: () => Store) => void): void {
  for (const kind of STORE_KINDS) {
    describe(`${title} on ${kind}`, () => {
      let store: Store;
      let close: () => Promise<void>;
      before(async () => {
        ({ store, close } = await openTestStore(kind, prefix));
        await withUsers(store);
      });
      after(() => close());
      body(() => store);
    });
  }
}

export function app(store: Store, extra: Partial<WebDeps> = {}): FastifyInstance {
  return buildWebApp({ store, logger: silentLogger, nodeName: 'test-node', ...extra });
}

/** A browser's cookies, as far as inject() needs them. */
export class Client {
  cookies: Record<string, string> = {};
  constructor(readonly app: FastifyInstance, readonly ip = '127.0.0.1') {}

  private keep(res: LightMyRequestResponse): LightMyRequestResponse {
    for (const c of res.cookies as { name: string; value: string; maxAge?: number; expires?: Date }[]) {
      if (c.value === '' || c.maxAge === 0 || (c.expires && c.expires.getTime() < Date.now())) delete this.cookies[c.name];
      else this.cookies[c.name] = c.value;
    }
    return res;
  }

  async get(url: string): Promise<LightMyRequestResponse> {
    return this.keep(await this.app.inject({ method: 'GET', url, cookies: this.cookies, remoteAddress: this.ip }));
  }

  async post(url: string, form: Record<string, string>): Promise<LightMyRequestResponse> {
    return this.keep(
      await this.app.inject({
        method: 'POST',
        url,
        cookies: this.cookies,
        remoteAddress: this.ip,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: new URLSearchParams(form).toString(),
      }),
    );
  }

  /** GETs a page with a form and POSTs to `action` with that form's CSRF token. */
  async submit(pageUrl: string, action: string, form: Record<string, string> = {}): Promise<LightMyRequestResponse> {
    const page = await this.get(pageUrl);
    return this.post(action, { _csrf: csrfOf(page.body), ...form });
  }

  async login(name: string, password = PASSWORD, next?: string): Promise<LightMyRequestResponse> {
    return this.submit('/login', '/login', { name, password, ...(next ? { next } : {}) });
  }
}

export function csrfOf(body: string): string {
  const m = /name="_csrf" value="([^"]+)"/.exec(body);
  if (!m) throw new Error('no CSRF field on the page');
  return m[1]!;
}

export async function loggedIn(appInstance: FastifyInstance, name: 'admin' | 'ana'): Promise<Client> {
  const c = new Client(appInstance);
  const res = await c.login(name);
  if (res.statusCode !== 303) throw new Error(`login as ${name} failed: ${res.statusCode}`);
  return c;
}

// Hostile values from mail: markup, attribute breakers, CRLF header injection, a right-to-left override, a 10 kB string.
export const HOSTILE = {
  subject: `<script>alert("subject")</script>\r\nX-Injected: 1 \u202Egpj.exe <img src=x onerror=alert(1)> ${'A'.repeat(10_000)}`,
  mailFrom: `"><script>alert('from')</script>@evil.example`,
  rcpt: `victim+"onmouseover="alert(1)@example.net`,
  helo: `<iframe src=//evil.example>`,
  messageId: `<x"'><script>alert('mid')</script>@evil>`,
  detail: `Worm.<b>Mydoom</b>\u202Etxt.exe`,
  filename: `\u202Etxt.exe<script>alert('file')</script>.pif`,
};

export function hostileMessage(): Buffer {
  const boundary = 'BOUNDARY';
  return Buffer.from(
    [
      `From: ${HOSTILE.mailFrom}`,
      `To: ${HOSTILE.rcpt}`,
      `Subject: <script>alert("hdr")</script> \u202Egpj.exe`,
      `Message-ID: ${HOSTILE.messageId}`,
      'MIME-Version: 1.0',
      `Content-Type: multipart/mixed; boundary="${boundary}"`,
      '',
      `--${boundary}`,
      'Content-Type: text/html; charset=utf-8',
      '',
      '<html><body><script>alert("body")</script><h1>RENDERED-BODY</h1></body></html>',
      `--${boundary}`,
      `Content-Type: application/octet-stream; name="${HOSTILE.filename}"`,
      `Content-Disposition: attachment; filename="${HOSTILE.filename}"`,
      'Content-Transfer-Encoding: base64',
      '',
      Buffer.from('MZ pretend program').toString('base64'),
      `--${boundary}--`,
      '',
    ].join('\r\n'),
  );
}

/** One message-log row, with a quarantine record when `quarantine` is set. */
export async function insertMessage(
  store: Store,
  m: Partial<{ receivedAt: Date; clientIp: string; mailFrom: string; rcpt: string[]; subject: string | null; messageId: string | null; helo: string; verdict: string; detail: string | null; action: string; quarantine: Buffer }> = {},
): Promise<{ id: string; quarantineId: string | null }> {
  const id = randomUUID();
  const verdict = m.verdict ?? 'clean';
  let quarantineId: string | null = null;
  if (m.quarantine) {
    quarantineId = await quarantineMessage(store.db, {
      messageLogId: id,
      clientIp: m.clientIp ?? '192.0.2.10',
      helo: m.helo ?? 'client.example',
      mailFrom: m.mailFrom ?? 'sender@example.org',
      rcptTo: m.rcpt ?? ['user@example.net'],
      messageId: m.messageId ?? null,
      subject: m.subject ?? null,
      verdict,
      verdictDetail: m.detail ?? null,
      raw: m.quarantine,
    });
  }
  await store.db
    .insertInto('messages')
    .values({
      id,
      received_at: m.receivedAt ?? new Date(),
      node: 'n1',
      client_ip: m.clientIp ?? '192.0.2.10',
      client_port: 40000,
      helo: m.helo ?? 'client.example',
      mail_from: m.mailFrom ?? 'sender@example.org',
      rcpt_to: m.rcpt ?? ['user@example.net'],
      message_id: m.messageId ?? null,
      subject: m.subject ?? null,
      size: m.quarantine?.length ?? 1234,
      verdict,
      verdict_detail: m.detail ?? null,
      action: m.action ?? (verdict === 'clean' ? 'deliver' : m.quarantine ? 'quarantine' : 'reject'),
      reply: verdict === 'clean' ? '250 2.0.0 Ok' : '550 5.7.1 Message refused',
      scan_ms: 3.2,
      quarantine_id: quarantineId,
    })
    .execute();
  return { id, quarantineId };
}

/** What must never appear raw in a page built from hostile mail (HOSTILE, hostileMessage). */
export function assertInert(body: string, where: string): void {
  const scripts = body.match(/<script[^>]*>/g) ?? [];
  for (const tag of scripts) assert.match(tag, /^<script src="\/assets\//, `${where}: only our own scripts`);
  // The console writes <b> itself; the one from mail is the one around "Mydoom".
  assert.doesNotMatch(body, /<(img|iframe)\b[^>]*>|<b>Mydoom/i, `${where}: no markup from mail`);
  // A real tag (its "<" unescaped) with an on…= attribute outside a quoted value; escaped text may say "onerror=" harmlessly.
  for (const tag of body.match(/<[a-z][^>]*>/gi) ?? []) {
    assert.doesNotMatch(tag.replace(/"[^"]*"/g, '""'), /\son[a-z]+\s*=/i, `${where}: no event handler from mail in ${tag.slice(0, 120)}`);
  }
  assert.doesNotMatch(body, /[\u202a-\u202e\u2066-\u2069]/, `${where}: no bidi override`);
  assert.doesNotMatch(body, /\r/, `${where}: no CR`);
  assert.doesNotMatch(body, /RENDERED-BODY/, `${where}: the body is never shown`);
  assert.doesNotMatch(body, /\nX-Injected/, `${where}: a CRLF in a value does not start a line`);
}
