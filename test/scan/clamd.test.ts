/*
 * The clamd adapter against a real, private clamd (src/replay/clamd.ts):
 * the protocol, the answers, and every way clamd can fail.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { strToU8 } from 'fflate';
import { ClamdClient, ClamdError, parseReply, signatureVersion } from '../../src/scan/clamd.ts';
import { CLAMAV_TESTFILES, EICAR, EICAR_SIGNATURE_NAME, startClamd, TEST_SIGNATURE_NAME, type RunningClamd } from '../../src/replay/clamd.ts';
import { noise } from './mail.ts';

let clamd: RunningClamd;
before(async () => {
  clamd = await startClamd();
});
after(() => clamd?.stop());

const replies: [string, unknown][] = [
  ['stream: OK', { kind: 'clean' }],
  ['stream: Win.Worm.Mydoom-1 FOUND', { kind: 'infected', name: 'Win.Worm.Mydoom-1' }],
];
for (const [reply, expected] of replies) {
  test(`parseReply(${JSON.stringify(reply)})`, () => assert.deepEqual(parseReply(reply), expected));
}

test('parseReply: ERROR answers are refusals, anything else is trouble; neither is clean', () => {
  assert.throws(() => parseReply('INSTREAM size limit exceeded. ERROR'), (e: ClamdError) => e.reason === 'refused' && e.message === 'clamd: INSTREAM size limit exceeded');
  assert.throws(() => parseReply('stream: Can\'t allocate memory ERROR'), (e: ClamdError) => e.reason === 'refused');
  assert.throws(() => parseReply(''), (e: ClamdError) => e.reason === 'unavailable');
  // AlertExceedsMax: clamd stopped reading at a limit. Not malware, and not looked at: refused, so unscannable.
  assert.throws(() => parseReply('stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND'), (e: ClamdError) => e.reason === 'refused' && /scan limit \(Heuristics\.Limits\.Exceeded\.MaxFileSize\)/.test(e.message));
  assert.throws(() => parseReply('stream: OKAY'), (e: ClamdError) => e.reason === 'unavailable');
});

test('PING and VERSION; the signature version is the one the database was built with', async () => {
  const client = new ClamdClient(clamd.url, 5000);
  assert.equal(await client.ping(), true);
  const version = await client.version();
  assert.match(version, /^ClamAV 1\.\d+\.\d+\/27000\//);
  assert.equal(signatureVersion(version), '27000');
});

test('INSTREAM over TCP and over the unix socket: clean, clam.exe, EICAR', async () => {
  for (const url of [clamd.url, clamd.unixUrl]) {
    const client = new ClamdClient(url, 5000);
    assert.deepEqual(await client.scan(strToU8('harmless text')), { kind: 'clean' });
    assert.deepEqual(await client.scan(readFileSync(join(CLAMAV_TESTFILES, 'clam.exe'))), { kind: 'infected', name: TEST_SIGNATURE_NAME });
    assert.deepEqual(await client.scan(strToU8(EICAR)), { kind: 'infected', name: EICAR_SIGNATURE_NAME });
  }
});

test('INSTREAM in several chunks: a file over 64 KiB with the signature near its end', async () => {
  const big = Buffer.concat([Buffer.from(noise(300_000)), Buffer.from(readFileSync(join(CLAMAV_TESTFILES, 'clam.exe')).subarray(0x40, 0xf4))]);
  assert.deepEqual(await new ClamdClient(clamd.url, 5000).scan(big), { kind: 'infected', name: TEST_SIGNATURE_NAME });
});

test('INSTREAM over StreamMaxLength (5M here): clamd refuses with "size limit exceeded", reported, not retried', async () => {
  const client = new ClamdClient(clamd.url, 10_000);
  await assert.rejects(client.scan(noise(6 * 1024 * 1024)), (e: ClamdError) => e.reason === 'refused' && /INSTREAM size limit exceeded/.test(e.message));
  assert.equal(client.scans, 1);
});

test('clamd down: connection refused, after exactly one retry', async () => {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise<void>((r) => server.close(() => r()));
  const client = new ClamdClient(`tcp://127.0.0.1:${port}`, 1000, 10);
  const started = performance.now();
  await assert.rejects(client.scan(strToU8('x')), (e: ClamdError) => e.reason === 'unavailable' && e.code === 'ECONNREFUSED');
  assert.ok(performance.now() - started < 3000, 'one retry after 10 ms, not a wait for the 1 s timeout over and over');
  assert.equal(await client.ping(), false);
});

test('clamd restarting: the one retry carries a scan across the restart', async () => {
  const client = new ClamdClient(clamd.url, 10_000, 1500);
  const restarting = clamd.restart();
  await new Promise((r) => setTimeout(r, 50)); // clamd is down now
  const answer = await client.scan(readFileSync(join(CLAMAV_TESTFILES, 'clam.exe')));
  await restarting;
  assert.deepEqual(answer, { kind: 'infected', name: TEST_SIGNATURE_NAME });
});

test('clamd hung (SIGSTOP): the call fails after its timeout, and is not retried', async () => {
  const client = new ClamdClient(clamd.url, 400);
  clamd.hang();
  try {
    const started = performance.now();
    await assert.rejects(client.scan(strToU8('x')), (e: ClamdError) => e.reason === 'unavailable' && e.code === 'ETIMEDOUT');
    const took = performance.now() - started;
    assert.ok(took >= 390 && took < 800, `${took} ms`);
  } finally {
    clamd.resume();
  }
});

test('an aborted call gives up at once and closes its connection', async () => {
  const client = new ClamdClient(clamd.url, 10_000);
  clamd.hang();
  try {
    const started = performance.now();
    await assert.rejects(client.scan(strToU8('x'), AbortSignal.timeout(100)), (e: ClamdError) => e.code === 'ABORTED');
    assert.ok(performance.now() - started < 3000, 'gave up long before the 10 s timeout');
  } finally {
    clamd.resume();
  }
});

test('a peer that talks nonsense is trouble, not clean', async () => {
  const server = createServer((s) => s.end('HELLO THERE\0'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  try {
    await assert.rejects(new ClamdClient(`tcp://127.0.0.1:${port}`, 1000).scan(strToU8('x')), (e: ClamdError) => e.reason === 'unavailable' && /unexpected answer "HELLO THERE"/.test(e.message));
  } finally {
    server.close();
  }
});

test('scans go over kept IDSESSION connections; one clamd closed while idle (a restart) is skipped at once', async () => {
  const client = new ClamdClient(clamd.url, 10_000, 5000);
  try {
    for (let i = 0; i < 5; i++) assert.deepEqual(await client.scan(strToU8(`harmless text ${i}`)), { kind: 'clean' });
    assert.deepEqual(await client.scan(readFileSync(join(CLAMAV_TESTFILES, 'clam.exe'))), { kind: 'infected', name: TEST_SIGNATURE_NAME });
    assert.equal(client.sessionsOpened, 1, 'six scans, one after another, on one connection');
    // Three at once: three connections, each kept afterwards.
    const answers = await Promise.all([1, 2, 3].map((i) => client.scan(strToU8(`text ${i}`))));
    assert.deepEqual(answers, [1, 2, 3].map(() => ({ kind: 'clean' })));
    assert.equal(client.sessionsOpened, 3);
    await clamd.restart();
    const started = performance.now();
    assert.deepEqual(await client.scan(strToU8(EICAR)), { kind: 'infected', name: EICAR_SIGNATURE_NAME });
    // The kept sessions died with the old clamd: skipped without the 5 s retry pause.
    assert.ok(performance.now() - started < 2000, `${performance.now() - started} ms`);
    assert.equal(client.sessionsOpened, 4);
  } finally {
    client.close();
  }
});

test('at most `connections` open to clamd, queued scans served in turn: past clamd\'s MaxQueue nothing stalls', async () => {
  // clamd accepts no connection while more than MaxQueue are open (idle sessions count). 40 scans at once used to
  // open 40 connections: the ones past MaxQueue waited in clamd's listen queue until kept sessions timed out (5 s).
  const small = await startClamd({ maxQueue: 8 });
  const client = new ClamdClient(small.url, 20_000, 250, { connections: 6 });
  try {
    const started = performance.now();
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => client.scan(strToU8(i % 10 === 0 ? EICAR : `text ${i} ${"x".repeat(200)}`))));
    const ms = performance.now() - started;
    assert.deepEqual(answers.filter((a) => a.kind === 'infected').length, 4);
    assert.ok(answers.every((a) => a.kind === 'clean' || a.kind === 'infected'));
    assert.ok(client.mostOpen <= 6, `at most 6 connections open, saw ${client.mostOpen}`);
    assert.ok(ms < 3000, `40 scans in ${ms.toFixed(0)} ms: none waited for an idle session to time out`);
    // A one-off command (VERSION, or a scan over 1 MiB) takes an idle session's place instead of waiting for it.
    const version = performance.now();
    assert.match(await client.version(), /^ClamAV /);
    assert.ok(performance.now() - version < 1000, 'VERSION did not wait for a kept session to time out');
    assert.ok(client.mostOpen <= 6);
  } finally {
    client.close();
    await small.stop();
  }
});

test('a scan waiting for a connection gives up with its deadline', async () => {
  const client = new ClamdClient(clamd.url, 10_000, 250, { connections: 1 });
  clamd.hang();
  try {
    const first = client.scan(strToU8('x'), AbortSignal.timeout(1500));
    const started = performance.now();
    await assert.rejects(client.scan(strToU8('y'), AbortSignal.timeout(100)), (e: ClamdError) => e.code === 'ABORTED');
    assert.ok(performance.now() - started < 1000, 'the queued scan gave up at its own deadline');
    await assert.rejects(first, (e: ClamdError) => e.code === 'ABORTED');
  } finally {
    clamd.resume();
    client.close();
  }
  // The place the first scan held is free again: the client still scans.
  assert.deepEqual(await client.scan(strToU8('z')), { kind: 'clean' });
});
