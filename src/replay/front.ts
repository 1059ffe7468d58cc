/*
 * replay/front — where the replay's sources connect, per deployment mode
 * (`backstop replay --mode`), with the README's tested Postfix lines:
 *
 *   direct         the sources talk to Backstop's SMTP listener (the front MX);
 *   postfix-proxy  a private Postfix (replay/postfix.ts) whose public smtpd has
 *                  smtpd_proxy_filter = Backstop (speed_adjust); Backstop trusts
 *                  XFORWARD from Postfix's 127.0.0.1 only, and its next hop is
 *                  Postfix's re-injection smtpd, which queues for the capture;
 *   milter         a private Postfix with smtpd_milters = Backstop's milter on a
 *                  unix socket (the README: TCP adds ~50 ms a message), queueing
 *                  for the capture; the abuse desk's per-IP alias domain is
 *                  routed by transport_maps to Backstop's SMTP listener.
 *
 * Trusts nothing from the mail; it only wires processes together. It must
 * never touch the system's Postfix: every instance is `postfix -c DIR`.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './processes.ts';
import { reinjectionService, startPostfix, type PostfixInstance } from './postfix.ts';

export const REPLAY_MODES = ['direct', 'postfix-proxy', 'milter'] as const;
export type ReplayMode = (typeof REPLAY_MODES)[number];

export interface FrontSetup {
  /** Merged into the node's configuration (smtp extras, nextHop, milter role). */
  smtp: Record<string, unknown>;
  nextHop: string;
  milter?: { listen: string; socketMode: string };
  /** Starts the front once the node listens; returns where the sources connect, and the Postfix (if any). */
  start(): Promise<{ port: number; postfix: PostfixInstance | null }>;
  /** Removes what the setup made outside the replay's directory (after everything stopped). */
  dispose?(): void;
}

export interface FrontContext {
  dir: string;
  /** Backstop's SMTP listener port. */
  smtpPort: number;
  /** The capture (our users' mailboxes) that Postfix, or the node, delivers to. */
  capturePort: number;
  /** Domains Postfix relays to the capture (our own), and the desk's alias domain. */
  domains: readonly string[];
  abuseDomain: string;
}

/** Postfix's main.cf for a front: everything to the capture. */
function frontMain(c: FrontContext, extra: Record<string, string>): Record<string, string> {
  return {
    relayhost: `[127.0.0.1]:${c.capturePort}`,
    relay_domains: [...c.domains, c.abuseDomain].join(' '),
    // The replay's sources are all 127.x.y.z: Postfix relays for them and leaves relay policy to Backstop
    // (relayFrom, on the real client it is told of).
    mynetworks: '127.0.0.0/8',
    // A replay's wave is many sources at once: Postfix's defaults (50 per client) would be the bottleneck, not Backstop.
    default_process_limit: '200',
    // Postfix's tarpit: after smtpd_soft_error_limit (10) refusals on one connection every reply waits
    // smtpd_error_sleep_time (1 s), and at smtpd_hard_error_limit (20) it hangs up. A worm source sends
    // tens of messages per connection, each refused by Backstop; the tarpit is real and good in life,
    // but here it would time Postfix's sleep, not Backstop. Off for the replay (README, Outbreak replay).
    smtpd_error_sleep_time: '0s',
    smtpd_soft_error_limit: '1000',
    smtpd_hard_error_limit: '1000',
    ...extra,
  };
}

export async function frontFor(mode: ReplayMode, c: FrontContext): Promise<FrontSetup> {
  const direct = { port: c.smtpPort, postfix: null };
  switch (mode) {
    case 'direct':
      return { smtp: {}, nextHop: `smtp://127.0.0.1:${c.capturePort}`, start: async () => direct };
    case 'postfix-proxy': {
      const reinject = await freePort();
      return {
        smtp: { trustXforwardFrom: ['127.0.0.1'] },
        nextHop: `smtp://127.0.0.1:${reinject}`,
        async start() {
          const postfix = await startPostfix(frontMain(c, {}), {
            smtpdArgs: { smtpd_proxy_filter: `127.0.0.1:${c.smtpPort}`, smtpd_proxy_options: 'speed_adjust' },
            services: [reinjectionService(reinject)],
          });
          return { port: postfix.port, postfix };
        },
      };
    }
    case 'milter': {
      // Postfix's smtpd runs as user postfix: it walks into the directory and writes to the socket. A
      // directory of its own, not inside the replay's (0700: the node's configuration holds its secrets).
      const socketDir = mkdtempSync(join(tmpdir(), 'bs-replay-milter-'));
      chmodSync(socketDir, 0o755);
      const listen = `unix:${join(socketDir, 'milter.sock')}`;
      return {
        smtp: {},
        nextHop: `smtp://127.0.0.1:${c.capturePort}`,
        milter: { listen, socketMode: '0666' },
        dispose: () => rmSync(socketDir, { recursive: true, force: true }),
        async start() {
          // The desk's aliases are a route of Backstop's SMTP gateway, not of the milter: transport_maps sends
          // them there (the README's line, tested in test/milter/postfix.test.ts). texthash: no postmap.
          // (As a proxy filter Backstop sees every message in-session, aliases included: no route needed.)
          const transport = join(c.dir, 'transport');
          writeFileSync(transport, `${c.abuseDomain} smtp:[127.0.0.1]:${c.smtpPort}\n`);
          const postfix = await startPostfix(
            frontMain(c, { smtpd_milters: listen, milter_protocol: '6', milter_default_action: 'tempfail', transport_maps: `texthash:${transport}` }),
          );
          return { port: postfix.port, postfix };
        },
      };
    }
  }
}

/**
 * What a mode changes about how a scoreboard line is reached, printed under
 * the scoreboard. The customers' MAIL probes go to Backstop's own SMTP
 * listener in every mode: it is the ISP's smarthost, which customers use
 * directly; a Postfix in front would say 250 to MAIL whatever Backstop
 * thinks (speed_adjust takes the whole message before asking the filter; a
 * milter is asked at end of message).
 */
export function modeNotes(mode: ReplayMode): string[] {
  switch (mode) {
    case 'direct':
      return [];
    case 'postfix-proxy':
      return [
        'every planned message went client → Postfix smtpd → Backstop (smtpd_proxy_filter, XFORWARD) → Postfix re-injection → capture',
        'customers\' MAIL probes (restricted / released) went to Backstop\'s own SMTP listener, the smarthost they use; Postfix with speed_adjust says 250 to MAIL before Backstop is asked',
      ];
    case 'milter':
      return [
        'every planned message went client → Postfix smtpd (Backstop milter on a unix socket, {client_addr}) → Postfix queue → capture',
        'customers\' MAIL probes (restricted / released) went to Backstop\'s own SMTP listener, the smarthost they use; a milter is asked at end of message, not at MAIL',
      ];
  }
}
