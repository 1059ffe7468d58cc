/*
 * cli/commands/init — `backstop init --mode front-mx|postfix-proxy|milter|smarthost
 * [--domain D] [--hostname H] [--out FILE] [--force]`: writes a commented
 * configuration for one of the deployments the README describes, with the MTA
 * lines that go with it as comments, ready for `backstop config check`.
 *
 * Trusts the operator's options only as far as the schema would: a domain or
 * host name is checked before it is written into YAML. Never overwrites a file
 * without --force.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { parseCommandArgs } from '../args.ts';
import { UsageError, type Command } from '../command.ts';

export const INIT_MODES = ['front-mx', 'postfix-proxy', 'milter', 'smarthost'] as const;
export type InitMode = (typeof INIT_MODES)[number];

const NAME = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/i;

const COMMON = (o: { domain: string; hostname: string }) => `# Where Backstop keeps its store (PGlite), quarantine and TLS certificate.
dataDir: /var/lib/backstop
# Mail for these domains is taken from anyone; for other domains only from relayFrom.
domains: [${o.domain}]
# clamd's socket (Debian clamav-daemon). Absent: the built-in policy only (EICAR, banned types, archives).
clamd: "unix:/run/clamav/clamd.ctl"
# One machine: PGlite. Several nodes: postgres://backstop@db.example/backstop
store: "pglite:/var/lib/backstop/db"
web: { listen: "127.0.0.1:8025" }
# Never bounce, never strip: reject in the session (550), or discard/quarantine (250).
actions: { infected: reject, banned: reject, unscannable: tempfail }
# Postmaster notices and ARF abuse reports leave through this relay (your MTA).
notify: { relay: "smtp://127.0.0.1:25", from: "backstop@${o.domain}", postmaster: "postmaster@${o.domain}" }
`;

/** The configuration text for a mode; pure, so a test can check every mode's output with `config check`. */
export function initConfig(mode: InitMode, o: { domain: string; hostname: string }): string {
  switch (mode) {
    case 'front-mx':
      return `# Backstop as the public MX in front of Postfix (README: Deployment, front MX).
# The MX record points here; clean mail is relayed in-session to Postfix on port 10025.
# In Postfix's master.cf, so Postfix logs and restricts the real client (XCLIENT):
#   127.0.0.1:10025 inet n - n - - smtpd
#     -o smtpd_authorized_xclient_hosts=127.0.0.1
#     -o smtpd_authorized_xforward_hosts=127.0.0.1
smtp:
  # Port 25 needs CAP_NET_BIND_SERVICE (see contrib/systemd/backstop.service).
  listen: "0.0.0.0:25"
  hostname: ${o.hostname}
nextHop: "smtp://127.0.0.1:10025"
# Tell Postfix the real client with XCLIENT when it offers it (else XFORWARD when offered).
nextHopXclient: on
${COMMON(o)}`;
    case 'postfix-proxy':
      return `# Backstop as Postfix's before-queue content filter (README: Deployment, Postfix proxy;
# Postfix SMTPD_PROXY_README). Postfix keeps port 25; in its master.cf:
#   smtp      inet  n  -  n  -  20  smtpd
#     -o smtpd_proxy_filter=127.0.0.1:10024
#     -o smtpd_proxy_options=speed_adjust
#   127.0.0.1:10026 inet n  -  n  -  -  smtpd
#     -o smtpd_authorized_xforward_hosts=127.0.0.0/8
#     -o smtpd_client_restrictions= -o smtpd_helo_restrictions=
#     -o smtpd_sender_restrictions= -o smtpd_relay_restrictions=
#     -o smtpd_recipient_restrictions=permit_mynetworks,reject
#     -o smtpd_data_restrictions= -o mynetworks=127.0.0.0/8
#     -o receive_override_options=no_unknown_recipient_checks
smtp:
  listen: "127.0.0.1:10024"
  hostname: ${o.hostname}
  # Postfix tells us the real client with XFORWARD; only it may.
  trustXforwardFrom: ["127.0.0.1"]
# Clean mail goes back into Postfix through the re-injection smtpd above.
nextHop: "smtp://127.0.0.1:10026"
${COMMON(o)}`;
    case 'milter':
      return `# Backstop as a milter of Postfix (README: Deployment, milter). In Postfix's main.cf:
#   smtpd_milters = inet:127.0.0.1:8890
#   milter_protocol = 6
#   milter_default_action = tempfail   # Backstop down: the sender keeps the mail (never "accept")
milter:
  listen: "inet:127.0.0.1:8890"
  quarantine: discard
smtp:
  # The SMTP role is not used by Postfix here; it listens on loopback only.
  listen: "127.0.0.1:2525"
  hostname: ${o.hostname}
nextHop: "smtp://127.0.0.1:25"
${COMMON(o)}`;
    case 'smarthost':
      return `# Backstop as the ISP's smarthost for customers' outgoing mail (README: Deployment, smarthost).
# Customers (relayFrom) relay anywhere through it; infected customers are reported to the
# abuse desk and restricted (R9). Clean mail goes on to the ISP's outbound relay.
smtp:
  listen: "0.0.0.0:25"
  hostname: ${o.hostname}
# The customer networks, and nobody else: never an open relay.
relayFrom: ["192.0.2.0/24", "2001:db8::/32"]
nextHop: "smtp://127.0.0.1:10025"
# If the outbound relay is Postfix with smtpd_authorized_xclient_hosts, it sees each customer.
nextHopXclient: on
${COMMON(o)}`;
  }
}

export const command: Command = {
  summary: 'Write a commented configuration for one deployment: front-mx, postfix-proxy, milter or smarthost.',
  usage: 'backstop init --mode front-mx|postfix-proxy|milter|smarthost [--domain example.net] [--hostname mx.example.net] [--out FILE] [--force]',
  async run(args) {
    const { values, positionals } = parseCommandArgs(args, {
      mode: { type: 'string' },
      domain: { type: 'string' },
      hostname: { type: 'string' },
      out: { type: 'string', short: 'o' },
      force: { type: 'boolean' },
    });
    if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`);
    const mode = values.mode as InitMode | undefined;
    if (!mode || !(INIT_MODES as readonly string[]).includes(mode)) throw new UsageError(`--mode must be one of ${INIT_MODES.join(', ')}`);
    const domain = (values.domain as string | undefined) ?? 'example.net';
    const hostname = (values.hostname as string | undefined) ?? `mx.${domain}`;
    for (const [k, v] of [['--domain', domain], ['--hostname', hostname]] as const) if (!NAME.test(v)) throw new UsageError(`${k} "${v}" is not a domain name`);
    const text = initConfig(mode, { domain, hostname });
    const out = values.out as string | undefined;
    if (!out) {
      process.stdout.write(text);
      return 0;
    }
    if (existsSync(out) && !values.force) throw new UsageError(`${out} exists; --force overwrites it`);
    writeFileSync(out, text, { mode: 0o640 });
    console.log(`wrote ${out} (${mode}); check it with: backstop config check --config ${out}`);
    return 0;
  },
};
