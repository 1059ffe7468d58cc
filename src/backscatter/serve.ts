/*
 * backscatter/serve — what `backstop serve` needs of the shield, in one call:
 * the keys from the store (generated on first start, re-read every minute),
 * the gateway hooks, the recorder of classification records, and the
 * complaint job handlers for the node's worker. Null when the shield is off.
 */
import type { Config } from '../config/schema.ts';
import type { GatewayHooks } from '../edge/gateway.ts';
import { contactSources } from '../notify/record.ts';
import type { Logger } from '../obs/log.ts';
import { storeErrorsTotal } from '../obs/metrics.ts';
import type { Job } from '../store/jobs.ts';
import type { Store } from '../store/store.ts';
import { complaintHandlers } from './complaint.ts';
import { backscatterHooks, shieldSettings, ShieldRecorder } from './hooks.ts';
import { KeyCache } from './keys.ts';

export interface Shield {
  hooks: Pick<GatewayHooks, 'mail' | 'rcpt' | 'data'>;
  handlers: Record<string, (payload: unknown, job: Job) => Promise<void>>;
  close(): Promise<void>;
}

/** `clock`: the store's time (serve's StoreClock), so every node dates records and BATV tags alike; default this node's. */
export async function startShield(config: Config, store: Store, logger: Logger, clock?: () => Date): Promise<Shield | null> {
  const settings = shieldSettings(config);
  if (!settings) return null;
  const log = logger.child({ role: 'backscatter' });
  const keys = await KeyCache.open(store.db, 60_000, (err) => log.warn({ err: err.message }, 'could not re-read the BATV keys; using the ones loaded before'));
  const recorder = new ShieldRecorder(store.db, (err, lost) => {
    storeErrorsTotal.inc({ what: 'backscatter-events' });
    log.error({ err: err.message, lost }, 'backscatter records could not be written');
  });
  const handlers = complaintHandlers({
    db: store.db,
    config,
    sources: config.abuse ? contactSources(store.db, config.abuse, config.dataDir) : undefined,
    onOutcome: (what, detail) => log.info({ what, ...detail }, 'backscatter complaint'),
  });
  log.info(
    { mode: settings.mode, batvDomains: settings.batvDomains, onBackscatter: settings.onBackscatter, complaints: settings.complaints },
    settings.mode === 'log-only' ? 'backscatter shield in log-only mode: signs and strips tags, records what enforce would refuse' : 'backscatter shield enforcing',
  );
  return {
    hooks: backscatterHooks({ settings, keys: () => keys.current, recorder, ...(clock ? { now: () => clock().getTime() } : {}) }),
    handlers,
    async close() {
      keys.close();
      await recorder.flush();
    },
  };
}
