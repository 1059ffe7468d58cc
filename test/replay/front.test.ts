import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { frontFor, modeNotes, REPLAY_MODES } from '../../src/replay/front.ts';

const ctx = () => ({ dir: mkdtempSync(join(tmpdir(), 'bs-front-')), smtpPort: 2525, capturePort: 2626, domains: ['example.net'], abuseDomain: 'abuse.example.net' });

test('modeNotes: direct has none; each Postfix mode names its path and why the MAIL probes go to the smarthost', () => {
  const cases: [(typeof REPLAY_MODES)[number], RegExp[]][] = [
    ['direct', []],
    ['postfix-proxy', [/smtpd_proxy_filter, XFORWARD/, /Backstop's own SMTP listener.*speed_adjust/]],
    ['milter', [/milter on a unix socket, \{client_addr\}/, /Backstop's own SMTP listener.*end of message/]],
  ];
  for (const [mode, patterns] of cases) {
    const notes = modeNotes(mode);
    assert.equal(notes.length, patterns.length, mode);
    patterns.forEach((p, i) => assert.match(notes[i]!, p, mode));
  }
});

test('frontFor: direct sends to the capture; postfix-proxy trusts XFORWARD from Postfix only and hands back to a re-injection port; milter listens on a unix socket Postfix can reach', async () => {
  const c = ctx();
  try {
    const direct = await frontFor('direct', c);
    assert.deepEqual([direct.smtp, direct.nextHop, direct.milter], [{}, 'smtp://127.0.0.1:2626', undefined]);
    assert.deepEqual(await direct.start(), { port: 2525, postfix: null });

    const proxy = await frontFor('postfix-proxy', c);
    assert.deepEqual(proxy.smtp, { trustXforwardFrom: ['127.0.0.1'] });
    assert.match(proxy.nextHop, /^smtp:\/\/127\.0\.0\.1:\d+$/);
    assert.notEqual(proxy.nextHop, 'smtp://127.0.0.1:2626', 'the node hands clean mail back to Postfix, not to the capture');
    assert.equal(proxy.milter, undefined);

    const milter = await frontFor('milter', c);
    assert.equal(milter.nextHop, 'smtp://127.0.0.1:2626');
    assert.match(milter.milter!.listen, /^unix:\/.+\/milter\.sock$/);
    const socketDir = dirname(milter.milter!.listen.slice(5));
    assert.ok(!socketDir.startsWith(c.dir), 'not inside the replay directory (0700, secrets)');
    assert.equal(statSync(socketDir).mode & 0o777, 0o755);
    milter.dispose!();
    assert.equal(existsSync(socketDir), false);
  } finally {
    rmSync(c.dir, { recursive: true, force: true });
  }
});

test('backstop replay --mode: anything but direct, postfix-proxy or milter is a usage error (before anything starts)', async () => {
  const { command } = await import('../../src/cli/commands/replay.ts');
  const { UsageError } = await import('../../src/cli/command.ts');
  for (const bad of ['proxy', 'Milter', '', 'direct;rm']) {
    await assert.rejects(command.run(['--mode', bad]), (err: Error) => err instanceof UsageError && /--mode must be one of direct, postfix-proxy, milter/.test(err.message), bad);
  }
  assert.match(command.usage, /--mode direct\|postfix-proxy\|milter/);
});
