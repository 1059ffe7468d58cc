/*
 * store/pglite-template — the freshly initialised PostgreSQL cluster a new
 * embedded store starts from (why: src/store/store.ts), and its stamp.
 *
 * `extractTemplate()` streams pglite-template/pgdata.tar.gz into a data
 * directory (gunzip and a ustar reader, one 512-byte block and one chunk at a
 * time), so the 39 MB cluster never sits in memory; PGlite then finds
 * PG_VERSION and opens it as any existing database. PG_VERSION is written
 * last: a start cut off mid-copy leaves a directory PGlite would not take for
 * a database, and the next start copies again over it.
 *
 * Trusts: the tarball is ours (made by scripts/pglite-template.ts), yet every
 * entry is still checked — regular files and directories only, names that
 * stay inside the directory — and anything else is an error, not a skip.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { createReadStream } from 'node:fs';
import { join, normalize, sep } from 'node:path';
import { createGunzip } from 'node:zlib';

const DIR = new URL('./pglite-template/', import.meta.url);
export const PGLITE_TEMPLATE = { tarball: new URL('pgdata.tar.gz', DIR), stamp: new URL('stamp.json', DIR) };

export interface TemplateStamp {
  pglite: string;
  settings: Record<string, string>;
  systemIdentifier: string;
}

/** The installed PGlite's version, from its package.json. */
export function pgliteVersion(): string {
  const pkg = new URL('../package.json', import.meta.resolve('@electric-sql/pglite'));
  return (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version;
}

/** The template's stamp if it was made by the installed PGlite with these settings, else why not. */
export function templateFits(settings: Readonly<Record<string, string>>): { ok: true; stamp: TemplateStamp } | { ok: false; why: string } {
  if (!existsSync(PGLITE_TEMPLATE.tarball) || !existsSync(PGLITE_TEMPLATE.stamp)) return { ok: false, why: 'no template' };
  const stamp = JSON.parse(readFileSync(PGLITE_TEMPLATE.stamp, 'utf8')) as TemplateStamp;
  const version = pgliteVersion();
  if (stamp.pglite !== version) return { ok: false, why: `template made by PGlite ${stamp.pglite}, ${version} installed` };
  if (JSON.stringify(stamp.settings) !== JSON.stringify(settings)) return { ok: false, why: 'template made with other settings' };
  return { ok: true, stamp };
}

export interface TarEntry {
  /** Relative, normalised, never leaving the target directory. */
  path: string;
  type: 'file' | 'directory';
  mode: number;
  size: number;
}

const octal = (field: Buffer) => {
  const text = field.toString('latin1').replace(/\0.*$/s, '').trim();
  if (!/^[0-7]*$/.test(text)) throw new Error(`template: bad octal field "${text}"`);
  return text === '' ? 0 : parseInt(text, 8);
};

/** One ustar header block → its entry; null for the all-zero blocks that end the archive. Pure. */
export function parseTarHeader(block: Buffer): TarEntry | null {
  if (block.length !== 512) throw new Error('template: a tar header is 512 bytes');
  if (block.every((b) => b === 0)) return null;
  const sum = octal(block.subarray(148, 156));
  let computed = 0;
  for (let i = 0; i < 512; i++) computed += i >= 148 && i < 156 ? 32 : block[i]!;
  if (sum !== computed) throw new Error('template: tar header checksum mismatch');
  const str = (from: number, to: number) => block.subarray(from, to).toString('utf8').replace(/\0.*$/s, '');
  const prefix = block.subarray(257, 262).toString('latin1') === 'ustar' ? str(345, 500) : '';
  const raw = prefix ? `${prefix}/${str(0, 100)}` : str(0, 100);
  const path = normalize(raw.replace(/^\/+/, '')).replace(/\/+$/, '');
  if (path === '' || path === '.' || path.startsWith('..') || path.split(sep).includes('..')) throw new Error(`template: entry "${raw}" leaves the directory`);
  const flag = String.fromCharCode(block[156]!);
  const type = flag === '0' || flag === '\0' ? 'file' : flag === '5' ? 'directory' : null;
  if (!type) throw new Error(`template: entry "${raw}" is neither a file nor a directory (type "${flag}")`);
  return { path, type, mode: octal(block.subarray(100, 108)) & 0o777, size: type === 'file' ? octal(block.subarray(124, 136)) : 0 };
}

/** Streams the template into dir (which holds no database); PG_VERSION last. */
export async function extractTemplate(dir: string, tarball: URL = PGLITE_TEMPLATE.tarball): Promise<void> {
  mkdirSync(dir, { recursive: true });
  let pending: Buffer = Buffer.alloc(0);
  let entry: TarEntry | null = null;
  let left = 0; // bytes of the current file still to come
  let pad = 0; // zero bytes after it, to the next 512-byte boundary
  let fd: number | null = null;
  let ended = false;
  let versionFile: { mode: number; data: Buffer[] } | null = null;
  const finishFile = () => {
    if (fd !== null) closeSync(fd);
    fd = null;
    entry = null;
  };
  try {
    for await (const chunk of createReadStream(tarball).pipe(createGunzip()) as AsyncIterable<Buffer>) {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      let at = 0;
      while (!ended) {
        if (entry && left > 0) {
          const n = Math.min(left, pending.length - at);
          if (n === 0) break;
          const part = pending.subarray(at, at + n);
          if (fd === null) versionFile!.data.push(Buffer.from(part));
          else writeSync(fd, part);
          at += n;
          left -= n;
          continue;
        }
        if (entry) {
          const n = Math.min(pad, pending.length - at);
          at += n;
          pad -= n;
          if (pad > 0) break;
          finishFile();
          continue;
        }
        if (pending.length - at < 512) break;
        const header = parseTarHeader(pending.subarray(at, at + 512));
        at += 512;
        if (!header) {
          ended = true;
          break;
        }
        const target = join(dir, header.path);
        if (header.type === 'directory') {
          mkdirSync(target, { recursive: true, mode: header.mode || 0o700 });
          continue;
        }
        entry = header;
        left = header.size;
        pad = (512 - (header.size % 512)) % 512;
        if (header.path === 'PG_VERSION') versionFile = { mode: header.mode, data: [] };
        else fd = openSync(target, 'w', header.mode || 0o600);
      }
      pending = pending.subarray(at);
    }
    if (!ended || entry) throw new Error('template: the archive ends in the middle');
    if (!versionFile) throw new Error('template: no PG_VERSION in the archive');
    const v: { mode: number; data: Buffer[] } = versionFile;
    const out = openSync(join(dir, 'PG_VERSION'), 'w', v.mode || 0o600);
    try {
      writeSync(out, Buffer.concat(v.data));
    } finally {
      closeSync(out);
    }
  } finally {
    if (fd !== null) closeSync(fd);
  }
}
