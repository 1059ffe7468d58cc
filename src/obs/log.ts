/*
 * obs/log — structured logs (pino, JSON lines on stdout). Peer-supplied values
 * go through cleanText before they reach a log line; pino's JSON encoding then
 * makes them inert for log readers.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string = process.env.BACKSTOP_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
}

/** A logger that drops everything, for tests and commands that print their own output. */
export const silentLogger: Logger = pino({ level: 'silent' });
