/*
 * bench/lib/clamd — clamd's own time for a message: one INSTREAM on a fresh
 * connection (as Backstop and Haraka's plugin each do), timed from connect
 * to the answer. The benchmark subtracts it from the gateway's added latency
 * to show what the gateway costs beside the scanner (clamd(8): zINSTREAM,
 * 4-byte big-endian chunk lengths, a zero-length chunk ends the stream).
 */
import { connect } from 'node:net';

const CHUNK = 64 * 1024;

export async function instreamMs(host: string, port: number, bytes: Buffer, timeoutMs = 30_000): Promise<{ ms: number; answer: string }> {
  const t0 = process.hrtime.bigint();
  const answer = await new Promise<string>((resolve, reject) => {
    const socket = connect({ host, port });
    socket.setNoDelay(true);
    let reply = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`clamd gave no answer in ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('data', (d) => {
      reply += d.toString('latin1');
      if (reply.includes('\0')) {
        clearTimeout(timer);
        socket.destroy();
        resolve(reply.slice(0, reply.indexOf('\0')));
      }
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    const parts: Buffer[] = [Buffer.from('zINSTREAM\0')];
    for (let at = 0; at < bytes.length; at += CHUNK) {
      const piece = bytes.subarray(at, at + CHUNK);
      const len = Buffer.alloc(4);
      len.writeUInt32BE(piece.length);
      parts.push(len, piece);
    }
    parts.push(Buffer.alloc(4));
    socket.write(Buffer.concat(parts));
  });
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, answer };
}
