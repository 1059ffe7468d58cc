/*
 * Every file of Debian's clamav-testfiles, sent as an ordinary attachment,
 * against a real clamd loaded with each signature form ClamAV ships on its
 * own: the body signature (.ndb), an MD5 hash signature (.hdb, sigtool --md5)
 * and a SHA-256 one (.hsb, sigtool --sha256) of clam.exe. Through the
 * scanner, through a real gateway (swaks → Backstop → smtp-sink) and through
 * `backstop scan` (the file itself and the file mailed). The policy's bans
 * are switched off so that every verdict is clamd's: the test is about what
 * clamd is shown, not about what our own checks refuse.
 *
 * The hash signatures are what the whole-message pass alone missed: a hash
 * matches only a file clamd holds byte for byte, and clamd's own walk of a
 * whole message does not reach every file the same walk reaches in the file
 * alone (clam_cache_emax.tgz) — the scanner hands clamd the decoded leaves.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { CLAMAV_TESTFILES, SIGNATURE_FORMS, startClamd, TEST_SIGNATURE_NAME, type RunningClamd } from '../../src/replay/clamd.ts';
import { ClamdClient } from '../../src/scan/clamd.ts';
import { createScanner } from '../../src/scan/scanner.ts';
import { formatVerdict } from '../../src/scan/verdict.ts';
import { startTestGateway, swaks } from '../helpers/gateway.ts';
import { mail } from './mail.ts';

const BIN = join(import.meta.dirname, '../../bin/backstop.js');
const files = readdirSync(CLAMAV_TESTFILES).sort();
const noBans = { bannedExtensions: [], bannedTypes: [] };

test('the ClamAV test files are there: at least the 44 of clamav-testfiles 1.4.6', () => {
  assert.ok(files.length >= 44, `${files.length} files`);
});

for (const form of SIGNATURE_FORMS) {
  describe(`signature database: ${form} only`, () => {
    let clamd: RunningClamd;
    let dir: string;
    before(async () => {
      clamd = await startClamd({ signatures: form });
      dir = mkdtempSync(join(tmpdir(), `bs-testfiles-${form}-`));
    });
    after(async () => {
      await clamd?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    test('clamd itself finds every test file sent alone (the database is the right one)', async () => {
      const client = new ClamdClient(clamd.url, 20_000);
      const missed: string[] = [];
      for (const f of files) if ((await client.scan(readFileSync(join(CLAMAV_TESTFILES, f)))).kind !== 'infected') missed.push(f);
      client.close();
      assert.deepEqual(missed, []);
    });

    test('scanMessage: every test file as an attachment is infected, named by clamd', async () => {
      const scanner = createScanner(parseConfig({ clamd: clamd.url, scan: { ...noBans, cacheEntries: 0 } }));
      const missed: Record<string, string> = {};
      for (const f of files) {
        const { verdict } = await scanner.scanMessage(mail([{ name: f, bytes: readFileSync(join(CLAMAV_TESTFILES, f)) }], { seq: `${form}-${f}` }));
        if (formatVerdict(verdict) !== `infected ${TEST_SIGNATURE_NAME}`) missed[f] = formatVerdict(verdict);
      }
      await scanner.close();
      assert.deepEqual(missed, {});
    });

    test('a real gateway: every test file as an attachment is refused with 550 naming it, nothing delivered', async () => {
      const g = await startTestGateway({ clamd: clamd.url, scan: noBans });
      try {
        const wrong: Record<string, string> = {};
        for (const f of files) {
          const r = await swaks(g.port, ['--from', 'sender@example.org', '--to', 'user@example.net', '--attach-name', f, '--attach', join(CLAMAV_TESTFILES, f)]);
          if (r.last !== `550 5.7.1 Message refused, virus found: ${TEST_SIGNATURE_NAME}`) wrong[f] = r.last;
        }
        assert.deepEqual(wrong, {});
        assert.equal(g.sink!.messages().length, 0);
      } finally {
        await g.close();
      }
    });

    test('backstop scan: every test file, alone and mailed as an attachment, is infected (exit 1)', () => {
      const args: string[] = [];
      for (const f of files) {
        writeFileSync(join(dir, `${f}.eml`), mail([{ name: f, bytes: readFileSync(join(CLAMAV_TESTFILES, f)) }], { seq: f }));
        args.push(join(CLAMAV_TESTFILES, f), join(dir, `${f}.eml`));
      }
      writeFileSync(join(dir, 'backstop.yaml'), `clamd: ${clamd.url}\nscan:\n  bannedExtensions: []\n  bannedTypes: []\n`);
      const r = spawnSync(process.execPath, [BIN, 'scan', '--config', join(dir, 'backstop.yaml'), ...args], { encoding: 'utf8', timeout: 300_000 });
      const lines = r.stdout.trim().split('\n');
      assert.equal(lines.length, args.length, r.stderr);
      const wrong = lines.filter((l) => !l.endsWith(`: infected ${TEST_SIGNATURE_NAME}`));
      assert.deepEqual(wrong, []);
      assert.equal(r.status, 1);
    });
  });
}
