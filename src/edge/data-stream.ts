/*
 * edge/data-stream — smtp-server's DATA reader (SMTPStream._feedDataStream)
 * with the search for "\n." done by Buffer.indexOf instead of a JavaScript
 * loop over every byte of the message.
 *
 * Why: that loop was the single most expensive JavaScript function of a
 * node under the bench's unique mix (1.9% of the main thread's on-CPU
 * samples, bench/README.md "Issue 16"); Buffer.indexOf is memchr-based
 * native code. Everything else is smtp-server 3.21's own algorithm, step for
 * step, because its edge cases are security fixes (a leading "." or ".."
 * at the start of DATA, a terminator split across TCP segments, an escape
 * dot emitted with at least the CRLF before it): it reads the same fields,
 * calls the same methods and emits the same bytes for every chunking of the
 * same input. test/fuzz/data-stream.test.ts feeds random inputs in random
 * pieces to both and compares what each emitted and where each stopped.
 *
 * Installed on each connection's parser by edge/smtp-server-ext; it overrides
 * an internal of the pinned smtp-server (package.json).
 */
import type { SMTPStream } from 'smtp-server/lib/smtp-stream.js';

const LF_DOT = Buffer.from('\n.');
const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;

type Done = (err?: Error | null) => void;

export function feedDataStream(this: SMTPStream, input: Buffer, done: Done): void {
  const dataStream = this._dataStream!;
  let chunk = input;
  if (this._lastBytes && this._lastBytes.length) {
    chunk = Buffer.concat([this._lastBytes, chunk], this._lastBytes.length + chunk.length);
    this._lastBytes = false;
  }
  let len = chunk.length;
  // ".\r\n" as the very first payload: the message is empty.
  if (this._atDataStart && len >= 3 && chunk[0] === DOT && chunk[1] === CR && chunk[2] === LF) {
    this._endDataMode(false, chunk.subarray(3), done);
    return;
  }
  // A first line that starts with an escape dot.
  if (this._atDataStart && len >= 2 && chunk[0] === DOT && chunk[1] === DOT) {
    chunk = chunk.subarray(1);
    len--;
    this._atDataStart = false;
  }
  // Every dot at the start of a line, at i = 2 … len - 3 (the original loop's range): its LF at p = i - 1.
  for (let p = chunk.indexOf(LF_DOT, 1); p !== -1 && p < len - 3; p = chunk.indexOf(LF_DOT, p + 1)) {
    const i = p + 1;
    if (chunk[i - 2] === CR && chunk[i + 1] === CR && chunk[i + 2] === LF) {
      const buf = chunk.subarray(0, i);
      this._countDataBytes(buf.length);
      this._endDataMode(buf, chunk.subarray(i + 3), done);
      return;
    }
    if (chunk[i + 1] === DOT) {
      const buf = chunk.subarray(0, i);
      this._lastBytes = false;
      this._countDataBytes(buf.length);
      if (dataStream.writable) dataStream.write(buf);
      const rest = chunk.subarray(i + 1);
      setImmediate(() => this._feedDataStream(rest, done));
      return;
    }
  }
  // Keep the last four bytes: a terminator may straddle this chunk and the next.
  this._lastBytes = chunk.length < 4 ? chunk : chunk.subarray(chunk.length - 4);
  if (this._lastBytes.length >= chunk.length) return done();
  const buf = chunk.subarray(0, chunk.length - this._lastBytes.length);
  this._countDataBytes(buf.length);
  if (!dataStream.writable) return done();
  if (dataStream.write(buf) || dataStream.destroyed) return done();
  // A stream that the application destroys never drains, it only closes.
  const onDrain = () => {
    dataStream.removeListener('drain', onDrain);
    dataStream.removeListener('close', onDrain);
    done();
  };
  dataStream.once('drain', onDrain);
  dataStream.once('close', onDrain);
}
