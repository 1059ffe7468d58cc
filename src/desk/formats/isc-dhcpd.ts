/*
 * desk/formats/isc-dhcpd — ISC dhcpd's lease database (dhcpd.leases(5)) as
 * LeaseRecords: who held which address when.
 *
 * The file is a log: dhcpd appends a whole `lease ADDR { … }` entry each
 * time a binding changes (offer taken, renewal, release, expiry) and rewrites
 * it compacted now and then. So, per address, in file order:
 *   - an active (or bootp) entry is a holding from `starts` to `ends` (UTC,
 *     `W YYYY/MM/DD HH:MM:SS`, `epoch N` with db-time-format local, or
 *     `never` = still running); a later entry with the same `starts` is the
 *     same binding and replaces it (last entry wins), one with a new
 *     `starts` (a renewal) is a new record and ends the earlier one there;
 *   - a free / released / expired / reset / backup / abandoned entry ends
 *     the running holding of the address at its time (`ends`; abandoned —
 *     a DECLINE — at its `starts`, since its `ends` is starts plus the
 *     abandon-lease-time; for DHCPv6 a release at `cltt`, since dhcpd6
 *     leaves `ends` as it was); an active entry must say `ends` (or
 *     `ends never`), a missing one is never read as "forever"; a compacted
 *     file may hold only such an entry, which with its MAC still says who
 *     held the address from `starts` until then;
 *   - the line is `option agent.circuit-id` (relay agent option 82, kept
 *     by dhcpd with `stash-agent-options`) when present, else `hardware
 *     ethernet` (lower-case MAC). uid and client-hostname are chosen by the
 *     client and never identify the line.
 * DHCPv6 (dhcpd -6): `ia-na` / `ia-ta` blocks with `iaaddr ADDR { … }`;
 * start = the iaaddr's `starts` or else the IA's `cltt`, end = `ends` or
 * else start + `max-life`; the line is the MAC inside the client's DUID
 * (DUID-LLT/DUID-LL of an Ethernet interface), else none. `ia-pd`
 * (delegated prefixes) is skipped: a LeaseRecord holds one address.
 * Comments, quoted strings with escapes (\" \\ \ooo \xHH), server-duid,
 * authoring-byte-order, failover peer state, host/group/class/subclass and
 * nested `on … { }` blocks are understood and skipped; anything else —
 * an unknown top-level statement, a bad address, date or MAC, a missing
 * `;` or `}` — is a LeaseFileError naming the line and what was expected.
 * Records whose end is not after their start held nothing and are left out.
 */
import type { LeaseRecord } from '../leases.ts';
import { agentIdValue, checkedIp, checkedIpv6, checkedMac, duidMacBytes, epochSeconds, LeaseFileError, utcDateTime } from './lease-file.ts';

const FORMAT = 'isc-dhcpd';

interface Token {
  kind: 'word' | 'string' | 'punct';
  value: string;
  line: number;
}

interface Statement {
  tokens: Token[];
  block: Statement[] | null;
  line: number;
}

function fail(line: number, expected: string, found?: string): never {
  throw new LeaseFileError(FORMAT, line, expected, found);
}

function unescape(body: string): string {
  return body.replace(/\\([0-7]{3}|x[0-9a-fA-F]{1,2}|[^])/g, (_, e: string) => {
    if (/^[0-7]{3}$/.test(e)) return String.fromCharCode(parseInt(e, 8) & 0xff);
    if (e.length > 1 && e[0] === 'x') return String.fromCharCode(parseInt(e.slice(1), 16));
    return e === 'n' ? '\n' : e === 't' ? '\t' : e === 'r' ? '\r' : e === 'b' ? '\b' : e;
  });
}

// Character classes for the scanner: 1 blank, 2 newline, 3 comment, 4 punctuation, 5 quote; 0 part of a word.
const CLASS = new Uint8Array(128);
for (const c of ' \t\r\f\v') CLASS[c.charCodeAt(0)] = 1;
CLASS[10] = 2;
CLASS['#'.charCodeAt(0)] = 3;
for (const c of '{};=,') CLASS[c.charCodeAt(0)] = 4;
CLASS['"'.charCodeAt(0)] = 5;
const classOf = (code: number) => (code < 128 ? CLASS[code]! : 0);

/** Tokens one at a time (a big lease file is never held as one token array). */
class Lexer {
  private pos = 0;
  private line = 1;
  lastLine = 1;
  constructor(private readonly text: string) {}

  next(): Token | null {
    const text = this.text;
    const n = text.length;
    while (this.pos < n) {
      const k = classOf(text.charCodeAt(this.pos));
      if (k === 1) {
        this.pos++;
        continue;
      }
      if (k === 2) {
        this.line++;
        this.pos++;
        continue;
      }
      if (k === 3) {
        const eol = text.indexOf('\n', this.pos);
        this.pos = eol < 0 ? n : eol;
        continue;
      }
      const line = this.line;
      this.lastLine = line;
      if (k === 4) return { kind: 'punct', value: text[this.pos++]!, line };
      if (k === 5) {
        let i = this.pos + 1;
        let escaped = false;
        for (;;) {
          if (i >= n) fail(line, 'a closing " for the string that starts here');
          const c = text.charCodeAt(i);
          if (c === 34) break;
          if (c === 92) {
            escaped = true;
            if (text.charCodeAt(i + 1) === 10) this.line++;
            i += 2;
            continue;
          }
          if (c === 10) this.line++;
          i++;
        }
        const body = text.slice(this.pos + 1, i);
        this.pos = i + 1;
        return { kind: 'string', value: escaped ? unescape(body) : body, line };
      }
      let j = this.pos + 1;
      while (j < n && classOf(text.charCodeAt(j)) === 0) j++;
      const value = text.slice(this.pos, j);
      this.pos = j;
      return { kind: 'word', value, line };
    }
    return null;
  }
}

const KEYWORDS = new Set(
  'lease ia-na ia-ta ia-pd iaaddr iaprefix starts ends tstp tsfp atsfp cltt binding next rewind hardware uid client-hostname set option on abandoned preferred-life max-life server-duid failover authoring-byte-order'.split(' '),
);

/**
 * The next statement `tok… ;` or `tok… { statements }` (blocks nested) at
 * the level whose block opened at `openLine` (null: the top level); null at
 * the end of that block or of the file.
 */
function nextStatement(lx: Lexer, openLine: number | null): Statement | null {
  let cur: Token[] = [];
  for (;;) {
    const t = lx.next();
    if (!t) {
      if (openLine !== null) fail(lx.lastLine, `"}" to close the block opened at line ${openLine}`, 'the end of the file');
      if (cur.length) fail(cur[cur.length - 1]!.line, `";" after "${cur.map((x) => x.value).join(' ').slice(0, 60)}"`, 'the end of the file');
      return null;
    }
    if (t.kind === 'punct' && t.value === ';') {
      if (cur.length) return { tokens: cur, block: null, line: cur[0]!.line };
    } else if (t.kind === 'punct' && t.value === '{') {
      const inner: Statement[] = [];
      for (let st = nextStatement(lx, t.line); st; st = nextStatement(lx, t.line)) inner.push(st);
      return { tokens: cur, block: inner, line: cur[0]?.line ?? t.line };
    } else if (t.kind === 'punct' && t.value === '}') {
      if (openLine === null) fail(t.line, 'a statement (no block is open here)', '}');
      if (cur.length) fail(t.line, `";" after "${cur.map((x) => x.value).join(' ').slice(0, 60)}"`, '}');
      return null;
    } else {
      // dhcpd writes one statement a line: a keyword opening a new line
      // while the previous statement is unfinished means a lost ";".
      const last = cur[cur.length - 1];
      if (last && t.kind === 'word' && t.line > last.line && KEYWORDS.has(t.value)) fail(last.line, `";" at the end of the line after "${cur.map((x) => x.value).join(' ').slice(0, 60)}"`, t.value);
      cur.push(t);
    }
  }
}

const words = (s: Statement): string[] => s.tokens.map((t) => t.value);

/** The date after a keyword: `W YYYY/MM/DD HH:MM:SS`, `epoch N`, a bare epoch (old dhcpd6) or `never` (null). */
function dateOf(s: Statement, what: string): Date | null {
  const v = words(s).slice(1);
  const expected = `a date after ${what} (W YYYY/MM/DD HH:MM:SS in UTC, epoch N, or never)`;
  if (v.length === 1 && v[0] === 'never') return null;
  if (v.length === 2 && v[0] === 'epoch') return epochSeconds(v[1]!) ?? fail(s.line, expected, v.join(' '));
  if (v.length === 1 && s.tokens[1]!.kind === 'word') return epochSeconds(v[0]!) ?? fail(s.line, expected, v.join(' '));
  if (v.length === 3 && /^[0-6]$/.test(v[0]!)) return utcDateTime(v[1]!, v[2]!) ?? fail(s.line, expected, v.join(' '));
  return fail(s.line, expected, v.join(' '));
}

function seconds(s: Statement, what: string): number {
  const v = words(s).slice(1);
  if (v.length !== 1 || !/^\d{1,10}$/.test(v[0]!)) fail(s.line, `a number of seconds after ${what}`, v.join(' '));
  return Number(v[0]);
}

const STATES = ['active', 'free', 'expired', 'released', 'abandoned', 'reset', 'backup', 'bootp'] as const;
type State = (typeof STATES)[number];

function stateOf(s: Statement): State {
  const v = words(s);
  const st = v[2];
  if (v.length !== 3 || !(STATES as readonly string[]).includes(st!)) fail(s.line, `binding state ${STATES.join('|')}`, v.join(' '));
  return st as State;
}

/** A relay agent option value: a quoted string, or colon-separated hex bytes as dhcpd writes unprintable ones. */
function agentValue(s: Statement): string {
  const t = s.tokens[2];
  if (!t || s.tokens.length !== 3) fail(s.line, `one value after ${words(s).slice(0, 2).join(' ')}`, words(s).join(' '));
  if (t.kind === 'string') return agentIdValue([...t.value].map((c) => c.charCodeAt(0)));
  if (!/^[0-9a-fA-F]{1,2}(:[0-9a-fA-F]{1,2})*$/.test(t.value)) fail(s.line, 'a quoted string or colon-separated hex bytes', t.value);
  return agentIdValue(t.value.split(':').map((b) => parseInt(b, 16)));
}

const HOLDING: ReadonlySet<State> = new Set(['active', 'bootp']);
const WAS_HELD: ReadonlySet<State> = new Set(['free', 'released', 'expired']);

interface Entry {
  ip: string;
  state: State;
  starts: Date | null;
  ends: Date | null | undefined; // undefined: no ends statement
  cltt: Date | null;
  line: LeaseRecord['line'];
  /** The time a non-active entry ends the holding. */
  endsAt: Date | null;
}

function v4Lease(s: Statement): Entry {
  const ip = s.tokens.length === 2 && s.tokens[1]!.kind === 'word' ? checkedIp(s.tokens[1]!.value) : null;
  if (!ip || ip.includes(':')) fail(s.line, 'lease IPV4-ADDRESS {', words(s).join(' '));
  let state: State | null = null;
  let starts: Date | null = null;
  let ends: Date | null | undefined;
  let cltt: Date | null = null;
  let mac: string | null = null;
  let circuit: string | null = null;
  for (const st of s.block!) {
    const v = words(st);
    const k = v[0];
    if (st.block) continue; // on commit { … } and the like
    if (k === 'starts') starts = dateOf(st, 'starts');
    else if (k === 'ends') ends = dateOf(st, 'ends');
    else if (k === 'cltt') cltt = dateOf(st, 'cltt');
    else if (k === 'tstp' || k === 'tsfp' || k === 'atsfp') dateOf(st, k);
    else if (k === 'binding') state = stateOf(st);
    else if (k === 'abandoned' && v.length === 1) state = 'abandoned';
    else if (k === 'hardware') {
      if (v.length !== 3) fail(st.line, 'hardware TYPE ADDRESS', v.join(' '));
      if (v[1] === 'ethernet') mac = checkedMac(v[2]!) ?? fail(st.line, 'an Ethernet MAC address (52:54:00:0a:00:01)', v[2]);
    } else if (k === 'option' && v[1] === 'agent.circuit-id') circuit = agentValue(st);
  }
  if (state === null) state = 'active'; // dhcpd 2.x/3.0 wrote no binding state
  if (ends === undefined && HOLDING.has(state)) fail(s.line, `an ends time (or "ends never") in the active lease of ${ip}`);
  // dhcpd abandons an address on a DECLINE (or a ping answered) with starts = that moment and
  // ends = starts + abandon-lease-time: whoever held it, held it until starts.
  const endsAt = state === 'abandoned' ? (starts ?? ends ?? null) : (ends ?? null);
  return { ip, state, starts, ends, cltt, line: circuit ? { kind: 'circuit-id', value: circuit } : mac ? { kind: 'mac', value: mac } : null, endsAt };
}

/** The MAC in a DHCPv6 client's DUID, which follows the 4-byte IAID in the IA's id. */
function duidMac(ia: string): string | null {
  return duidMacBytes([...ia].map((c) => c.charCodeAt(0)).slice(4));
}

function v6Entries(s: Statement): Entry[] {
  const idTok = s.tokens[1];
  if (s.tokens.length !== 2 || !idTok) fail(s.line, `${s.tokens[0]!.value} "IAID+DUID" {`, words(s).join(' '));
  const mac = idTok.kind === 'string' && idTok.value.length >= 8 ? duidMac(idTok.value) : null;
  let cltt: Date | null = null;
  const out: Entry[] = [];
  for (const st of s.block!) {
    const k = st.tokens[0]?.value;
    if (k === 'cltt') cltt = dateOf(st, 'cltt');
  }
  for (const st of s.block!) {
    if (st.tokens[0]?.value !== 'iaaddr' || !st.block) continue;
    const ip = st.tokens.length === 2 ? checkedIpv6(st.tokens[1]!.value) : null;
    if (!ip) fail(st.line, 'iaaddr IPV6-ADDRESS {', words(st).join(' '));
    let state: State = 'active';
    let starts: Date | null = null;
    let ends: Date | null | undefined;
    let maxLife: number | null = null;
    for (const a of st.block) {
      const k = a.tokens[0]?.value;
      if (a.block) continue;
      if (k === 'binding') state = stateOf(a);
      else if (k === 'starts') starts = dateOf(a, 'starts');
      else if (k === 'ends') ends = dateOf(a, 'ends');
      else if (k === 'max-life') maxLife = seconds(a, 'max-life');
      else if (k === 'preferred-life') seconds(a, 'preferred-life');
    }
    const start = starts ?? cltt;
    if (ends === undefined && start && maxLife !== null && maxLife !== 0xffffffff) ends = new Date(start.getTime() + maxLife * 1000);
    // dhcpd6 keeps `ends` on a release and stamps the release time as cltt.
    const endsAt = state === 'released' ? (cltt ?? ends ?? null) : (ends ?? null);
    out.push({ ip, state, starts: start, ends, cltt, line: mac ? { kind: 'mac', value: mac } : null, endsAt });
  }
  return out;
}

const IGNORED = new Set(['server-duid', 'authoring-byte-order', 'failover', 'host', 'group', 'class', 'subclass', 'db-time-format', 'ia-pd']);

export function parse(text: string): LeaseRecord[] {
  const entries: { entry: Entry; line: number }[] = [];
  const lx = new Lexer(text);
  for (let s = nextStatement(lx, null); s; s = nextStatement(lx, null)) {
    const k = s.tokens[0]?.value ?? '';
    if (IGNORED.has(k)) continue;
    if (k === 'lease' && s.block) entries.push({ entry: v4Lease(s), line: s.line });
    else if ((k === 'ia-na' || k === 'ia-ta') && s.block) for (const e of v6Entries(s)) entries.push({ entry: e, line: s.line });
    else fail(s.line, 'lease ADDR { … }, ia-na/ia-ta/ia-pd "…" { … }, server-duid, authoring-byte-order, failover, host, group, class or subclass', words(s).join(' ') || '{');
  }

  const records: LeaseRecord[] = [];
  const current = new Map<string, LeaseRecord>();
  for (const { entry: e, line } of entries) {
    const cur = current.get(e.ip);
    if (HOLDING.has(e.state)) {
      if (!e.starts) fail(line, `a starts time in the active lease of ${e.ip}`);
      const rec: LeaseRecord = { ip: e.ip, start: e.starts, end: e.ends ?? null, line: e.line };
      if (cur && cur.start.getTime() === e.starts.getTime()) Object.assign(cur, rec);
      else {
        // A renewal (new starts) ends the earlier holding there.
        if (cur && cur.start.getTime() < e.starts.getTime() && (cur.end === null || cur.end.getTime() > e.starts.getTime())) cur.end = e.starts;
        records.push(rec);
        current.set(e.ip, rec);
      }
      continue;
    }
    const t = e.endsAt;
    if (!t) continue; // a pool entry that was never held (no end time): nothing to close
    if (cur && cur.start.getTime() < t.getTime() && (cur.end === null || cur.end.getTime() > t.getTime())) cur.end = t;
    if (cur && e.starts && cur.start.getTime() === e.starts.getTime()) continue;
    if (WAS_HELD.has(e.state) && e.line && e.starts && e.starts.getTime() < t.getTime()) {
      const rec: LeaseRecord = { ip: e.ip, start: e.starts, end: t, line: e.line };
      records.push(rec);
      current.set(e.ip, rec);
    }
  }
  return records.filter((r) => r.end === null || r.end.getTime() > r.start.getTime());
}
