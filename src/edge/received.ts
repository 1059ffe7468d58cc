/*
 * edge/received — the trace header Backstop adds for its hop (RFC 5321
 * §4.4, RFC 5322 §3.6.7). Pure. HELO and addresses are the client's words and
 * are cleaned; the IP is the socket's, which the client cannot forge.
 */
import { cleanText } from '../obs/clean.ts';

export interface ReceivedInfo {
  helo: string;
  clientIp: string;
  clientHostname: string | null;
  byHost: string;
  protocol: 'SMTP' | 'ESMTP' | 'ESMTPS';
  id: string;
  recipient: string | null;
  date: Date;
}

function rfc5322Date(d: Date): string {
  return d.toUTCString().replace(/GMT$/, '+0000');
}

/** A header-safe token: no spaces or parentheses that would change the field's structure. */
function token(value: string, max: number): string {
  return cleanText(value, max).replace(/[\s()<>;]/g, '_') || 'unknown';
}

export function receivedHeader(info: ReceivedInfo): string {
  const from = `from ${token(info.helo, 100)} (${info.clientHostname ? `${token(info.clientHostname, 100)} ` : ''}[${info.clientIp}])`;
  const by = `by ${token(info.byHost, 100)} (Backstop) with ${info.protocol} id ${token(info.id, 40)}`;
  const rcpt = info.recipient ? `\r\n\tfor <${token(info.recipient, 200)}>` : '';
  return `Received: ${from}\r\n\t${by}${rcpt};\r\n\t${rfc5322Date(info.date)}\r\n`;
}
