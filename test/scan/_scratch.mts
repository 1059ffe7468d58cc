import { readFileSync } from 'node:fs';
import { parseConfig } from '../../src/config/load.ts';
import { createScanner } from '../../src/scan/scanner.ts';
import { startClamd } from '../helpers/clamd.ts';
import { mail, noise } from './mail.ts';
const c = await startClamd();
const worm = readFileSync('/usr/share/clamav-testfiles/clam.chm');
const s = createScanner(parseConfig({ clamd: c.url }));
const body = 'x'.repeat(4000);
for (let round = 0; round < 3; round++) {
  let u = 0, r = 0; const n = 100;
  for (let i = 0; i < n; i++) { const res = await s.scanMessage(mail([{ name: 'manual.bin', bytes: Buffer.concat([worm, Buffer.from(noise(64, round*1000+i+1))]) }], { seq: `u${i}`, body })); u += res.ms; await s.settled(); }
  for (let i = 0; i < n; i++) { const res = await s.scanMessage(mail([{ name: 'manual.bin', bytes: worm }], { seq: `r${i}`, body: body + i })); r += res.ms; if (!res.cached && i > 0) throw new Error('not cached'); await s.settled(); }
  console.log(`unique ${(u/n).toFixed(2)} repeated ${(r/n).toFixed(2)}`, s.stats());
}
await c.stop();
