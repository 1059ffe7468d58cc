/*
 * edge/tls — the certificate STARTTLS offers. Operators give their own
 * (`smtp.tls: { key, cert }`); otherwise a self-signed one is made once and
 * kept under the data directory, so opportunistic TLS works from the first
 * start (MTAs do not verify certificates for opportunistic STARTTLS).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import selfsigned from 'selfsigned';

export interface TlsMaterial {
  key: string;
  cert: string;
}

export function readCertificate(paths: { key: string; cert: string }): TlsMaterial {
  return { key: readFileSync(paths.key, 'utf8'), cert: readFileSync(paths.cert, 'utf8') };
}

export async function ensureCertificate(dataDir: string, hostname: string): Promise<TlsMaterial> {
  const dir = join(dataDir, 'tls');
  const keyFile = join(dir, 'key.pem');
  const certFile = join(dir, 'cert.pem');
  if (existsSync(keyFile) && existsSync(certFile)) return readCertificate({ key: keyFile, cert: certFile });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const pems = await selfsigned.generate([{ name: 'commonName', value: hostname }], { notAfterDate: new Date(Date.now() + 3650 * 86_400_000), keySize: 2048 });
  writeFileSync(keyFile, pems.private, { mode: 0o600 });
  writeFileSync(certFile, pems.cert);
  return { key: pems.private, cert: pems.cert };
}
