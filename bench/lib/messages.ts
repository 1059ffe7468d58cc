/*
 * bench/lib/messages — the benchmark's mail: ~20 kB multipart messages with
 * one base64 attachment.
 *
 *   unique    every message carries fresh random bytes as "figures-N.pdf":
 *             no verdict cache (Backstop's, clamd's own) can help, and each
 *             target gets its own fresh set.
 *   outbreak  80% carry the same worm payload, Mydoom style: "document.zip"
 *             holding "document.pif", which is Debian clamav-testfiles'
 *             clam.exe (the test signature's file), padded to the same size;
 *             the other 20% are unique clean messages.
 *
 * Every message has its own Message-ID and Subject, as real worm copies do.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { zipSync } from 'fflate';
import { encodeMessage } from './smtp.ts';

const CRLF = '\r\n';
export const CLAM_EXE = '/usr/share/clamav-testfiles/clam.exe';

function wrap(b64: string): string {
  return b64.replace(/.{1,76}/g, (l) => l + CRLF);
}

export function message(i: number, attachment: Uint8Array, name: string, type: string): Buffer {
  return Buffer.from(
    [
      'From: bench@example.org',
      'To: user@example.net',
      `Subject: quarterly figures ${i}`,
      `Message-ID: <bench-${i}-${randomBytes(6).toString('hex')}@example.org>`,
      `Date: ${new Date().toUTCString()}`,
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="=_b"',
      '',
      '--=_b',
      'Content-Type: text/plain; charset=utf-8',
      '',
      `Hello, the figures for quarter ${i} are attached.`,
      '',
      '--=_b',
      `Content-Type: ${type}; name="${name}"`,
      'Content-Transfer-Encoding: base64',
      `Content-Disposition: attachment; filename="${name}"`,
      '',
      wrap(Buffer.from(attachment).toString('base64')),
      '--=_b--',
      '',
    ].join(CRLF),
  );
}

/** ~20 kB on the wire: 14.5 kB of random bytes are ~19.6 kB of base64. */
export const uniqueMessage = (i: number) => message(i, randomBytes(14_500), `figures-${i}.pdf`, 'application/pdf');

let wormZip: Uint8Array | null = null;
/** The one worm payload every outbreak copy carries (made once, so it is byte-for-byte the same). */
export function wormPayload(): Uint8Array {
  if (!wormZip) {
    const exe = new Uint8Array(readFileSync(CLAM_EXE));
    // Stored, not deflated, so the zip is ~14.5 kB like the unique attachments.
    wormZip = zipSync({ 'document.pif': exe, 'readme.txt': new Uint8Array(Buffer.alloc(Math.max(0, 14_000 - exe.length), 'Mydoom-style padding. ')) }, { level: 0 });
  }
  return wormZip;
}

export const wormMessage = (i: number) => message(i, wormPayload(), 'document.zip', 'application/octet-stream');

/** 80% worm copies, 20% unique clean mail, interleaved (every fifth message is clean). */
export const outbreakMessage = (i: number) => (i % 5 === 0 ? uniqueMessage(i) : wormMessage(i));

export type Mix = 'unique' | 'outbreak';

/** n encoded messages of a mix, ready for runLoad. */
export function makeMessages(mix: Mix, n: number): Buffer[] {
  const make = mix === 'unique' ? uniqueMessage : outbreakMessage;
  return Array.from({ length: n }, (_, i) => encodeMessage(make(i)));
}
