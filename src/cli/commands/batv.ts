/*
 * cli/commands/batv — `backstop batv sign|verify|strip ADDRESS… --key-file F`:
 * the operator's view of BATV tags (backscatter/batv.ts), e.g. to check a
 * tag from a log line or to compare with Exim's `${prvs…}`.
 *
 * `backstop batv rotate [--config FILE]` retires the store's current BATV and
 * stamp keys and makes new ones current (backscatter/keys.ts); the retired
 * keys keep verifying, so tags already out there stay valid.
 *
 * The key file holds `K SECRET` lines, the current key first (see
 * parseKeyFile). Secrets are never printed. Exit 0 when every address
 * verified (verify) or was handled, 1 when one did not verify, 2 on errors.
 */
import { readFileSync } from 'node:fs';
import { BatvKeyError, parseKeyFile, signPrvs, stripPrvs, verifyPrvs, type BatvKeyring } from '../../backscatter/batv.ts';
import { loadKeys, rotateKeys } from '../../backscatter/keys.ts';
import { cleanText } from '../../obs/clean.ts';
import { parseCommandArgs } from '../args.ts';
import { CONFIG_OPTION, withStore } from '../store.ts';
import { UsageError, type Command } from '../command.ts';

function readKeyFile(path: string): BatvKeyring | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    console.error(`backstop batv: cannot read the key file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    return null;
  }
  try {
    return parseKeyFile(text);
  } catch (err) {
    if (err instanceof BatvKeyError) throw new UsageError(`${path}: ${err.message}`);
    throw err;
  }
}

/** The shield's own keyring (current key first, retired ones still valid at `at`). */
function storeKeyring(configPath: string | undefined, at: Date): Promise<BatvKeyring> {
  return withStore(configPath, async (store) => (await loadKeys(store.db, at)).ring);
}

export const command: Command = {
  summary: 'Sign, verify or strip BATV (prvs) tags on envelope addresses.',
  usage: 'backstop batv sign|verify|strip ADDRESS... [--key-file FILE | --config FILE] [--at ISO-DATE] | backstop batv rotate [--config FILE]',
  async run(args) {
    const { values, positionals } = parseCommandArgs(args, { 'key-file': { type: 'string', short: 'k' }, at: { type: 'string' }, ...CONFIG_OPTION });
    const [action, ...addresses] = positionals;
    if (action === 'rotate') {
      const nums = await withStore(values.config, (store) => rotateKeys(store.db));
      console.log(`rotated: BATV key ${nums.batv} and stamp key ${nums.stamp} are current; the previous keys keep verifying`);
      return 0;
    }
    if (action !== 'sign' && action !== 'verify' && action !== 'strip') throw new UsageError('first name an action: sign, verify, strip or rotate');
    if (addresses.length === 0) throw new UsageError('name at least one address');
    if (action === 'strip') {
      for (const a of addresses) console.log(cleanText(stripPrvs(a), 300));
      return 0;
    }
    const at = values.at === undefined ? Date.now() : Date.parse(values.at);
    if (Number.isNaN(at)) throw new UsageError(`--at: not a date: "${cleanText(values.at ?? '', 40)}"`);
    const ring = values['key-file'] ? readKeyFile(values['key-file']) : await storeKeyring(values.config, new Date(at));
    if (!ring) return 2;
    let status = 0;
    for (const a of addresses) {
      if (action === 'sign') {
        console.log(cleanText(signPrvs(a, ring, at), 300));
        continue;
      }
      const check = verifyPrvs(a, ring, at);
      const shown = cleanText(a, 300);
      if (check.kind === 'valid') console.log(`${shown}: valid key ${check.keyNum}, ${check.daysLeft} day(s) left, address ${cleanText(check.original, 300)}`);
      else if (check.kind === 'untagged') console.log(`${shown}: untagged`);
      else console.log(`${shown}: ${check.kind} (key ${check.keyNum})`);
      if (check.kind !== 'valid') status = 1;
    }
    return status;
  },
};
