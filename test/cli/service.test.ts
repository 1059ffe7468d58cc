/*
 * The shipped systemd unit is one systemd itself accepts (`systemd-analyze
 * verify`: directives, sections, an executable ExecStart), hardened the way the
 * README says: a backstop user, ProtectSystem=strict, writable state only, and
 * no capability but CAP_NET_BIND_SERVICE.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { test } from 'node:test';

const run = promisify(execFile);
const UNIT = new URL('../../contrib/systemd/backstop.service', import.meta.url).pathname;
const text = readFileSync(UNIT, 'utf8');
const directive = (name: string) => [...text.matchAll(new RegExp(`^${name}=(.*)$`, 'gm'))].map((m) => m[1]);

test('systemd-analyze verify accepts the unit (its ExecStart pointed at this checkout)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bs-unit-'));
  const here = new URL('../../', import.meta.url).pathname.replace(/\/$/, '');
  const unit = join(dir, 'backstop.service');
  writeFileSync(unit, text.replaceAll('/opt/backstop', here).replace('/usr/bin/node', process.execPath));
  const r = await run('systemd-analyze', ['verify', unit]).catch((err: { stderr: string; code: number }) => err);
  assert.ok(!('code' in r) || r.code === 0, 'stderr' in r ? r.stderr : '');
});

test('the unit is hardened as documented', () => {
  assert.deepEqual(directive('User'), ['backstop']);
  assert.deepEqual(directive('ProtectSystem'), ['strict']);
  assert.deepEqual(directive('ReadWritePaths'), ['/var/lib/backstop']);
  assert.deepEqual(directive('NoNewPrivileges'), ['true']);
  assert.deepEqual(directive('AmbientCapabilities'), ['CAP_NET_BIND_SERVICE']);
  assert.deepEqual(directive('CapabilityBoundingSet'), ['CAP_NET_BIND_SERVICE']);
  assert.match(directive('ExecStart')[0]!, /bin\/backstop\.js serve --config \/etc\/backstop\/backstop\.yaml$/);
});
