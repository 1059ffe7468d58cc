/*
 * config/schema — the one contract for Backstop's YAML configuration.
 *
 * Parsed once at start-up; everything downstream receives the typed result and
 * trusts it. Every limit is a named, validated setting with a default that the
 * tests exercise. A configuration that asks Backstop to bounce infected mail or
 * to strip an attachment and deliver the rest is refused with the reason (R1, R5):
 * those are the two behaviours the 2004 outbreak taught the field never to ship.
 */
import { z } from 'zod';
import { isIP } from 'node:net';

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected "host:port", e.g. "127.0.0.1:2525"');

const cidr = z.string().refine((value) => {
  const [addr, bits, extra] = value.split('/');
  if (extra !== undefined || !addr) return false;
  const family = isIP(addr);
  if (!family) return false;
  if (bits === undefined) return true;
  const n = Number(bits);
  return Number.isInteger(n) && n >= 0 && n <= (family === 4 ? 32 : 128) && /^\d+$/.test(bits);
}, 'expected an IP address or CIDR such as "192.0.2.0/24" or "2001:db8::/32"');

const domain = z
  .string()
  .toLowerCase()
  .regex(/^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/, 'expected a domain name such as "example.net"');

const positiveInt = (what: string) => z.number().int(`${what} must be a whole number`).positive(`${what} must be greater than 0`);
const nonNegativeInt = (what: string) => z.number().int(`${what} must be a whole number`).nonnegative(`${what} must not be negative`);

/** What Backstop may do with a message that is not clean. There is deliberately no "bounce" and no "strip". */
export const ACTIONS = ['reject', 'discard', 'quarantine', 'tempfail'] as const;
export type Action = (typeof ACTIONS)[number];

const FORBIDDEN_ACTIONS: Record<string, string> = {
  bounce:
    'bouncing infected mail sends the worm or a notice to a sender that is almost always forged (R1); use reject, which answers the connected client in the SMTP session instead',
  notify:
    'notifying the sender of infected mail is backscatter: the sender is almost always forged (R1); use reject, discard or quarantine; postmaster notices are configured under notify:',
  strip:
    'stripping the attachment and delivering the rest fills inboxes with half-messages (R5); use reject, discard or quarantine, which act on the whole message',
  'strip-and-deliver':
    'stripping the attachment and delivering the rest fills inboxes with half-messages (R5); use reject, discard or quarantine, which act on the whole message',
  deliver: 'delivering a message that was not found clean defeats the gateway; use reject, discard, quarantine or tempfail',
  accept: 'accepting a message that was not found clean defeats the gateway; use reject, discard, quarantine or tempfail',
  pass: 'passing a message that was not found clean defeats the gateway; use reject, discard, quarantine or tempfail',
};

function actionSetting(allowed: readonly Action[]) {
  return z.string().superRefine((value, ctx) => {
    const reason = FORBIDDEN_ACTIONS[value];
    if (reason) {
      ctx.addIssue({ code: 'custom', message: `"${value}" is not offered: ${reason}` });
    } else if (!(allowed as readonly string[]).includes(value)) {
      ctx.addIssue({ code: 'custom', message: `expected one of ${allowed.join(', ')}` });
    }
  }).transform((v) => v as Action);
}

/**
 * Per-client limits in the manner of Postfix's anvil (edge/anvil): 0 turns
 * one off. Connections are counted per node; messages and recipients by all
 * nodes together through the store. Loopback is exempt by default, as
 * Postfix exempts $mynetworks.
 */
const clientLimitsSchema = z
  .object({
    connectionsPerClient: nonNegativeInt('connectionsPerClient').default(50),
    connectionsPerWindow: nonNegativeInt('connectionsPerWindow').default(600),
    messagesPerWindow: nonNegativeInt('messagesPerWindow').default(0),
    recipientsPerWindow: nonNegativeInt('recipientsPerWindow').default(0),
    windowSeconds: positiveInt('windowSeconds').default(60),
    exempt: z.array(cidr).default(['127.0.0.1/32', '::1/128']),
  })
  .strict()
  .default({ connectionsPerClient: 50, connectionsPerWindow: 600, messagesPerWindow: 0, recipientsPerWindow: 0, windowSeconds: 60, exempt: ['127.0.0.1/32', '::1/128'] });

const smtpSchema = z
  .object({
    listen: hostPort.default('127.0.0.1:2525'),
    hostname: z.string().min(1).default('backstop.localhost'),
    maxMessageBytes: positiveInt('maxMessageBytes').default(52_428_800),
    maxRecipients: positiveInt('maxRecipients').default(100),
    maxClients: positiveInt('maxClients').default(2000),
    maxLineBytes: positiveInt('maxLineBytes').default(4096),
    /** smtp-server's pause before the greeting catches clients that talk before they are spoken to. */
    greetingDelayMs: nonNegativeInt('greetingDelayMs').default(100),
    idleTimeoutMs: positiveInt('idleTimeoutMs').default(300_000),
    /** Paths to PEM files; absent means a self-signed certificate is made under the data directory. */
    tls: z.object({ key: z.string(), cert: z.string() }).strict().optional(),
    /** Trust a HAProxy PROXY header for the client address (only behind a load balancer you run). */
    proxyProtocol: z.boolean().default(false),
    /**
     * The whole DATA phase of one message, however steadily it trickles in:
     * a slowloris client that sends a byte just inside idleTimeoutMs is cut
     * off here (421) instead of holding a session and its buffer for hours.
     */
    dataTimeoutMs: positiveInt('dataTimeoutMs').default(600_000),
    /**
     * Message bytes held in memory by all sessions of this node together
     * (received, being scanned or relayed). Past it a new message is told
     * "452 4.3.1" and retried later, instead of the node running out of memory.
     */
    maxBufferedBytes: positiveInt('maxBufferedBytes').default(512 * 1024 * 1024),
    limits: clientLimitsSchema,
    /**
     * Processes serving this node (node:cluster, sharing the listening sockets): each is a full node on
     * the shared PostgreSQL store. Unset: the number of cores with PostgreSQL, 1 with PGlite (one
     * in-process database, one owner), resolved by cluster/plan at start-up.
     */
    workers: positiveInt('workers').max(256, 'workers must be at most 256').optional(),
    /**
     * Peers (addresses or CIDRs) whose XFORWARD is believed: the MTA in front of us, e.g. Postfix with
     * smtpd_proxy_filter. Their forwarded client is then the client for everything (edge/client).
     */
    trustXforwardFrom: z.array(cidr).default([]),
  })
  .strict();

const nextHopSchema = z
  .string()
  .regex(/^(smtp:\/\/[^\s/]+|maildir:.+)$/, 'expected "smtp://host:port" or "maildir:/path/to/Maildir"')
  .default('maildir:./data/maildir');

const clamdSchema = z
  .string()
  .regex(/^(tcp:\/\/[^\s/]+:\d+|unix:.+)$/, 'expected "tcp://host:port" or "unix:/path/to/clamd.ctl"');

const storeSchema = z
  .string()
  .regex(/^(pglite:.+|pglite-memory:|postgres(ql)?:\/\/.+)$/, 'expected "pglite:./data/db", "pglite-memory:" or "postgres://user@host/db"')
  .default('pglite:./data/db');

const scanSchema = z
  .object({
    /** Time for the whole scan of one message (policy and clamd) before it is unscannable. */
    timeoutMs: positiveInt('timeoutMs').default(30_000),
    clamdTimeoutMs: positiveInt('clamdTimeoutMs').default(20_000),
    maxMimeDepth: positiveInt('maxMimeDepth').default(20),
    maxParts: positiveInt('maxParts').default(500),
    maxArchiveDepth: positiveInt('maxArchiveDepth').default(4),
    maxArchiveEntries: positiveInt('maxArchiveEntries').default(1000),
    maxExpansionRatio: positiveInt('maxExpansionRatio').default(100),
    maxExpandedBytes: positiveInt('maxExpandedBytes').default(200 * 1024 * 1024),
    /**
     * Archive members up to this size are held in memory (opened, sniffed, handed to clamd on their own);
     * larger ones are streamed through a hash and a sniff and never held. Also the most bytes of members
     * per message handed to clamd on their own.
     */
    maxBufferedEntryBytes: positiveInt('maxBufferedEntryBytes').default(32 * 1024 * 1024),
    /**
     * Containers Backstop does not open itself that the configured clamd does open (its build: Debian's
     * libclamav has no unrar, so "rar" is not in the default). A container of another type is unscannable.
     */
    clamdOpens: z.array(z.enum(['7z', 'rar', 'cab', 'iso', 'xz', 'arj', 'lzh', 'cpio', 'ole', 'tnef', 'chm'])).default(['7z', 'cab', 'iso', 'xz', 'arj', 'lzh', 'cpio', 'ole', 'tnef', 'chm']),
    /** clamd's time for the attachments of a message already banned (only the malware's name is at stake). */
    bannedClamdTimeoutMs: positiveInt('bannedClamdTimeoutMs').default(2_000),
    /** clamd INSTREAM calls one message may have in flight at once (its leaves and the whole message). */
    clamdConcurrency: positiveInt('clamdConcurrency').default(4),
    /**
     * Connections to clamd this node keeps open at most, kept sessions included, shared by its workers
     * (each gets an equal share, at least 2); scans past it wait their turn. Keep the sum over every node
     * that uses one clamd below that clamd's MaxQueue (default 100): past it clamd stops accepting
     * connections, and the scans behind them stall until one closes.
     */
    clamdConnections: positiveInt('clamdConnections').max(10_000, 'clamdConnections must be at most 10000').default(32),
    /** Extensions refused anywhere in a name (lower case, without the dot). Replaces the built-in list when set. */
    bannedExtensions: z
      .array(z.string().regex(/^[a-z0-9][a-z0-9-]{0,24}$/, 'an extension in lower case without the dot, e.g. "pif" or "settingcontent-ms"'))
      .optional(),
    /**
     * Content types refused under any name, recognised by their first bytes
     * (a program renamed photo.jpg). Set [] where programs must be received.
     */
    bannedTypes: z.array(z.enum(['PE', 'MS-DOS', 'ELF', 'Mach-O', 'LNK'])).default(['PE', 'MS-DOS', 'ELF', 'Mach-O', 'LNK']),
    /** A file with one SHA-256 per line (hex, # comments): attachments with these hashes are banned. */
    blocklistFile: z.string().optional(),
    /** Verdicts cached per attachment hash (entries per process; flushed when clamd's signatures change). */
    cacheEntries: nonNegativeInt('cacheEntries').default(50_000),
    /**
     * Parts larger than this are never remembered as clean. Keep it at or below
     * clamd's MaxFileSize: clamd answers OK for a file it skipped as too large.
     */
    cacheMaxLeafBytes: positiveInt('cacheMaxLeafBytes').default(25 * 1024 * 1024),
  })
  .strict();

const actionsSchema = z
  .object({
    infected: actionSetting(['reject', 'discard', 'quarantine', 'tempfail']).default('reject'),
    banned: actionSetting(['reject', 'discard', 'quarantine', 'tempfail']).default('reject'),
    /** Unscannable mail is never discarded: it may be legitimate, so it is held or retried. */
    unscannable: actionSetting(['tempfail', 'reject', 'quarantine']).default('tempfail'),
  })
  .strict();

const emailAddress = z.string().regex(/^[^\s@<>"]+@[A-Za-z0-9.-]+$/, 'expected an email address such as "postmaster@example.net"');

const notifySchema = z
  .object({
    /** Where Backstop hands everything it sends. */
    relay: z.string().regex(/^smtp:\/\/[^\s/]+$/, 'expected "smtp://host:port"'),
    /** A real mailbox that takes replies (the From: of notices and reports). */
    from: emailAddress,
    postmaster: emailAddress,
    /** First detection of a malware name is sent at once; the rest wait for this digest window. */
    digestMinutes: z.number().positive('digestMinutes must be greater than 0').default(15),
    sender: z
      .object({
        enabled: z.boolean().default(false),
        acknowledgeForgedSenders: z.boolean().default(false),
        /**
         * Malware names (exact, as the engine reports them) known not to forge
         * their sender. Empty: sender notices only for `banned` verdicts (R2).
         */
        nonForging: z.array(z.string().min(1).max(200)).default([]),
      })
      .strict()
      .default({ enabled: false, acknowledgeForgedSenders: false, nonForging: [] })
      .refine((s) => !s.enabled || s.acknowledgeForgedSenders, {
        message:
          'sender notices need acknowledgeForgedSenders: true — the sender of a virus is almost always forged, so a notice to it is backscatter to an innocent third party (R1, R2)',
      }),
  })
  .strict();

/** "90s", "15m", "24h", "7d" → milliseconds. */
const duration = (what: string) =>
  z
    .string()
    .regex(/^\d{1,6}(s|m|h|d)$/, 'expected a duration such as "15m", "24h" or "7d"')
    .transform((v) => Number(v.slice(0, -1)) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[v.slice(-1) as 's' | 'm' | 'h' | 'd'])
    .refine((ms) => ms > 0, `${what} must be longer than 0`);

/** RFC 5965 §7.3 registry values (RFC 6650 §3 for their use); many desks only take `abuse`. */
export const FEEDBACK_TYPES = ['virus', 'abuse', 'fraud', 'other', 'not-spam', 'auth-failure'] as const;

const onOff = z
  .union([z.enum(['on', 'off']), z.boolean()])
  .transform((v) => (v === true || v === 'on' ? 'on' : 'off') as 'on' | 'off');

const abuseOverride = z
  .object({
    cidr,
    /** An address, or "never" to suppress reports for this range. */
    contact: z.union([z.literal('never'), emailAddress], { error: 'expected an email address or "never"' }),
    feedbackType: z.enum(FEEDBACK_TYPES).optional(),
  })
  .strict();

const abuseSchema = z
  .object({
    reports: onOff.default('on'),
    /** One report per source IP per window, counting every detection in it. */
    window: duration('window').prefault('24h'),
    /** How long after a window's first detection its report is sent (it counts what arrived until then). */
    reportDelay: duration('reportDelay').prefault('15m'),
    /** At most this many reports in one clock hour, across all nodes. */
    hourlyCap: positiveInt('hourlyCap').default(200),
    feedbackType: z.enum(FEEDBACK_TYPES).default('virus'),
    /** Feedback-Type per destination: an address or a domain (the desk's own). */
    destinations: z
      .array(z.object({ match: z.string().min(1).toLowerCase(), feedbackType: z.enum(FEEDBACK_TYPES) }).strict())
      .default([]),
    /** Checked first; "never" suppresses. */
    overrides: z.array(abuseOverride).default([]),
    /** Our own customers' space: handed to the abuse desk, never mailed. */
    customerSpace: z.array(cidr).default([]),
    /** Addresses that say "no-one reads this" (lower case, exact or "*@domain"); dropped wherever found. */
    placeholders: z.array(z.string().min(3).toLowerCase()).default([]),
    rdap: z
      .object({
        enabled: z.boolean().default(true),
        /**
         * RFC 9224 bootstrap files (IPv4 and IPv6): file paths, https URLs, or
         * "builtin" — the copy `backstop rdap refresh` keeps under dataDir/rdap,
         * else the one shipped with Backstop.
         */
        bootstrapV4: z.string().min(1).default('builtin'),
        bootstrapV6: z.string().min(1).default('builtin'),
        timeoutMs: positiveInt('timeoutMs').default(10_000),
      })
      .strict()
      .default({ enabled: true, bootstrapV4: 'builtin', bootstrapV6: 'builtin', timeoutMs: 10_000 }),
    dns: z
      .object({
        /** Abusix-style abuse-contact zone (reversed labels, TXT = address); "" turns the step off. */
        zone: z.union([z.literal(''), domain]).default('abuse-contacts.abusix.zone'),
        /** Resolvers to ask ("host:port"); absent: the system's. */
        servers: z.array(hostPort).optional(),
        timeoutMs: positiveInt('timeoutMs').default(3000),
      })
      .strict()
      .default({ zone: 'abuse-contacts.abusix.zone', timeoutMs: 3000 }),
    /** Last resort: abuse@ the registrable domain of a forward-confirmed reverse name. */
    reverseFallback: z.boolean().default(true),
    cacheTtl: duration('cacheTtl').prefault('7d'),
    negativeCacheTtl: duration('negativeCacheTtl').prefault('1d'),
  })
  .strict()
  .refine((a) => a.reportDelay <= a.window, { message: 'reportDelay must not be longer than window', path: ['reportDelay'] });

/** A complaint letter's text in one language: {placeholders} are filled by backscatter/complaint.ts. */
const complaintText = z.object({ subject: z.string().min(1).max(200), body: z.string().min(1).max(20_000) }).strict();

/** The backscatter shield (R7, issue 4); absent: off. */
const backscatterSchema = z
  .object({
    /** log-only reports what enforce would refuse; the careful first step of a rollout. */
    mode: z.enum(['enforce', 'log-only', 'off']).default('log-only'),
    /** Domains whose outgoing envelope senders are BATV-signed; bounces to them need a valid tag. Default: domains. */
    batvDomains: z.array(domain).optional(),
    /** Backscatter found at end of DATA: refused (550 5.7.1) or held in quarantine. */
    action: z.enum(['reject', 'quarantine']).default('reject'),
    /** Hosts (as they write `by HOST` in Received lines) and addresses of our outbound relays; smtp.hostname always counts. */
    ourRelays: z.array(z.string().min(1).max(253).toLowerCase()).default([]),
    complaints: z
      .object({
        /** review: each complaint waits in the outbox for an admin's approval; auto: sent; off: none. */
        mode: z.enum(['off', 'review', 'auto']).default('review'),
        /** A real mailbox that takes replies (default: notify.from). */
        from: emailAddress.optional(),
        /** Languages of the letter, in order (built in: en, de). */
        languages: z.array(z.string().regex(/^[a-z]{2}(-[A-Za-z]{2})?$/, 'a language tag such as "en" or "de"')).min(1).default(['en', 'de']),
        /** Replaces or adds a language's text. */
        texts: z.record(z.string(), complaintText).default({}),
      })
      .strict()
      .default({ mode: 'review', languages: ['en', 'de'], texts: {} }),
  })
  .strict();

/** One destination a restricted line may still reach (the walled garden's holes, RFC 6561 §6). */
const allowedDestination = z
  .object({
    name: z.string().min(1).max(64).regex(/^[A-Za-z0-9 ._-]+$/, 'letters, digits, space, ".", "_" or "-"'),
    /** Destination networks; empty: any destination. */
    to: z.array(cidr).default([]),
    proto: z.enum(['tcp', 'udp']),
    ports: z.array(z.number().int().min(1).max(65535)).min(1),
  })
  .strict();

/** A customer notice's text in one language: {placeholders} are filled by desk/notice.ts. */
const deskText = z.object({ subject: z.string().min(1).max(200), body: z.string().min(1).max(20_000) }).strict();

/** The ISP abuse desk: incidents, grace, restriction, portal (R8, R9, issue 5); absent: off. */
const deskSchema = z
  .object({
    /** Per-IP aliases live at <ip>@abuseDomain. */
    abuseDomain: domain.optional(),
    /** Public addresses of our carrier-grade NAT: a report about one needs the source port (the public form asks for it). */
    cgnatRanges: z.array(cidr).default([]),
    /** The public report form at /report (no login): on when the desk is; submissions per client address and hour. */
    reportForm: z
      .object({ enabled: z.boolean().default(true), maxPerHour: positiveInt('maxPerHour').default(5) })
      .strict()
      .prefault({}),
    graceHours: positiveInt('graceHours').default(72),
    probationDays: positiveInt('probationDays').default(14),
    /** Attestations a customer may make per incident before only the desk can release the line. */
    selfReleases: nonNegativeInt('selfReleases').default(2),
    restriction: z
      .object({
        /** Mildest first: port 25 blocked; port 25 only to Backstop's smarthost; full walled garden. */
        level: z.enum(['port25-block', 'smarthost', 'walled-garden']).default('walled-garden'),
        /** Addresses of Backstop's scanning smarthost (the only port-25 destination at level smarthost). */
        smarthost: z.array(cidr).default([]),
        /** What stays reachable in the walled garden (and, at every level, is never blocked). */
        allowed: z
          .array(allowedDestination)
          .default([
            { name: 'dns', to: [], proto: 'udp', ports: [53] },
            { name: 'dns-tcp', to: [], proto: 'tcp', ports: [53] },
            { name: 'dhcp', to: [], proto: 'udp', ports: [67, 547] },
            { name: 'submission', to: [], proto: 'tcp', ports: [587] },
          ]),
        /** The portal's addresses (reachable on 80/443 from the garden). */
        portal: z.array(cidr).default([]),
        /** OS and antivirus update sites (reachable on 80/443 from the garden). */
        updateSites: z.array(cidr).default([]),
      })
      .strict()
      .prefault({}),
    portal: z
      .object({
        /** The customer's link is baseUrl + /portal/<token>. */
        baseUrl: z.string().regex(/^https?:\/\/[^\s/]+(\/[^\s]*)?$/, 'expected a URL such as "https://portal.example.net"').default('http://127.0.0.1:8025'),
        tokenTtl: duration('tokenTtl').prefault('30d'),
        /** Wrong tokens per client address and 10 minutes before the portal answers 429. */
        maxGuesses: positiveInt('maxGuesses').default(20),
      })
      .strict()
      .prefault({}),
    enforcement: z
      .object({
        /** nftables set file (include it from your ruleset), rewritten atomically on every change. */
        nftSetFile: z.string().min(1).optional(),
        /** A complete `nft -f` script: table, sets and chains for each level. */
        nftScriptFile: z.string().min(1).optional(),
        /** The plain list file (one CIDR a line). */
        listFile: z.string().min(1).optional(),
        /** Bearer token for GET /desk/restricted.txt; absent: the list is not served. */
        listToken: z.string().min(16, 'listToken must be at least 16 characters').optional(),
        webhook: z.object({ url: z.string().url('expected a URL'), secret: z.string().min(16, 'webhook secret must be at least 16 characters') }).strict().optional(),
        /** The nftables table the script creates. */
        table: z.string().regex(/^[a-z][a-z0-9_]{0,30}$/, 'lower-case letters, digits, "_"').default('backstop'),
      })
      .strict()
      .prefault({}),
    notice: z
      .object({
        /** A real mailbox that takes the customer's replies (default: notify.from). */
        from: emailAddress.optional(),
        /** Replaces or adds a language's text (built in: en, de). */
        texts: z.record(z.string(), deskText).prefault({}),
        defaultLanguage: z.string().regex(/^[a-z]{2}(-[A-Za-z]{2})?$/, 'a language tag such as "en" or "de"').default('en'),
      })
      .strict()
      .prefault({}),
  })
  .strict();

/** The dashboard's outbreak banner (web/outbreak): a name whose recent rate is `factor` times its baseline rate. */
const outbreakSchema = z
  .object({
    recentMinutes: positiveInt('recentMinutes').default(10),
    baselineMinutes: positiveInt('baselineMinutes').default(60),
    minRecent: positiveInt('minRecent').default(5),
    factor: z.number().min(1, 'factor must be at least 1 (a rate compared with itself)').default(5),
  })
  .strict();

/**
 * How a message's record is committed before its reply (store/message-log):
 * one transaction per group of records. groupCommitMs 0 (the default): a record
 * commits at once when no transaction is running, and the records arriving
 * during one share the next; above 0, the first of a group waits that long for
 * company (PostgreSQL's commit_delay). A reply waits at most commitTimeoutMs,
 * then it is 451 4.3.0.
 */
const recordsSchema = z
  .object({
    groupCommitMs: nonNegativeInt('groupCommitMs').max(1000, 'groupCommitMs must be at most 1000 (every reply waits this long)').default(0),
    maxGroup: positiveInt('maxGroup').max(10_000, 'maxGroup must be at most 10000').default(500),
    commitTimeoutMs: positiveInt('commitTimeoutMs').max(600_000, 'commitTimeoutMs must be at most 600000 (senders wait 10 minutes for a reply to DATA, RFC 5321 §4.5.3.2.6)').default(5000),
  })
  .strict();

/**
 * The outbox workers (store/jobs): how long a claimed job is leased — a job
 * whose node died is taken by another after this — and how often an idle
 * worker looks for due jobs.
 */
const outboxSchema = z
  .object({
    leaseMs: positiveInt('leaseMs').min(1000, 'leaseMs must be at least 1000 (a lease shorter than one relay hand-off sends jobs twice)').default(60_000),
    pollMs: positiveInt('pollMs').max(60_000, 'pollMs must be at most 60000').default(1000),
  })
  .strict();

const webSchema = z
  .object({
    listen: hostPort.default('127.0.0.1:8025'),
    outbreak: outbreakSchema.default(outbreakSchema.parse({})),
  })
  .strict();

/**
 * The milter role (issue 13): Backstop as a Sendmail/Postfix milter (smtpd_milters). Absent: off.
 * Postfix decides what happens while Backstop is down: milter_default_action = tempfail (its default) keeps the mail
 * with the sender; "accept" would let it through unscanned.
 */
const milterSchema = z
  .object({
    /** Postfix's notation: "inet:127.0.0.1:8890" or "unix:/run/backstop/milter.sock". */
    listen: z
      .string()
      .regex(/^(inet:(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}|unix:\/.+)$/, 'expected "inet:host:port" or "unix:/absolute/path"')
      .refine((v) => !v.startsWith('inet:') || Number(v.slice(v.lastIndexOf(':') + 1)) <= 65535, 'port must be 0-65535'),
    /**
     * A message judged "quarantine" is in Backstop's quarantine either way; the MTA is told to drop its copy
     * (discard, SMFIR_DISCARD) or to keep it in its hold queue as well (postfix-hold, SMFIR_QUARANTINE).
     */
    quarantine: z.enum(['discard', 'postfix-hold']).default('discard'),
    /** Permissions of a unix: socket (octal); the MTA's user must be able to write it (Postfix: user postfix). */
    socketMode: z.string().regex(/^0?[0-7]{3}$/, 'an octal mode such as "0660"').default('0660'),
    /** Largest milter packet taken; Postfix's header_size_limit (102400) can exceed 64 KiB in one header packet. */
    maxPacketBytes: z.number().int().min(65_536, 'maxPacketBytes must be at least 65536 (a 65535-byte body chunk)').max(16_777_216).default(262_144),
    /** A message past smtp.maxMessageBytes is not buffered further: refused (552 5.3.4) or deferred (451 4.3.4). */
    tooBig: z.enum(['reject', 'tempfail']).default('reject'),
    /** An MTA connection silent this long is closed (Postfix's milter_command_timeout is 30 s, milter_content_timeout 300 s). */
    idleTimeoutMs: positiveInt('idleTimeoutMs').default(600_000),
    maxConnections: positiveInt('maxConnections').default(500),
  })
  .strict();

export const configSchema = z
  .object({
    dataDir: z.string().default('./data'),
    nodeName: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'letters, digits, ".", "_" or "-"').optional(),
    smtp: smtpSchema.default(smtpSchema.parse({})),
    domains: z.array(domain).default([]),
    relayFrom: z.array(cidr).default([]),
    nextHop: nextHopSchema,
    /**
     * When the next hop offers XCLIENT (Postfix smtpd_authorized_xclient_hosts), use it to hand over the
     * real client — its restrictions, logs and Received line then see that client. Off: XFORWARD when
     * offered (smtpd_authorized_xforward_hosts), which only informs logs and Received.
     */
    nextHopXclient: z.union([z.boolean(), z.enum(['on', 'off'])]).default('off').transform((v) => v === true || v === 'on'),
    clamd: clamdSchema.optional(),
    store: storeSchema,
    records: recordsSchema.default(recordsSchema.parse({})),
    outbox: outboxSchema.default(outboxSchema.parse({})),
    web: webSchema.default(webSchema.parse({})),
    actions: actionsSchema.default(actionsSchema.parse({})),
    scan: scanSchema.default(scanSchema.parse({})),
    /** Postmaster notices; absent: Backstop sends nothing. */
    notify: notifySchema.optional(),
    /** Abuse reports to the connecting network (R6); sent only when notify: is configured too. */
    abuse: abuseSchema.optional(),
    /** The backscatter shield: BATV, bounce classification, complaints (R7). */
    backscatter: backscatterSchema.optional(),
    /** The ISP abuse desk (R8, R9); absent: off. */
    desk: deskSchema.optional(),
    /** The milter role (smtpd_milters); absent: off. */
    milter: milterSchema.optional(),
    log: z.object({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') }).strict().default({ level: 'info' }),
  })
  .strict()
  // PGlite is one database inside one process: a second process cannot open it, so it has one worker.
  .refine((c) => (c.smtp.workers ?? 1) <= 1 || !c.store.startsWith('pglite'), {
    message: 'workers above 1 need a PostgreSQL store: PGlite is one in-process database with one owner; set store: "postgres://user@host/db" (shared by every worker) or workers: 1',
    path: ['smtp', 'workers'],
  });

export type Config = z.infer<typeof configSchema>;
