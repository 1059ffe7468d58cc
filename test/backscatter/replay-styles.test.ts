/*
 * The replay's outbreak model (src/replay/traffic.ts, written for the replay
 * role) bounces and "notifies" in ten MTA and vendor styles; every one of
 * them, and every legitimate message of the plan, must come out of the
 * classifier as the gateway will need it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classify } from '../../src/backscatter/classify.ts';
import { bounceVerdict } from '../../src/backscatter/verdict.ts';
import { BACKSCATTER_STYLES, buildRaw, planReplay, SIZES, type BackscatterEntry } from '../../src/replay/traffic.ts';

const plan = planReplay(SIZES.small);

test('replay backscatter: every style is a bounce or a virus notice about mail we did not send', async () => {
  const seen = new Set<string>();
  const planned = plan.entries.filter((x): x is BackscatterEntry => x.kind === 'backscatter');
  // The small plan uses a few styles; every style is tried on a planned entry too.
  const all = [...planned, ...BACKSCATTER_STYLES.map((style, i) => ({ ...planned[i % planned.length]!, style }))];
  for (const e of all) {
    const c = await classify(buildRaw(e));
    const want = e.style.endsWith('-notice') ? 'av-notice' : 'dsn';
    assert.equal(c.class, want, `${e.style}: ${c.reasons.join('; ')}`);
    assert.equal(c.mentionsVirus, true, e.style);
    assert.equal(c.original?.messageId, e.quoted.messageId, `${e.style}: quoted Message-ID`);
    assert.equal(bounceVerdict(c, { stampKeys: [Buffer.from('k')], ourRelays: [`relay.${plan.ourDomain}`] }).verdict, 'backscatter', e.style);
    seen.add(e.style);
  }
  assert.deepEqual([...seen].sort(), [...BACKSCATTER_STYLES].sort());
});

test('replay legitimate mail is normal', async () => {
  for (const e of plan.entries.filter((x) => x.kind === 'legit')) {
    const c = await classify(buildRaw(e));
    assert.equal(c.class, 'normal', `legit ${e.seq}: ${c.reasons.join('; ')}`);
  }
});
