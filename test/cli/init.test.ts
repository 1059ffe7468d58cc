/*
 * `backstop init --mode M`: every mode's commented configuration is one that
 * `backstop config check` (the real command, as a child process) accepts, and
 * it says what the mode needs.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { test } from 'node:test';
import { INIT_MODES } from '../../src/cli/commands/init.ts';
import { loadConfig } from '../../src/config/load.ts';

const run = promisify(execFile);
const BIN = new URL('../../bin/backstop.js', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'bs-init-'));

const expected: Record<(typeof INIT_MODES)[number], (c: ReturnType<typeof loadConfig>) => void> = {
  'front-mx': (c) => {
    assert.equal(c.smtp.listen, '0.0.0.0:25');
    assert.equal(c.nextHopXclient, true);
    assert.deepEqual(c.smtp.trustXforwardFrom, []);
  },
  'postfix-proxy': (c) => {
    assert.deepEqual(c.smtp.trustXforwardFrom, ['127.0.0.1']);
    assert.equal(c.nextHop, 'smtp://127.0.0.1:10026');
  },
  milter: (c) => assert.equal(c.milter?.listen, 'inet:127.0.0.1:8890'),
  smarthost: (c) => assert.ok(c.relayFrom.length > 0),
};

for (const mode of INIT_MODES) {
  test(`init --mode ${mode} writes a commented configuration that config check accepts`, async () => {
    const file = join(dir, `${mode}.yaml`);
    const init = await run(process.execPath, [BIN, 'init', '--mode', mode, '--domain', 'example.org', '--out', file]);
    assert.match(init.stdout, new RegExp(`wrote .*${mode}\\.yaml`));
    assert.match(readFileSync(file, 'utf8'), /^# Backstop as /);
    const check = await run(process.execPath, [BIN, 'config', 'check', '--config', file]);
    assert.match(check.stdout, /domains:\n\s+- example\.org/);
    expected[mode](loadConfig(file));
  });
}

test('init refuses an unknown mode, a bad domain and overwriting without --force (exit 2)', async () => {
  const file = join(dir, 'exists.yaml');
  writeFileSync(file, 'keep: me\n');
  for (const args of [['--mode', 'sendmail'], ['--mode', 'milter', '--domain', 'bad domain;rm'], ['--mode', 'milter', '--out', file]]) {
    await assert.rejects(run(process.execPath, [BIN, 'init', ...args]), (err: { code: number }) => err.code === 2);
  }
  assert.equal(readFileSync(file, 'utf8'), 'keep: me\n');
});
