/*
 * replay/traffic — a seeded model of a mail worm outbreak (Mydoom.A, January
 * 2004) for `backstop replay`: what arrives at an MX during such a wave.
 *
 * - worm mail from many "infected PCs" (each its own 127.x.y.z source), with
 *   envelope and header senders forged from a harvested address book that
 *   holds our own users, other real-looking domains and nonexistent local
 *   users; Mydoom's subjects and bodies; the payload (EICAR or a ClamAV test
 *   file) as .pif/.scr/.exe/.cmd/.bat or inside a .zip, with double
 *   extensions and padded names;
 * - legitimate mail interleaved: plain, with an office document, with a
 *   harmless zip;
 * - backscatter aimed at our users: bounces and "virus found" notices from
 *   third-party MTAs for worm mail that forged our users as senders — the
 *   MTAs' DSNs with the null sender (RFC 5321 4.5.5), the antivirus vendors'
 *   notices from a real sender address, as those products sent them, quoting
 *   the original's headers and the first line of its text;
 * - our own ISP customers among the infected: sources in the ISP's static
 *   space (127.40/16) sending the worm to the outside through Backstop as
 *   their smarthost;
 * - our own users' real mail out through Backstop as their smarthost (from
 *   the office network, 127.50.0/24, in relayFrom), and real bounces of some
 *   of it from the remote MTAs: a DSN from the null sender to the BATV-signed
 *   address the mail left with, quoting the headers it left with (its
 *   Message-ID and the stamp). Those can only be built from what the node
 *   really sent (the tag and stamp are keyed in its store), so a real-bounce
 *   entry is bound to its captured original at run time (bindOriginals).
 *
 * Pure and deterministic: the same seed gives the same plan. Raw messages are
 * built on demand from a plan entry, so a 100,000-message plan stays small in
 * memory. The plan records the ground truth the scoreboard checks against.
 */
import { readFileSync } from 'node:fs';
import { zipSync, strToU8 } from 'fflate';

export const EICAR = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*';
const CLAMAV_TEST_FILE = '/usr/share/clamav-testfiles/clam.exe';

/** A small, fast, seedable PRNG (mulberry32): reproducible plans across runs and machines. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface ReplaySizes {
  /** External infected PCs (other networks), and the worm messages they send to our users. */
  wormSources: number;
  wormMessages: number;
  /** Infected PCs of our own ISP customers, and the worm messages they send out through the smarthost. */
  customerSources: number;
  customerWormMessages: number;
  legitMessages: number;
  backscatterMessages: number;
  bouncingDomains: number;
  /** Our users' mail out through the smarthost, and how many of those the remote MTAs bounce back (really). */
  outboundMessages: number;
  realBounces: number;
}

// large: 100,000 messages from 1,000 infected sources (950 outside, 50 our customers); 12,000 of them
// legitimate: 10,500 in, 1,000 of our users' out and 500 real bounces of those.
export const SIZES: Record<'small' | 'large', ReplaySizes> = {
  small: { wormSources: 20, wormMessages: 300, customerSources: 3, customerWormMessages: 24, legitMessages: 60, backscatterMessages: 60, bouncingDomains: 8, outboundMessages: 8, realBounces: 4 },
  large: { wormSources: 950, wormMessages: 78_000, customerSources: 50, customerWormMessages: 2_000, legitMessages: 10_500, backscatterMessages: 8_000, bouncingDomains: 50, outboundMessages: 1_000, realBounces: 500 },
};

export type PayloadKind = 'eicar' | 'clamav-test-file';

export interface WormEntry {
  kind: 'worm';
  seq: number;
  sourceIp: string;
  helo: string;
  mailFrom: string;
  headerFrom: string;
  rcpt: string;
  subject: string;
  body: string;
  attachmentName: string;
  payload: PayloadKind;
  zipped: boolean;
  /** Set when the source is one of our ISP customers: then rcpt is outside and the mail is relayed. */
  customerId?: string;
}

export interface LegitEntry {
  kind: 'legit';
  seq: number;
  sourceIp: string;
  helo: string;
  mailFrom: string;
  rcpt: string;
  subject: string;
  flavour: 'plain' | 'office-document' | 'harmless-zip';
}

export interface BackscatterEntry {
  kind: 'backscatter';
  seq: number;
  sourceIp: string;
  helo: string;
  bouncingDomain: string;
  /** The envelope sender: the vendor's address for an antivirus notice; '' or absent for an MTA's bounce (the null sender). */
  mailFrom?: string;
  rcpt: string;
  style: BackscatterStyle;
  /** The worm message the third party bounced or "notified" about (it forged our user). */
  quoted: { mailFrom: string; rcpt: string; subject: string; messageId: string; fromIp: string };
}

/** Our user's own mail, out through the smarthost to a remote domain: the node signs the sender and stamps the Message-ID. */
export interface OutboundEntry {
  kind: 'outbound';
  seq: number;
  sourceIp: string;
  helo: string;
  /** Our user, unsigned (the node signs it). */
  mailFrom: string;
  rcpt: string;
  subject: string;
}

/** The original as it left the node (captured at the next hop): the envelope sender it left with, and its header block. */
export interface CapturedOriginal {
  envelopeFrom: string;
  headers: string;
}

/** A remote MTA's real bounce of an outbound entry: a DSN from the null sender to the address the original left with. */
export interface RealBounceEntry {
  kind: 'real-bounce';
  seq: number;
  sourceIp: string;
  helo: string;
  remoteDomain: string;
  /** The seq of the outbound entry bounced. */
  bounces: number;
  /** Our user, unsigned: the mailbox the bounce must reach (the tag removed before the next hop). */
  rcpt: string;
  /** The recipient that failed at the remote end. */
  failedRcpt: string;
  /** Bound at run time from what the next hop captured; absent: the original never left, nothing to bounce. */
  original?: CapturedOriginal;
}

export type PlanEntry = WormEntry | LegitEntry | BackscatterEntry | OutboundEntry | RealBounceEntry;

export const BACKSCATTER_STYLES = ['postfix-dsn', 'exim-bounce', 'qmail-bounce', 'sendmail-dsn', 'exchange-ndr', 'norton-notice', 'mcafee-notice', 'trend-scanmail-notice', 'mailscanner-notice', 'messagelabs-notice'] as const;
export type BackscatterStyle = (typeof BACKSCATTER_STYLES)[number];

/**
 * The antivirus products' notices: sent from a real address (not the null
 * sender), so they reach end of DATA, where the shield classifies them and
 * a complaint can quote their headers. The MTAs' bounces use the null sender
 * and are refused at RCPT, before anything of them is received.
 */
export const NOTICE_STYLES: ReadonlySet<BackscatterStyle> = new Set(['norton-notice', 'mcafee-notice', 'trend-scanmail-notice', 'mailscanner-notice', 'messagelabs-notice']);

/** The address each style sends from (the From: field; for notices also the envelope sender). */
function backscatterSender(style: BackscatterStyle, domain: string): string {
  const mta = `mx.${domain}`;
  switch (style) {
    case 'postfix-dsn':
    case 'qmail-bounce':
      return `MAILER-DAEMON@${mta}`;
    case 'sendmail-dsn':
      return `MAILER-DAEMON@${mta}`;
    case 'exim-bounce':
      return `Mailer-Daemon@${mta}`;
    case 'exchange-ndr':
    case 'mailscanner-notice':
      return `postmaster@${domain}`;
    case 'norton-notice':
      return `nav@${domain}`;
    case 'mcafee-notice':
      return `groupshield@${domain}`;
    case 'trend-scanmail-notice':
      return `scanmail@${domain}`;
    case 'messagelabs-notice':
      return `anti-virus@${domain}`;
  }
}

/** One of our ISP customers in the plan: the customer export's row, its static assignment, its infected PC. */
export interface PlanCustomer {
  id: string;
  name: string;
  email: string;
  language: string;
  timeZone: string;
  /** The static assignment (CIDR); sourceIp lies inside it. */
  network: string;
  sourceIp: string;
}

/** A third-party MTA that bounces or "notifies": one address per domain, and where a complaint about it must go. */
export interface PlanBouncer {
  domain: string;
  ip: string;
  style: BackscatterStyle;
  /** The address's abuse desk (an override: loopback has no registry), abuse@ the domain itself. */
  contact: string;
}

export interface ReplayPlan {
  seed: number;
  ourDomain: string;
  ourUsers: string[];
  entries: PlanEntry[];
  wormSourceIps: string[];
  /** The abuse desks of the worm sources' networks, as Backstop's `abuse.overrides` will be configured. */
  abuseOverrides: { cidr: string; contact: string }[];
  /** Ground truth per external worm source: the desk its report must go to, or null when its network opted out. */
  abuseContactOf: Record<string, string | null>;
  /** Our ISP customers whose PCs are infected; their space is `customerSpace` (handed to the desk, never reported by mail). */
  customers: PlanCustomer[];
  customerSpace: string[];
  /** Our users' office network: in relayFrom, so their mail out is signed and stamped. */
  officeNetwork: string;
  bouncers: PlanBouncer[];
  /** Bouncing domains that must get exactly one complaint: those whose notices reached end of DATA (antivirus notices). */
  complaintDomains: string[];
}

/**
 * The worm sources' networks: each aligned /29 of 127.10.x.y is one ISP with
 * its own desk, every fourth has opted out ("never"), and one address inside
 * the first network has a desk of its own (a /32 override: the longest prefix
 * must win). Built so the expected contact of each source is known by
 * construction, not by running our own matching code.
 */
function abuseNetworks(sources: readonly string[]): Pick<ReplayPlan, 'abuseOverrides' | 'abuseContactOf'> {
  const abuseOverrides: ReplayPlan['abuseOverrides'] = [];
  const abuseContactOf: ReplayPlan['abuseContactOf'] = {};
  const networks = new Map<string, { cidr: string; contact: string }>();
  for (const ip of sources) {
    const [a, b, c, d] = ip.split('.').map(Number) as [number, number, number, number];
    const base = d - (d % 8);
    const cidr = `${a}.${b}.${c}.${base}/29`;
    let network = networks.get(cidr);
    if (!network) {
      const n = networks.size;
      network = { cidr, contact: n % 4 === 3 ? 'never' : `abuse@net${n + 1}.example.com` };
      networks.set(cidr, network);
      abuseOverrides.push(network);
    }
    abuseContactOf[ip] = network.contact === 'never' ? null : network.contact;
  }
  const special = sources[1];
  if (special) {
    abuseOverrides.push({ cidr: `${special}/32`, contact: 'abuse@reseller.example.org' });
    abuseContactOf[special] = 'abuse@reseller.example.org';
  }
  return { abuseOverrides, abuseContactOf };
}

// Mydoom.A's own subjects and bodies (as catalogued by the AV vendors in January 2004).
const WORM_SUBJECTS = ['test', 'hi', 'hello', 'Mail Delivery System', 'Mail Transaction Failed', 'Server Report', 'Status', 'Error'];
const WORM_BODIES = [
  'The message cannot be represented in 7-bit ASCII encoding and has been sent as a binary attachment.',
  'The message contains Unicode characters and has been sent as a binary attachment.',
  'Mail transaction failed. Partial message is available.',
  'test',
];
const WORM_BASENAMES = ['document', 'readme', 'doc', 'text', 'file', 'data', 'test', 'message', 'body'];
const WORM_EXTENSIONS = ['pif', 'scr', 'exe', 'cmd', 'bat'];
const OTHER_DOMAINS = ['example.org', 'example.com', 'mail.example.edu', 'shop.example.biz', 'isp.example.info', 'corp.example.co.uk'];
const FIRST_NAMES = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan', 'judy', 'mallory', 'oscar', 'peggy', 'trent', 'victor', 'walter'];

function pick<T>(rand: () => number, list: readonly T[]): T {
  return list[Math.floor(rand() * list.length)]!;
}

/** 127.B.C.D addresses: the whole 127/8 is loopback on Linux, so each source can bind its own. */
function loopbackIp(block: number, index: number): string {
  return `127.${block}.${Math.floor(index / 250)}.${(index % 250) + 1}`;
}

export function planReplay(sizes: ReplaySizes, seed = 2004, ourDomain = 'example.net'): ReplayPlan {
  const rand = prng(seed);
  let customerTurn = 0;
  const ourUsers = FIRST_NAMES.slice(0, 10).map((n) => `${n}@${ourDomain}`);
  // The harvested address book: our users, other domains, and local parts that do not exist here.
  const addressBook = [
    ...ourUsers,
    ...FIRST_NAMES.flatMap((n) => OTHER_DOMAINS.slice(0, 3).map((d) => `${n}@${d}`)),
    ...['sales', 'info', 'nobody-here', 'jsmith', 'webmaster2'].map((n) => `${n}@${ourDomain}`),
  ];
  const wormSourceIps = Array.from({ length: sizes.wormSources }, (_, i) => loopbackIp(10, i));
  const bouncing: PlanBouncer[] = Array.from({ length: sizes.bouncingDomains }, (_, i) => ({
    domain: `bouncer${i + 1}.example.com`,
    ip: loopbackIp(30, i),
    style: BACKSCATTER_STYLES[i % BACKSCATTER_STYLES.length]!,
    contact: `abuse@bouncer${i + 1}.example.com`,
  }));
  const customers = planCustomers(sizes.customerSources);
  const outside = addressBook.filter((a) => !a.endsWith(`@${ourDomain}`));

  type Slot = PlanEntry['kind'] | 'customer-worm';
  const kinds: Slot[] = [
    ...Array<Slot>(sizes.wormMessages).fill('worm'),
    ...Array<Slot>(sizes.customerWormMessages).fill('customer-worm'),
    ...Array<Slot>(sizes.legitMessages).fill('legit'),
    ...Array<Slot>(sizes.backscatterMessages).fill('backscatter'),
  ];
  // Interleave: a Fisher–Yates shuffle with the seeded generator.
  for (let i = kinds.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [kinds[i], kinds[j]] = [kinds[j]!, kinds[i]!];
  }

  const entries: PlanEntry[] = kinds.map((slot, seq) => {
    const kind = slot === 'customer-worm' ? 'worm' : slot;
    if (kind === 'worm') {
      // Each customer sends at least one (round-robin), so every planned customer is infected.
      const customer = slot === 'customer-worm' ? customers[customerTurn++ % customers.length]! : null;
      const sourceIp = customer ? customer.sourceIp : pick(rand, wormSourceIps);
      const base = pick(rand, WORM_BASENAMES);
      const ext = pick(rand, WORM_EXTENSIONS);
      const style = rand();
      const attachmentName =
        style < 0.5 ? `${base}.${ext}` : style < 0.75 ? `${base}.txt.${ext}` : `${base}.doc${' '.repeat(60)}.${ext}`;
      return {
        kind,
        seq,
        sourceIp,
        helo: pick(rand, ['localhost', sourceIp, `pc${seq % 97}`, 'home-pc']),
        mailFrom: pick(rand, addressBook),
        headerFrom: pick(rand, addressBook),
        rcpt: customer ? pick(rand, outside) : pick(rand, ourUsers),
        subject: pick(rand, WORM_SUBJECTS),
        body: pick(rand, WORM_BODIES),
        attachmentName,
        payload: rand() < 0.5 ? 'eicar' : 'clamav-test-file',
        zipped: rand() < 0.3,
        ...(customer ? { customerId: customer.id } : {}),
      } satisfies WormEntry;
    }
    if (kind === 'legit') {
      const i = Math.floor(rand() * 20);
      return {
        kind,
        seq,
        sourceIp: loopbackIp(20, i),
        helo: `mail${i}.example.org`,
        mailFrom: `${pick(rand, FIRST_NAMES)}@${pick(rand, OTHER_DOMAINS)}`,
        rcpt: pick(rand, ourUsers),
        subject: `Minutes of the meeting #${seq}`,
        flavour: pick(rand, ['plain', 'office-document', 'harmless-zip'] as const),
      } satisfies LegitEntry;
    }
    const b = pick(rand, bouncing);
    const victim = pick(rand, ourUsers);
    return {
      kind: 'backscatter',
      seq,
      sourceIp: b.ip,
      helo: `mx.${b.domain}`,
      bouncingDomain: b.domain,
      mailFrom: NOTICE_STYLES.has(b.style) ? backscatterSender(b.style, b.domain) : '',
      rcpt: victim,
      style: b.style,
      quoted: {
        mailFrom: victim,
        rcpt: `${pick(rand, FIRST_NAMES)}@${b.domain}`,
        subject: pick(rand, WORM_SUBJECTS),
        messageId: `<${Math.floor(rand() * 1e12).toString(36)}@${pick(rand, ['localhost', 'home-pc'])}>`,
        fromIp: `198.51.100.${1 + Math.floor(rand() * 250)}`,
      },
    } satisfies BackscatterEntry;
  });

  const networks = abuseNetworks(wormSourceIps);
  const all = withOurMailOut(entries, sizes, seed, ourUsers);
  const used = new Set(entries.flatMap((e) => (e.kind === 'backscatter' ? [e.bouncingDomain] : [])));
  return {
    seed,
    ourDomain,
    ourUsers,
    entries: all,
    wormSourceIps,
    // The bouncers' addresses have their desks too (the complaint's "abuse contact of the address").
    abuseOverrides: [...networks.abuseOverrides, ...bouncing.map((b) => ({ cidr: `${b.ip}/32`, contact: b.contact }))],
    abuseContactOf: networks.abuseContactOf,
    customers,
    customerSpace: [CUSTOMER_SPACE],
    officeNetwork: OFFICE_NETWORK,
    bouncers: bouncing,
    complaintDomains: bouncing.filter((b) => NOTICE_STYLES.has(b.style) && used.has(b.domain)).map((b) => b.domain),
  };
}

/** The ISP's own customer space: static business lines, outside every worm network's /29. */
const CUSTOMER_SPACE = '127.40.0.0/16';
/** Our users' office network (relayFrom): apart from the customers' space, so the desk never sees it. */
const OFFICE_NETWORK = '127.50.0.0/24';
const REMOTE_DOMAINS = 4;

/**
 * Our users' mail out and the remote MTAs' real bounces of some of it,
 * spliced into the wave at seeded places. A generator of its own, so the
 * wave itself (which sources, bouncers and styles) is the one a seed always
 * gave; the seqs are renumbered in plan order.
 */
function withOurMailOut(wave: PlanEntry[], sizes: ReplaySizes, seed: number, ourUsers: readonly string[]): PlanEntry[] {
  const rand = prng(seed ^ 0x0b0b);
  const out: OutboundEntry[] = Array.from({ length: sizes.outboundMessages }, (_, i) => {
    const pc = i % 10;
    return {
      kind: 'outbound',
      seq: 0,
      sourceIp: `127.50.0.${pc + 1}`,
      helo: `pc${pc}.office.example.net`,
      mailFrom: pick(rand, ourUsers),
      rcpt: `${pick(rand, FIRST_NAMES)}@far${1 + Math.floor(rand() * REMOTE_DOMAINS)}.example.org`,
      subject: `Your quote #${i + 1}`,
    };
  });
  const bounces: RealBounceEntry[] = out.slice(0, Math.min(sizes.realBounces, out.length)).map((o) => {
    const domain = o.rcpt.slice(o.rcpt.indexOf('@') + 1);
    const n = Number(/^far(\d+)/.exec(domain)![1]);
    return { kind: 'real-bounce', seq: 0, sourceIp: loopbackIp(31, n - 1), helo: `mx.${domain}`, remoteDomain: domain, bounces: -1, rcpt: o.mailFrom, failedRcpt: o.rcpt };
  });
  const all: PlanEntry[] = [...wave];
  for (const e of [...out, ...bounces]) all.splice(Math.floor(rand() * (all.length + 1)), 0, e);
  // Renumber in plan order (the Message-IDs and dates follow seq), then point each bounce at its original's new seq.
  const renumbered = all.map((e, seq) => ({ ...e, seq }));
  const seqOf = new Map(out.map((o) => [o, renumbered[all.indexOf(o)]!.seq]));
  return renumbered.map((e, i) => (e.kind === 'real-bounce' ? { ...e, bounces: seqOf.get(out[bounces.indexOf(all[i] as RealBounceEntry)]!)! } : e));
}

/**
 * The outbound originals as the next hop captured them (each names its entry
 * in its Message-ID, which the node keeps), bound to the real bounces of
 * them. Pure: `captured` is what the sink wrote (envelope sender, dump text).
 */
export function bindOriginals(entries: readonly PlanEntry[], captured: readonly { mailFrom: string; text: string }[]): PlanEntry[] {
  const outbound = new Set(entries.filter((e) => e.kind === 'outbound').map((e) => e.seq));
  const originals = new Map<number, CapturedOriginal>();
  for (const m of captured) {
    const seq = Number(/^Message-ID: <replay-(\d+)@/im.exec(m.text)?.[1] ?? NaN);
    if (!outbound.has(seq)) continue;
    // The message as it left: from the sink's own Received line (a remote MTA adds one too) to the end of the header block.
    const start = Math.max(0, m.text.search(/^Received: /m));
    const rest = m.text.slice(start);
    const end = rest.search(/\r?\n\r?\n/);
    const block = end === -1 ? rest : rest.slice(0, end);
    originals.set(seq, { envelopeFrom: m.mailFrom, headers: block.replace(/\r?\n/g, '\r\n') + '\r\n' });
  }
  return entries.map((e) => (e.kind === 'real-bounce' && originals.has(e.bounces) ? { ...e, original: originals.get(e.bounces)! } : e));
}

/**
 * Our infected customers: even ones hold a /30 (the PC is its first host),
 * odd ones a single address; a few write German and live in Berlin, so the
 * notices and the portal run in both built-in languages.
 */
function planCustomers(count: number): PlanCustomer[] {
  return Array.from({ length: count }, (_, i) => {
    const base = `127.40.${Math.floor(i / 60)}.${(i % 60) * 4}`;
    const last = Number(base.split('.')[3]);
    const prefix = base.split('.').slice(0, 3).join('.');
    const de = i % 3 === 1;
    const n = String(i + 1).padStart(4, '0');
    return {
      id: `c-${n}`,
      name: de ? `Kundin ${n}` : `Customer ${n}`,
      email: `holder${n}@customers.example.org`,
      language: de ? 'de' : 'en',
      timeZone: de ? 'Europe/Berlin' : 'UTC',
      network: i % 2 === 0 ? `${base}/30` : `${prefix}.${last + 2}/32`,
      sourceIp: i % 2 === 0 ? `${prefix}.${last + 1}` : `${prefix}.${last + 2}`,
    };
  });
}

let clamavTestFile: Uint8Array | null = null;
function payloadBytes(kind: PayloadKind): Uint8Array {
  if (kind === 'eicar') return strToU8(EICAR);
  clamavTestFile ??= new Uint8Array(readFileSync(CLAMAV_TEST_FILE));
  return clamavTestFile;
}

/**
 * Strings that only something of the worm could carry: the payloads (raw, and
 * the first base64 line a MIME part of them starts with) and the worm's own
 * text lines that notices quote. What the scoreboard looks for in complaints.
 */
/**
 * Which node each entry goes to when the replay runs N nodes (by seq): the
 * k-th message of the i-th source (in order of first appearance) to node
 * (i + k) mod N. Round-robin within a source, so every source with N or more
 * messages reaches every node: its one ARF report and the one notice per
 * name then have to be agreed through the shared store, not by one node's
 * memory — the guarantee worth showing. Deterministic: one plan, one spread.
 */
export function spreadOverNodes(entries: readonly Pick<PlanEntry, 'seq' | 'sourceIp'>[], nodes: number): Map<number, number> {
  const sourceIndex = new Map<string, number>();
  const sentBy = new Map<string, number>();
  const spread = new Map<number, number>();
  for (const e of [...entries].sort((a, b) => a.seq - b.seq)) {
    if (!sourceIndex.has(e.sourceIp)) sourceIndex.set(e.sourceIp, sourceIndex.size);
    const k = sentBy.get(e.sourceIp) ?? 0;
    sentBy.set(e.sourceIp, k + 1);
    spread.set(e.seq, (sourceIndex.get(e.sourceIp)! + k) % nodes);
  }
  return spread;
}

export function wormFragments(): string[] {
  const clam = payloadBytes('clamav-test-file');
  return [
    EICAR,
    Buffer.from(EICAR).toString('base64').slice(0, 60),
    Buffer.from(clam.subarray(0, 45)).toString('base64'),
    Buffer.from(clam.subarray(0, 48)).toString('latin1'),
    ...WORM_BODIES.slice(0, 3),
  ];
}

const CRLF = '\r\n';
const date = (seq: number) => new Date(Date.UTC(2004, 0, 26, 13, 0, 0) + seq * 1000).toUTCString().replace('GMT', '+0000');

function base64Lines(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64').replace(/.{1,76}/g, (line) => line + CRLF);
}

function multipart(headers: string[], boundary: string, parts: { headers: string[]; body: string }[], subtype = 'mixed', params = ''): string {
  return [
    ...headers,
    'MIME-Version: 1.0',
    `Content-Type: multipart/${subtype}; boundary="${boundary}"${params}`,
    '',
    'This is a multi-part message in MIME format.',
    ...parts.flatMap((p) => [`--${boundary}`, ...p.headers, '', p.body]),
    `--${boundary}--`,
    '',
  ].join(CRLF);
}

/** A marker the scoreboard greps for at the next hop: worm mail that arrives there carries it. */
export const WORM_MARKER = 'X-Replay-Kind: worm';

export function buildRaw(entry: PlanEntry): Buffer {
  switch (entry.kind) {
    case 'worm': {
      const bytes = payloadBytes(entry.payload);
      const inner = entry.attachmentName;
      const attachment = entry.zipped ? zipSync({ [inner]: bytes }) : bytes;
      const name = entry.zipped ? `${entry.attachmentName.split('.')[0]}.zip` : inner;
      return Buffer.from(
        multipart(
          [
            `From: ${entry.headerFrom}`,
            `To: ${entry.rcpt}`,
            `Subject: ${entry.subject}`,
            `Date: ${date(entry.seq)}`,
            `Message-ID: <replay-${entry.seq}@worm.invalid>`,
            WORM_MARKER,
            'X-Priority: 3',
          ],
          `----=_NextPart_000_${entry.seq.toString(16).padStart(4, '0')}`,
          [
            { headers: ['Content-Type: text/plain; charset=us-ascii', 'Content-Transfer-Encoding: 7bit'], body: entry.body + CRLF },
            {
              headers: [
                `Content-Type: application/octet-stream; name="${name}"`,
                'Content-Transfer-Encoding: base64',
                `Content-Disposition: attachment; filename="${name}"`,
              ],
              body: base64Lines(attachment),
            },
          ],
        ),
      );
    }
    case 'legit': {
      const headers = [
        `From: ${entry.mailFrom}`,
        `To: ${entry.rcpt}`,
        `Subject: ${entry.subject}`,
        `Date: ${date(entry.seq)}`,
        `Message-ID: <replay-${entry.seq}@legit.invalid>`,
        'X-Replay-Kind: legit',
      ];
      const text = `Hello,${CRLF}${CRLF}please find the minutes of today's meeting below.${CRLF}${'Item: budget review, agreed. '.repeat(20)}${CRLF}`;
      if (entry.flavour === 'plain') {
        return Buffer.from([...headers, 'MIME-Version: 1.0', 'Content-Type: text/plain; charset=utf-8', '', text].join(CRLF));
      }
      const file =
        entry.flavour === 'office-document'
          ? {
              name: 'minutes.docx',
              type: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
              bytes: zipSync({
                '[Content_Types].xml': strToU8('<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>'),
                'word/document.xml': strToU8(`<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>${'minutes '.repeat(200)}</w:t></w:r></w:p></w:body></w:document>`),
              }),
            }
          : {
              name: 'figures.zip',
              type: 'application/zip',
              bytes: zipSync({ 'figures.csv': strToU8('month,total\n' + 'jan,1\n'.repeat(300)), 'notes.txt': strToU8('harmless notes\n') }),
            };
      return Buffer.from(
        multipart(headers, `legit-${entry.seq}`, [
          { headers: ['Content-Type: text/plain; charset=utf-8'], body: text },
          {
            headers: [`Content-Type: ${file.type}; name="${file.name}"`, 'Content-Transfer-Encoding: base64', `Content-Disposition: attachment; filename="${file.name}"`],
            body: base64Lines(file.bytes),
          },
        ]),
      );
    }
    case 'backscatter':
      return Buffer.from(buildBackscatter(entry));
    case 'outbound': {
      const domain = entry.mailFrom.slice(entry.mailFrom.indexOf('@') + 1);
      const text = `Dear customer,${CRLF}${CRLF}thank you for your enquiry; our quote is attached below.${CRLF}${'Item: 12 units at 40.00 each. '.repeat(10)}${CRLF}`;
      return Buffer.from(
        [
          `From: ${entry.mailFrom}`,
          `To: ${entry.rcpt}`,
          `Subject: ${entry.subject}`,
          `Date: ${date(entry.seq)}`,
          `Message-ID: <replay-${entry.seq}@${domain}>`,
          'X-Replay-Kind: outbound',
          'MIME-Version: 1.0',
          'Content-Type: text/plain; charset=utf-8',
          '',
          text,
        ].join(CRLF),
      );
    }
    case 'real-bounce':
      return Buffer.from(buildRealBounce(entry));
  }
}

/**
 * A remote MTA's DSN (RFC 3464, as Postfix writes it) for our user's mail it
 * could not deliver: to the envelope sender the original came with (the
 * signed one), quoting the header block it received (the stamp with it).
 */
function buildRealBounce(e: RealBounceEntry): string {
  if (!e.original) throw new Error(`real bounce ${e.seq}: its original (${e.bounces}) was never captured`);
  const mta = `mx.${e.remoteDomain}`;
  return multipart(
    [
      `From: MAILER-DAEMON@${mta} (Mail Delivery System)`,
      'Subject: Undelivered Mail Returned to Sender',
      `To: ${e.original.envelopeFrom}`,
      `Date: ${date(e.seq)}`,
      `Message-ID: <replay-${e.seq}@${mta}>`,
      'Auto-Submitted: auto-replied',
      'X-Replay-Kind: real-bounce',
    ],
    `real-dsn-${e.seq}`,
    [
      {
        headers: ['Content-Type: text/plain; charset=us-ascii'],
        body: `This is the mail system at host ${mta}.${CRLF}${CRLF}I'm sorry to have to inform you that your message could not${CRLF}be delivered to one or more recipients.${CRLF}${CRLF}<${e.failedRcpt}>: mailbox full${CRLF}`,
      },
      {
        headers: ['Content-Type: message/delivery-status'],
        body: [`Reporting-MTA: dns; ${mta}`, '', `Final-Recipient: rfc822; ${e.failedRcpt}`, 'Action: failed', 'Status: 5.2.2', 'Diagnostic-Code: smtp; 552 5.2.2 mailbox full', ''].join(CRLF),
      },
      { headers: ['Content-Type: text/rfc822-headers'], body: e.original.headers },
    ],
    'report',
    '; report-type=delivery-status',
  );
}

function quotedHeaders(e: BackscatterEntry): string {
  return [
    `Received: from home-pc ([${e.quoted.fromIp}]) by mx.${e.bouncingDomain} with SMTP; ${date(e.seq - 1)}`,
    `From: ${e.quoted.mailFrom}`,
    `To: ${e.quoted.rcpt}`,
    `Subject: ${e.quoted.subject}`,
    `Date: ${date(e.seq - 1)}`,
    `Message-ID: ${e.quoted.messageId}`,
    'MIME-Version: 1.0',
    '',
  ].join(CRLF);
}

/** The first line of the worm's text that a notice quotes below the original's headers (never "test": too common to look for). */
export function quotedWormText(e: Pick<BackscatterEntry, 'seq'>): string {
  return WORM_BODIES[e.seq % 3]!;
}

function buildBackscatter(e: BackscatterEntry): string {
  const mta = `mx.${e.bouncingDomain}`;
  const common = [`Date: ${date(e.seq)}`, `Message-ID: <replay-${e.seq}@${mta}>`, `To: ${e.rcpt}`, 'X-Replay-Kind: backscatter'];
  const dsn = (from: string, subject: string, human: string) =>
    multipart(
      [`From: ${from}`, `Subject: ${subject}`, ...common, 'Auto-Submitted: auto-replied'],
      `dsn-${e.seq}`,
      [
        { headers: ['Content-Type: text/plain; charset=us-ascii'], body: human + CRLF },
        {
          headers: ['Content-Type: message/delivery-status'],
          body: [`Reporting-MTA: dns; ${mta}`, '', `Final-Recipient: rfc822; ${e.quoted.rcpt}`, 'Action: failed', 'Status: 5.7.1', `Diagnostic-Code: smtp; 550 5.7.1 virus found in message`, ''].join(CRLF),
        },
        { headers: ['Content-Type: text/rfc822-headers'], body: quotedHeaders(e) },
      ],
      'report',
      '; report-type=delivery-status',
    );
  // Notices and text bounces quote the original: its headers, then the start of its text — the worm's own words.
  const notice = (from: string, subject: string, text: string) =>
    [`From: ${from}`, `Subject: ${subject}`, ...common, 'MIME-Version: 1.0', 'Content-Type: text/plain; charset=us-ascii', '', text, '', quotedHeaders(e), quotedWormText(e), ''].join(CRLF);
  switch (e.style) {
    case 'postfix-dsn':
      return dsn(`MAILER-DAEMON@${mta} (Mail Delivery System)`, 'Undelivered Mail Returned to Sender', `This is the mail system at host ${mta}.\r\n\r\nI'm sorry to have to inform you that your message could not\r\nbe delivered to one or more recipients.`);
    case 'sendmail-dsn':
      return dsn(`Mail Delivery Subsystem <MAILER-DAEMON@${mta}>`, 'Returned mail: see transcript for details', 'The original message was received and could not be delivered.\r\n   ----- The following addresses had permanent fatal errors -----');
    case 'exchange-ndr':
      return dsn(`postmaster@${e.bouncingDomain}`, `Undeliverable: ${e.quoted.subject}`, 'Your message did not reach some or all of the intended recipients.');
    case 'exim-bounce':
      return notice(`Mail Delivery System <Mailer-Daemon@${mta}>`, 'Mail delivery failed: returning message to sender', `This message was created automatically by mail delivery software.\r\n\r\nA message that you sent could not be delivered to one or more of its\r\nrecipients. This is a permanent error. The following address(es) failed:\r\n\r\n  ${e.quoted.rcpt}\r\n    SMTP error from remote mail server after end of data:\r\n    550 This message contains a virus\r\n\r\n------ This is a copy of the message, including all the headers. ------`);
    case 'qmail-bounce':
      return notice(`MAILER-DAEMON@${mta}`, 'failure notice', `Hi. This is the qmail-send program at ${mta}.\r\nI'm afraid I wasn't able to deliver your message to the following addresses.\r\nThis is a permanent error; I've given up. Sorry it didn't work out.\r\n\r\n<${e.quoted.rcpt}>:\r\nvirus found\r\n\r\n--- Below this line is a copy of the message.`);
    case 'norton-notice':
      return notice(`NAV for Microsoft Exchange <nav@${e.bouncingDomain}>`, 'Norton AntiVirus detected and quarantined a virus in a message you sent.', `Recipient of the infected attachment: ${e.quoted.rcpt}\r\nSubject of the message: ${e.quoted.subject}\r\nOne or more attachments were quarantined.\r\n  Attachment document.pif was Quarantined for the following reasons:\r\n    Virus W32.Novarg.A@mm was found.`);
    case 'mcafee-notice':
      return notice(`GroupShield <groupshield@${e.bouncingDomain}>`, 'ALERT - GroupShield ticket number OA1234 was generated', `Action Taken:\r\nThe attachment was quarantined from the message and replaced with a text file informing the recipient of the action taken.\r\n\r\nTo: ${e.quoted.rcpt}\r\nFrom: ${e.quoted.mailFrom}\r\n\r\nAttachment Details:-\r\nAttachment Name: readme.zip\r\nFile: readme.zip\r\nInfected? Yes\r\nRepaired? No\r\nBlocked? No\r\nDeleted? Yes\r\nVirus Name: W32/Mydoom@MM`);
    case 'trend-scanmail-notice':
      return notice(`ScanMail for Microsoft Exchange <scanmail@${e.bouncingDomain}>`, 'Virus Alert', `ScanMail for Microsoft Exchange has detected virus-infected attachment(s).\r\n\r\nScanMail for Microsoft Exchange took action on the message.\r\nThe message details were:\r\nSender = ${e.quoted.mailFrom}\r\nRecipient(s) = ${e.quoted.rcpt};\r\nSubject = ${e.quoted.subject}\r\nScanning time = ${date(e.seq)}\r\nAction on message:\r\nThe attachment text.pif contained WORM_MIMAIL.R virus. ScanMail has Deleted it.`);
    case 'mailscanner-notice':
      return notice(`MailScanner <postmaster@${e.bouncingDomain}>`, '{Virus?} ' + e.quoted.subject, `Our virus detector has just been triggered by a message you sent:-\r\n  To: ${e.quoted.rcpt}\r\n  Subject: ${e.quoted.subject}\r\n  Date: ${date(e.seq - 1)}\r\nAny infected parts of the message have not been delivered.\r\n\r\nThis message is simply to warn you that your computer system may have a\r\ncomputer virus present and should be checked.\r\n\r\nThe virus detector said this about the message:\r\nReport: ClamAV: text.scr contains Worm.Mydoom.A`);
    case 'messagelabs-notice':
      return notice(`MessageLabs Anti Virus Service <anti-virus@${e.bouncingDomain}>`, 'WARNING. You sent a potential virus or unauthorised code', `For English instructions please scroll down.\r\n\r\nThe MessageLabs Virus Control Centre discovered a possible virus or\r\nunauthorised code (such as a joke program or trojan) in an email sent by you.\r\n\r\nPlease read this whole email carefully.\r\n\r\n   Originator: ${e.quoted.mailFrom}\r\n   Recipients: ${e.quoted.rcpt}\r\n   Attachment name: doc.zip\r\n   Virus name: W32/MyDoom.A-mm`);
  }
}
