/*
 * scripts/eval-corpus — what `npm run eval:classify` and the classifier's
 * corpus test share: the corpora kept in the tree (test/backscatter/corpora,
 * each with its LICENSE), their held-out split, the label file and the
 * measures. Reads files only; decides nothing about mail.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { classify, MESSAGE_CLASSES, type MessageClass } from '../src/backscatter/classify.ts';

export const LABELS = new URL('../test/backscatter/eval-labels.tsv', import.meta.url);
export const TREE = new URL('../test/backscatter/corpora/', import.meta.url).pathname;

export interface Source {
  name: string;
  kind: 'deb' | 'src' | 'tree';
  /** The Debian package, or for 'tree' the folder under test/backscatter/corpora. */
  pkg: string;
  /** 'fifth': every 5th file is held out (the corpora added after issue 4's rules); 'all': none was read. */
  holdout?: 'fifth' | 'all';
  /** Directories inside the unpacked package (glob-free; `*` matches the one top directory of a source tarball). */
  dirs: string[];
  file: RegExp;
}

/** The corpora in the tree (the Debian ones are fetched by the script). */
export const TREE_SOURCES: Source[] = [
  { name: 'sisimai', kind: 'tree', pkg: 'sisimai', dirs: ['bsd', 'not'], file: /\.eml$/, holdout: 'fifth' },
  // sisimai's maildir/err (mailbox/mbox-0 cut into files) and maildir/tmp: held out whole, labelled from From and Subject only.
  { name: 'sisimai-unseen', kind: 'tree', pkg: 'sisimai', dirs: ['err', 'tmp'], file: /\.eml$/, holdout: 'all' },
  { name: 'bounce-handler', kind: 'tree', pkg: 'bounce-handler', dirs: ['eml'], file: /\.(eml|txt)$/, holdout: 'fifth' },
  { name: 'mail-mime-parser', kind: 'tree', pkg: 'mail-mime-parser', dirs: ['.'], file: /^(m\d+|github-[\d-]+|invalid-charset)\.txt$/, holdout: 'fifth' },
];

export class CorpusUnavailable extends Error {}

/** [path, name in the label file]: a tree corpus's files are named with their folder (bsd/x.eml). */
export function filesOf(src: Source, root: string): [string, string][] {
  const out: [string, string][] = [];
  for (const d of src.dirs) {
    const dirs = d.startsWith('*/') ? readdirSync(root).filter((t) => !t.startsWith('.')).map((t) => join(root, t, d.slice(2))) : [join(root, d)];
    for (const dir of dirs) {
      if (!existsSync(dir)) throw new CorpusUnavailable(`${src.pkg}: no ${d} in the package (a different version?)`);
      for (const f of readdirSync(dir).sort()) if (src.file.test(f)) out.push([join(dir, f), src.kind === 'tree' && d !== '.' ? `${d}/${f}` : f]);
    }
  }
  return out;
}

export interface Label {
  cls: MessageClass;
  /** The MTA family (or RFC, or product) that wrote the message. */
  family: string;
  why: string;
}

export interface LabelLine extends Label {
  source: string;
  pattern: RegExp;
}

/** The label file, in order; for a file the last matching line wins (so "*" lines come first). */
export function loadLabels(): LabelLine[] {
  const out: LabelLine[] = [];
  for (const line of readFileSync(LABELS, 'utf8').split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const [source, file, cls, family, why] = line.split('\t');
    if (!source || !file || !family || !MESSAGE_CLASSES.includes(cls as MessageClass)) throw new Error(`eval-labels.tsv: bad line: ${line}`);
    const pattern = new RegExp(`^${file.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
    out.push({ source, pattern, cls: cls as MessageClass, family, why: why ?? '' });
  }
  return out;
}

/** "@name": the family a corpus names in its file names (lhost-postfix-03.eml → postfix, yahoo_01.txt → yahoo). */
export function familyOf(family: string, file: string): string {
  if (family !== '@name') return family;
  return file.replace(/^.*\//, '').replace(/\.\w+$/, '').replace(/[-_]\d+$/, '').replace(/^lhost-/, '');
}

export function labelOf(labels: LabelLine[], source: string, file: string): Label | null {
  let hit: LabelLine | null = null;
  for (const l of labels) if (l.source === source && l.pattern.test(file)) hit = l;
  return hit && { cls: hit.cls, family: familyOf(hit.family, file), why: hit.why };
}

export const BOUNCE: ReadonlySet<MessageClass> = new Set(['dsn', 'delay']);
export const NOTICE: ReadonlySet<MessageClass> = new Set(['dsn', 'delay', 'av-notice', 'challenge']);

export interface Row {
  source: string;
  file: string;
  set: 'train' | 'held-out';
  label: MessageClass;
  family: string;
  got: MessageClass;
  format: string | null;
  why: string;
}

/** The measures one table line shows, over any set of rows. */
export function measure(r: Row[]) {
  const pos = r.filter((x) => BOUNCE.has(x.label));
  const tp = pos.filter((x) => BOUNCE.has(x.got)).length;
  const predPos = r.filter((x) => BOUNCE.has(x.got)).length;
  const auto = r.filter((x) => x.label === 'auto-reply');
  const autoHit = auto.filter((x) => x.got === 'auto-reply').length;
  const normal = r.filter((x) => x.label === 'normal');
  const falseNormal = normal.filter((x) => NOTICE.has(x.got)).length;
  const negatives = r.filter((x) => x.label === 'normal' || x.label === 'auto-reply');
  const falseNeg = negatives.filter((x) => NOTICE.has(x.got)).length;
  return { n: r.length, pos: pos.length, tp, predPos, auto: auto.length, autoHit, normal: normal.length, falseNormal, negatives: negatives.length, falseNeg };
}

/** Classifies every file of the tree corpora, in order, with its label and set. */
export async function treeRows(labels: LabelLine[] = loadLabels()): Promise<Row[]> {
  const rows: Row[] = [];
  for (const src of TREE_SOURCES) rows.push(...(await rowsOf(src, join(TREE, src.pkg), labels)));
  return rows;
}

/** One corpus's rows: its files classified, labelled, and put in train or held-out. */
export async function rowsOf(src: Source, root: string, labels: LabelLine[]): Promise<Row[]> {
  const rows: Row[] = [];
  for (const [i, [path, file]] of filesOf(src, root).entries()) {
    const label = labelOf(labels, src.name, file);
    if (!label) throw new Error(`eval-labels.tsv: no label for ${src.name}/${file} and no "*" line`);
    const r = await classify(readFileSync(path));
    rows.push({ source: src.name, file, set: src.holdout === 'all' || (src.holdout === 'fifth' && i % 5 === 4) ? 'held-out' : 'train', label: label.cls, family: label.family, got: r.class, format: r.format, why: label.why });
  }
  return rows;
}
