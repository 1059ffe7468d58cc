/*
 * test/scan/mail — raw RFC 5322 messages for the scan tests, built in memory
 * (no fixture files): a text body plus attachments, base64 encoded.
 */
export const CRLF = '\r\n';

export interface Part {
  /** File name, put into Content-Disposition as given (quoted). */
  name?: string;
  /** A whole Content-Disposition header line, to test encodings of the name. */
  disposition?: string;
  type?: string;
  bytes: Uint8Array;
}

function base64Lines(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64').replace(/.{76}/g, `$&${CRLF}`);
}

/** A multipart/mixed message: body text, then each part as a base64 attachment. */
export function mail(parts: Part[], opts: { seq?: number | string; body?: string } = {}): Buffer {
  const seq = opts.seq ?? 0;
  const lines = [
    'From: sender@example.org',
    'To: user@example.net',
    `Subject: hello ${seq}`,
    `Message-ID: <m${seq}@example.org>`,
    'Date: Mon, 26 Jan 2004 15:30:00 +0000',
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="=b0"',
    '',
    'This is a multi-part message in MIME format.',
    '--=b0',
    'Content-Type: text/plain; charset=us-ascii',
    '',
    opts.body ?? `The message contains Unicode characters and has been sent as a binary attachment. ${seq}`,
  ];
  for (const p of parts) {
    lines.push('--=b0', `Content-Type: ${p.type ?? 'application/octet-stream'}`, 'Content-Transfer-Encoding: base64');
    lines.push(p.disposition ?? `Content-Disposition: attachment; filename="${p.name ?? 'data.bin'}"`, '', base64Lines(p.bytes));
  }
  lines.push('--=b0--', '');
  return Buffer.from(lines.join(CRLF));
}

/** A message carrying another message as a message/rfc822 part. */
export function forward(inner: Uint8Array, seq = 0): Buffer {
  return Buffer.concat([
    Buffer.from(
      [
        'From: forwarder@example.org',
        'To: user@example.net',
        `Subject: Fwd ${seq}`,
        'MIME-Version: 1.0',
        `Content-Type: multipart/mixed; boundary="fw${seq}"`,
        '',
        `--fw${seq}`,
        'Content-Type: text/plain',
        '',
        'See the attached message.',
        `--fw${seq}`,
        'Content-Type: message/rfc822',
        'Content-Disposition: attachment; filename="original.eml"',
        '',
        '',
      ].join(CRLF),
    ),
    inner,
    Buffer.from(`${CRLF}--fw${seq}--${CRLF}`),
  ]);
}

/** A minimal PE image: MZ header, e_lfanew = 0x40, "PE\0\0", an i386 file header. */
export function tinyPe(): Uint8Array {
  const b = new Uint8Array(0x100);
  b.set([0x4d, 0x5a], 0);
  b[0x3c] = 0x40;
  b.set([0x50, 0x45, 0, 0, 0x4c, 0x01], 0x40);
  return b;
}

/** Pseudo-random bytes (deterministic), e.g. for incompressible filler. */
export function noise(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
