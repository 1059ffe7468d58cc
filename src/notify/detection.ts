/*
 * notify/detection — turns the gateway's decision about one message into the
 * Detection that notices and reports are built from. Only the header block
 * of the message is kept; the body (the payload) never leaves the gateway.
 */
import type { DecidedMessage, TransactionView } from '../edge/gateway.ts';
import { headerBlock, headerField } from '../edge/headers.ts';
import type { Detection } from './notice.ts';

export function detectionFrom(t: TransactionView, m: DecidedMessage): Detection | null {
  if (m.verdict.kind !== 'infected' && m.verdict.kind !== 'banned') return null;
  const block = headerBlock(m.raw);
  return {
    id: m.id,
    receivedAt: m.receivedAt.toISOString(),
    verdict: m.verdict.kind,
    detail: m.verdict.kind === 'infected' ? m.verdict.name : m.verdict.test,
    engine: m.verdict.kind === 'infected' ? m.verdict.engine : 'builtin policy',
    clientIp: t.clientIp,
    clientPort: t.clientPort,
    helo: t.helo,
    mailFrom: t.mailFrom,
    rcptTo: [...t.rcptTo],
    messageId: headerField(block, 'message-id'),
    action: m.action,
    quarantineId: m.quarantineId,
    headers: block,
  };
}
