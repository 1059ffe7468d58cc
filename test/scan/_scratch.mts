import { walkMessage } from '../../src/scan/mime.ts';
const CRLF='\r\n';
function nested(depth: number, leaf = 'x'): Buffer {
  const open = Array.from({ length: depth }, (_, i) => `Content-Type: multipart/mixed; boundary="n${i}"${CRLF}${CRLF}--n${i}`).join(CRLF);
  const close = Array.from({ length: depth }, (_, i) => `--n${depth - 1 - i}--`).join(CRLF);
  return Buffer.from(`From: a@example.org${CRLF}Subject: deep${CRLF}MIME-Version: 1.0${CRLF}${open}${CRLF}Content-Type: text/plain${CRLF}${CRLF}${leaf}${CRLF}${close}${CRLF}`);
}
for (const n of [200, 100000, 100000]) {
  const raw = nested(n);
  const t = performance.now();
  await walkMessage(raw, { maxMimeDepth: 20, maxParts: 500 }).catch(e => e);
  console.log(n, performance.now() - t);
}
