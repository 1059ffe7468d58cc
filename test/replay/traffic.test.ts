import assert from 'node:assert/strict';
import { test } from 'node:test';
import PostalMime from 'postal-mime';
import { unzipSync } from 'fflate';
import { buildRaw, EICAR, NOTICE_STYLES, planReplay, SIZES, spreadOverNodes, WORM_MARKER } from '../../src/replay/traffic.ts';

test('a plan is deterministic for a seed and differs across seeds', () => {
  const a = planReplay(SIZES.small, 7);
  const b = planReplay(SIZES.small, 7);
  const c = planReplay(SIZES.small, 8);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a.entries, c.entries);
});

test('a small plan has the sizes it promises, interleaved', () => {
  const plan = planReplay(SIZES.small);
  const count = (k: string) => plan.entries.filter((e) => e.kind === k).length;
  assert.equal(count('worm'), SIZES.small.wormMessages + SIZES.small.customerWormMessages);
  const fromCustomers = plan.entries.filter((e) => e.kind === 'worm' && e.customerId);
  assert.equal(fromCustomers.length, SIZES.small.customerWormMessages);
  assert.equal(new Set(fromCustomers.map((e) => e.sourceIp)).size, SIZES.small.customerSources, 'every customer sends');
  assert.equal(count('legit'), SIZES.small.legitMessages);
  assert.equal(count('backscatter'), SIZES.small.backscatterMessages);
  assert.equal(count('outbound'), SIZES.small.outboundMessages);
  assert.equal(count('real-bounce'), SIZES.small.realBounces);
  assert.deepEqual(plan.entries.map((e) => e.seq), plan.entries.map((_, i) => i), 'seqs in plan order');
  const firstHundred = new Set(plan.entries.slice(0, 100).map((e) => e.kind));
  assert.ok(['worm', 'legit', 'backscatter'].every((k) => firstHundred.has(k as never)), 'kinds are mixed, not in blocks');
  const spread = plan.entries.flatMap((e, i) => (e.kind === 'real-bounce' ? [i] : []));
  assert.ok(spread.at(-1)! - spread[0]! > plan.entries.length / 4, `real bounces interleaved through the wave: at ${spread.join(', ')}`);
  const sources = new Set(plan.entries.filter((e) => e.kind === 'worm' && !e.customerId).map((e) => e.sourceIp));
  assert.ok(sources.size >= SIZES.small.wormSources * 0.9);
  for (const ip of sources) assert.match(ip, /^127\.\d+\.\d+\.\d+$/);
});

test('worm senders are forged from an address book that includes our own users', () => {
  const plan = planReplay(SIZES.small);
  const forgedOurs = plan.entries.filter((e) => e.kind === 'worm' && plan.ourUsers.includes(e.mailFrom));
  assert.ok(forgedOurs.length > 0);
});

test('every worm message carries its payload as an attachment, zipped or not', async () => {
  const plan = planReplay(SIZES.small);
  for (const entry of plan.entries.filter((e) => e.kind === 'worm').slice(0, 40)) {
    const raw = buildRaw(entry);
    assert.ok(raw.includes(WORM_MARKER));
    const mail = await PostalMime.parse(raw);
    assert.equal(mail.attachments.length, 1);
    const att = mail.attachments[0]!;
    let bytes = new Uint8Array(att.content as ArrayBuffer);
    if (entry.kind === 'worm' && entry.zipped) {
      assert.match(att.filename!, /\.zip$/);
      bytes = Object.values(unzipSync(bytes))[0]!;
    }
    if (entry.kind === 'worm' && entry.payload === 'eicar') assert.equal(Buffer.from(bytes).toString(), EICAR);
    else assert.equal(bytes[0], 0x4d, 'MZ header of the ClamAV test file');
  }
});

test('legitimate mail has no executable attachment and backscatter quotes a message forged from our user', async () => {
  const plan = planReplay(SIZES.small);
  for (const entry of plan.entries.filter((e) => e.kind !== 'worm').slice(0, 40)) {
    const mail = await PostalMime.parse(buildRaw(entry));
    for (const a of mail.attachments) assert.doesNotMatch(a.filename ?? '', /\.(exe|pif|scr|cmd|bat)$/);
    if (entry.kind === 'backscatter') {
      assert.ok(plan.ourUsers.includes(entry.rcpt));
      assert.ok(buildRaw(entry).includes(`From: ${entry.quoted.mailFrom}`));
      assert.doesNotMatch(buildRaw(entry).toString(), /EICAR/);
      // Vendors' notices come from their own address (they reach end of DATA); MTAs' bounces from the null sender.
      assert.equal(Boolean(entry.mailFrom), NOTICE_STYLES.has(entry.style), entry.style);
    }
  }
});

test('spreadOverNodes: each source round-robin over the nodes from its own offset, deterministic', () => {
  const entries = [
    { seq: 0, sourceIp: '127.1.0.1' },
    { seq: 1, sourceIp: '127.1.0.2' },
    { seq: 2, sourceIp: '127.1.0.1' },
    { seq: 3, sourceIp: '127.1.0.3' },
    { seq: 4, sourceIp: '127.1.0.1' },
    { seq: 5, sourceIp: '127.1.0.2' },
  ];
  const cases: { nodes: number; want: number[] }[] = [
    { nodes: 1, want: [0, 0, 0, 0, 0, 0] },
    // Source 0 (seq 0, 2, 4) goes 0, 1, 0; source 1 (seq 1, 5) 1, 0; source 2 (seq 3) 0.
    { nodes: 2, want: [0, 1, 1, 0, 0, 0] },
    { nodes: 3, want: [0, 1, 1, 2, 2, 2] },
  ];
  for (const c of cases) {
    const spread = spreadOverNodes(entries, c.nodes);
    assert.deepEqual(entries.map((e) => spread.get(e.seq)), c.want, `${c.nodes} nodes`);
    assert.deepEqual(spreadOverNodes([...entries].reverse(), c.nodes), spread, 'by seq, whatever the order given');
  }
  // The small plan over 3 nodes: every node gets a share, and every source with 3+ messages reaches every node.
  const plan = planReplay(SIZES.small);
  const spread = spreadOverNodes(plan.entries, 3);
  const shares = [0, 1, 2].map((n) => plan.entries.filter((e) => spread.get(e.seq) === n).length);
  assert.ok(shares.every((n) => n > plan.entries.length / 4), `shares ${shares.join(', ')}`);
  const bySource = new Map<string, Set<number>>();
  for (const e of plan.entries) bySource.set(e.sourceIp, (bySource.get(e.sourceIp) ?? new Set()).add(spread.get(e.seq)!));
  const busy = [...bySource].filter(([ip]) => plan.entries.filter((e) => e.sourceIp === ip).length >= 3);
  assert.ok(busy.length > 0 && busy.every(([, nodes]) => nodes.size === 3));
});
