import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { silentLogger } from '../../src/obs/log.ts';
import { messagesTotal } from '../../src/obs/metrics.ts';
import { openStore } from '../../src/store/store.ts';
import { buildWebApp } from '../../src/web/server.ts';

const store = await openStore('pglite-memory:');
after(() => store.close());

test('GET /healthz answers ok with the node and the checks', async () => {
  const app = buildWebApp({ store, logger: silentLogger, nodeName: 'n1' });
  const res = await app.inject({ method: 'GET', url: '/healthz' });
  assert.equal(res.statusCode, 200);
  assert.equal(res.json().status, 'ok');
  assert.equal(res.json().node, 'n1');
  assert.deepEqual(res.json().checks, { store: 'ok' });
});

test('GET /healthz is 503 and names the failing check without its internals', async () => {
  const app = buildWebApp({ store, logger: silentLogger, nodeName: 'n1', checks: { smtp: async () => { throw new Error('secret internals'); } } });
  const res = await app.inject({ method: 'GET', url: '/healthz' });
  assert.equal(res.statusCode, 503);
  assert.deepEqual(res.json().checks, { store: 'ok', smtp: 'failing' });
  assert.doesNotMatch(res.body, /secret internals/);
});

test('GET /metrics exposes messages by verdict and action in Prometheus format', async () => {
  messagesTotal.inc({ verdict: 'infected', action: 'reject' });
  const app = buildWebApp({ store, logger: silentLogger, nodeName: 'n1' });
  const res = await app.inject({ method: 'GET', url: '/metrics' });
  assert.equal(res.statusCode, 200);
  assert.match(res.headers['content-type'] as string, /text\/plain/);
  assert.match(res.body, /backstop_messages_total\{verdict="infected",action="reject"\} 1/);
});

test('an unknown route is a 404, not a 500', async () => {
  const app = buildWebApp({ store, logger: silentLogger, nodeName: 'n1' });
  const res = await app.inject({ method: 'GET', url: '/nope' });
  assert.equal(res.statusCode, 404);
});
