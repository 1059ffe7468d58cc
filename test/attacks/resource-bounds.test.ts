/*
 * Resource bounds under attack, against a real node (`backstop serve` in its
 * own process, PGlite on disk, a private clamd, Postfix's smtp-sink as next
 * hop). Each attack is named; for each: the reply the sender gets, nothing
 * of it at the next hop unless it is harmless and whole, and the node still
 * serving clean mail afterwards. Then all of them at once, with the node's
 * peak RSS (VmHWM) printed and held under a stated bound.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync, zipSync } from 'fflate';
import { freePort, startBackstop, startSmtpSink, type RunningProcess, type SmtpSink } from '../../src/replay/processes.ts';
import { startClamd, type RunningClamd } from '../../src/replay/clamd.ts';
import { waitFor } from '../helpers/gateway.ts';
import { cleanMessage, SmtpTalk } from '../helpers/smtp-talk.ts';

const MAX_MESSAGE_BYTES = 8 * 1024 * 1024;
/** The stated bound: what the attacks together may add to the node's resident memory. */
const MAX_ADDED_RSS_MB = 300;

function status(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** A multipart message with the given parts (each already a whole MIME entity). */
function multipart(subject: string, parts: string[], boundary = 'b0undary'): string {
  return [
    'From: attacker@example.org',
    'To: user@example.net',
    `Subject: ${subject}`,
    `Message-ID: <${subject.replace(/\W/g, '')}.${randomBytes(4).toString('hex')}@example.org>`,
    'MIME-Version: 1.0',
    `Content-Type: multipart/mixed; boundary="${boundary}"`,
    '',
    ...parts.flatMap((p) => [`--${boundary}`, p]),
    `--${boundary}--`,
    '',
  ].join('\r\n');
}

function attachment(name: string, bytes: Uint8Array, type = 'application/octet-stream'): string {
  const b64 = Buffer.from(bytes).toString('base64').replace(/.{76}/g, '$&\r\n');
  return `Content-Type: ${type}; name="${name}"\r\nContent-Disposition: attachment; filename="${name}"\r\nContent-Transfer-Encoding: base64\r\n\r\n${b64}`;
}

/** A zip holding `inner` under `name`, `levels` times over. */
function nestedZip(levels: number, inner: Uint8Array, name: string): Uint8Array {
  let bytes = inner;
  for (let i = 0; i < levels; i++) bytes = zipSync({ [i === 0 ? name : `level${i}.zip`]: [bytes, { level: 0 }] });
  return bytes;
}

/** What each attack is, and what the sender must hear (a regular expression over "code text"). */
interface Attack {
  name: string;
  message: () => string | Buffer;
  expect: RegExp;
  /** Whether the next hop may receive it (harmless, whole, within limits). */
  mayArrive: boolean;
}

const zeros = (n: number) => new Uint8Array(n);

const ATTACKS: Attack[] = [
  {
    name: 'zip bomb: one 208 MB deflate entry in a small zip',
    message: () => multipart('zip bomb', [attachment('invoice.zip', zipSync({ 'invoice.txt': [zeros(208 * 1024 * 1024), { level: 1 }] }))]),
    expect: /^(451|550|554) /,
    mayArrive: false,
  },
  {
    name: 'gzip bomb: 1 GB of zeros as a .gz attachment',
    message: () => multipart('gzip bomb', [attachment('log.gz', gzipSync(zeros(1024 * 1024 * 1024), { level: 1 }))]),
    expect: /^(451|550|554) /,
    mayArrive: false,
  },
  {
    name: 'deep archive: a zip nested 12 levels',
    message: () => multipart('deep archive', [attachment('deep.zip', nestedZip(12, Buffer.from('hello'), 'readme.txt'))]),
    expect: /^(451|550|554) /,
    mayArrive: false,
  },
  {
    name: 'wide archive: 5,000 entries in one zip',
    message: () => multipart('wide archive', [attachment('wide.zip', zipSync(Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`f${i}.txt`, Buffer.from(`${i}`)]))))]),
    expect: /^(451|550|554) /,
    mayArrive: false,
  },
  {
    name: 'MIME nested 40 levels deep (limit 20)',
    message: () => {
      let body = 'Content-Type: text/plain\r\n\r\ninnermost\r\n';
      for (let i = 0; i < 40; i++) body = `Content-Type: multipart/mixed; boundary="n${i}"\r\n\r\n--n${i}\r\n${body}\r\n--n${i}--\r\n`;
      return `From: attacker@example.org\r\nTo: user@example.net\r\nSubject: deep mime\r\nMIME-Version: 1.0\r\n${body}`;
    },
    expect: /^(451|550|554) /,
    mayArrive: false,
  },
  {
    name: '30,000 MIME parts (limit 500)',
    message: () => multipart('many parts', Array.from({ length: 30_000 }, (_, i) => `Content-Type: text/plain\r\n\r\npart ${i}`)),
    expect: /^(451|550|554) /,
    mayArrive: false,
  },
  {
    name: 'a 1 MB header line',
    message: () => `From: attacker@example.org\r\nTo: user@example.net\r\nSubject: ${'A'.repeat(1024 * 1024)}\r\n\r\nbody\r\n`,
    expect: /^(250|451|550|552|554) /,
    mayArrive: true,
  },
  {
    name: 'header flood: 100,000 header fields',
    message: () => `From: attacker@example.org\r\nTo: user@example.net\r\n${'X-Flood: y\r\n'.repeat(100_000)}Subject: flood\r\n\r\nbody\r\n`,
    expect: /^(250|451|550|552|554) /,
    mayArrive: true,
  },
  {
    name: 'encoded-word flood: 40,000 encoded words in Subject and a filename',
    message: () => multipart(`${'=?utf-8?B?w6k=?= '.repeat(40_000)}`, [attachment(`${'=?utf-8?Q?a?='.repeat(20_000)}.txt`, Buffer.from('hi'))]),
    expect: /^(250|451|550|554) /,
    mayArrive: true,
  },
  {
    name: 'bare LF line ends and NUL bytes around an EICAR attachment',
    message: () =>
      Buffer.from(
        multipart('bare lf', ['Content-Type: text/plain\r\n\r\nnul\0bytes\0here', attachment('eicar.com', Buffer.from('X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'))]).replace(/\r\n/g, '\n'),
        'latin1',
      ),
    expect: /^550 5\.7\.1 /,
    mayArrive: false,
  },
  {
    name: 'a message just under maxMessageBytes is scanned and delivered',
    message: () => multipart('at the limit', [attachment('data.bin', randomBytes(Math.floor((MAX_MESSAGE_BYTES - 64 * 1024) * 0.72)))]),
    expect: /^250 /,
    mayArrive: true,
  },
  {
    name: 'a message above maxMessageBytes is refused 552 while it arrives',
    message: () => multipart('above the limit', [attachment('data.bin', randomBytes(Math.floor(MAX_MESSAGE_BYTES * 0.8)))]),
    expect: /^552 5\.3\.4 /,
    mayArrive: false,
  },
];

/** Sends one raw message from its own client address; the final reply as "code text". */
async function sendRaw(port: number, client: string, raw: string | Buffer): Promise<string> {
  // Generous waits: under "all at once" the node is busy inflating bombs beside this session (no timing is asserted).
  const c = await SmtpTalk.open(port, client, 60_000);
  try {
    await c.hello();
    for (const line of ['MAIL FROM:<attacker@example.org>', 'RCPT TO:<user@example.net>']) {
      const r = await c.command(line);
      if (r?.code !== 250) return `${r?.code} ${r?.text}`;
    }
    const go = await c.command('DATA');
    if (go?.code !== 354) return `${go?.code} ${go?.text}`;
    const text = Buffer.isBuffer(raw) ? raw.toString('latin1') : raw;
    const stuffed = text.replace(/(^|\n)\./g, '$1..');
    // The end of DATA is always CRLF.CRLF (RFC 5321 §4.1.1.4), whatever line ends the message itself uses.
    c.write(Buffer.from(`${stuffed.replace(/\r?\n$/, '')}\r\n.\r\n`, 'latin1'));
    const r = await c.reply(120_000);
    return r ? `${r.code} ${r.text}` : 'closed';
  } finally {
    c.close();
  }
}

describe('resource bounds against a real node', () => {
  let clamd: RunningClamd;
  let sink: SmtpSink;
  let node: RunningProcess;
  let port: number;
  let baselineMb = 0;
  const subjectsArrived = () => sink.messages().map((m) => /^Subject: (.{0,80})/m.exec(m)?.[1] ?? '');

  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bs-attack-'));
    // clamd reads whole messages up to maxMessageBytes here, so "at the limit" is scanned, not refused for size.
    clamd = await startClamd({ streamMaxLength: '16M', maxFileSize: '16M', maxScanSize: '64M' });
    sink = await startSmtpSink(join(dir, 'sink'));
    port = await freePort();
    node = await startBackstop(join(dir, 'node'), {
      dataDir: join(dir, 'node', 'data'),
      smtp: { listen: `127.0.0.1:${port}`, hostname: 'mx.example.net', greetingDelayMs: 0, maxMessageBytes: MAX_MESSAGE_BYTES, limits: { exempt: [] } },
      domains: ['example.net'],
      nextHop: `smtp://127.0.0.1:${sink.port}`,
      clamd: clamd.url,
      store: `pglite:${join(dir, 'node', 'db')}`,
      web: { listen: `127.0.0.1:${await freePort()}` },
      log: { level: 'warn' },
    });
    // The node's resident size once it serves: what the attacks are measured against.
    assert.match(await sendRaw(port, '127.0.1.1', cleanMessage('warm-up')), /^250 /);
    baselineMb = status(node.child.pid!, 'VmRSS');
  });
  after(async () => {
    await node?.stop();
    await sink?.stop();
    await clamd?.stop();
  });

  ATTACKS.forEach((attack, i) => {
    test(attack.name, async () => {
      const before = sink.messages().length;
      const reply = await sendRaw(port, `127.0.2.${i + 1}`, attack.message());
      assert.match(reply, attack.expect, `${attack.name}: the sender was told "${reply.slice(0, 200)}"`);
      if (!attack.mayArrive || !reply.startsWith('250')) {
        await new Promise((r) => setTimeout(r, 200));
        assert.equal(sink.messages().length, before, 'nothing reached the next hop');
      } else {
        await waitFor(() => sink.messages().length === before + 1, 10_000);
      }
      assert.match(await sendRaw(port, `127.0.3.${i + 1}`, cleanMessage(`after ${i}`)), /^250 /, 'the node still serves clean mail');
    });
  });

  test(`all attacks at once: each answered as alone, clean mail flows, peak RSS stays within ${MAX_ADDED_RSS_MB} MB of the serving node`, async () => {
    const messages = ATTACKS.map((a) => a.message());
    // The peak from here on, not PGlite's start-up peak: "5" to clear_refs resets VmHWM (Linux ≥ 4.0).
    writeFileSync(`/proc/${node.child.pid}/clear_refs`, '5');
    const serving = status(node.child.pid!, 'VmRSS');
    const replies = await Promise.all([
      ...ATTACKS.map((a, i) => sendRaw(port, `127.0.4.${i + 1}`, messages[i]!).then((r) => ({ attack: a, reply: r }))),
      ...Array.from({ length: 10 }, (_, i) => sendRaw(port, `127.0.5.${i + 1}`, cleanMessage(`during ${i}`)).then((r) => ({ attack: null, reply: r }))),
    ]);
    for (const { attack, reply } of replies) {
      if (attack) assert.match(reply, attack.expect, `${attack.name} (together): "${reply.slice(0, 200)}"`);
      else assert.match(reply, /^250 /, 'clean mail during the attacks');
    }
    const peak = status(node.child.pid!, 'VmHWM');
    console.log(`node RSS after warm-up: ${baselineMb.toFixed(0)} MB; before the attacks: ${serving.toFixed(0)} MB; peak (VmHWM) during all attacks at once: ${peak.toFixed(0)} MB; added: ${(peak - serving).toFixed(0)} MB (bound ${MAX_ADDED_RSS_MB} MB)`);
    assert.ok(peak - serving <= MAX_ADDED_RSS_MB, `peak RSS ${peak.toFixed(0)} MB is more than ${MAX_ADDED_RSS_MB} MB over the serving node's ${serving.toFixed(0)} MB`);
    assert.ok(!subjectsArrived().some((s) => /bomb|deep|wide|bare lf|above the limit/.test(s)), 'no attack reached the next hop');
  });
});
