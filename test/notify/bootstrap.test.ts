/*
 * The RDAP bootstrap Backstop ships (so lookups work with no route to IANA)
 * and `backstop rdap refresh`, which replaces it under dataDir only with a
 * document that has the bootstrap shape.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { bootstrapBaseUrls } from '../../src/notify/contact.ts';
import { bootstrapSource, refreshBootstrapFiles } from '../../src/notify/lookup.ts';

const shipped = (family: 'ipv4' | 'ipv6') => JSON.parse(readFileSync(bootstrapSource('builtin', '/nonexistent', family), 'utf8'));

for (const [ip, family, registry] of [
  ['8.8.8.8', 'ipv4', 'rdap.arin.net'],
  ['193.0.6.139', 'ipv4', 'rdap.db.ripe.net'],
  ['202.12.29.205', 'ipv4', 'rdap.apnic.net'],
  ['200.3.14.10', 'ipv4', 'rdap.lacnic.net'],
  ['196.216.2.6', 'ipv4', 'rdap.afrinic.net'],
  ['2a00:1450:4001::1', 'ipv6', 'rdap.db.ripe.net'],
  ['2600:1f18::1', 'ipv6', 'rdap.arin.net'],
] as const) {
  test(`the shipped bootstrap sends ${ip} to ${registry}, over https first`, () => {
    const [first] = bootstrapBaseUrls(shipped(family), ip);
    assert.match(first ?? '', new RegExp(`^https://${registry.replace(/\./g, '\\.')}/`));
  });
}

test('the shipped bootstrap has no registry for private, loopback and reserved ranges', () => {
  for (const ip of ['10.1.2.3', '127.0.0.1', '0.1.2.3']) assert.deepEqual(bootstrapBaseUrls(shipped('ipv4'), ip), [], ip);
});

test('refresh: a bootstrap document replaces the shipped copy for "builtin"; anything else is refused and the working copy kept', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'bs-rdap-'));
  const good = { description: 'test', services: [[['192.0.2.0/24'], ['https://rdap.test.example/']]], version: '1.0' };
  let body: unknown = good;
  const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/`;
  try {
    assert.equal(existsSync(join(dataDir, 'rdap', 'ipv4.json')), false);
    assert.deepEqual(await refreshBootstrapFiles(dataDir, { ipv4: `${url}v4`, ipv6: `${url}v6` }), { ipv4: 1, ipv6: 1 });
    const source = bootstrapSource('builtin', dataDir, 'ipv4');
    assert.equal(source, join(dataDir, 'rdap', 'ipv4.json'));
    assert.deepEqual(bootstrapBaseUrls(JSON.parse(readFileSync(source, 'utf8')), '192.0.2.7'), ['https://rdap.test.example/']);

    body = { error: 'maintenance' };
    await assert.rejects(refreshBootstrapFiles(dataDir, { ipv4: `${url}v4`, ipv6: `${url}v6` }), /not an RDAP bootstrap document/);
    assert.deepEqual(JSON.parse(readFileSync(source, 'utf8')), good, 'the working copy is kept');
    assert.equal(bootstrapSource('https://elsewhere.example/ipv4.json', dataDir, 'ipv4'), 'https://elsewhere.example/ipv4.json', 'an explicit source is used as given');
  } finally {
    server.close();
  }
});

test('backstop rdap refresh: exit 2 with the reason and what to do when the source is unusable', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bs-rdap-cli-'));
  const config = join(dir, 'backstop.yaml');
  writeFileSync(config, `dataDir: ${join(dir, 'data')}\n`);
  writeFileSync(join(dir, 'bad.json'), '{"not": "bootstrap"}');
  const r = spawnSync('node', ['bin/backstop.js', 'rdap', 'refresh', '--config', config, '--ipv4', join(dir, 'bad.json'), '--ipv6', join(dir, 'bad.json')], { encoding: 'utf8' });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /not an RDAP bootstrap document.*kept/);
});
