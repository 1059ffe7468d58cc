/*
 * scan/names — is an attachment's file name one a worm would use?
 *
 * Pure. Names arrive decoded (RFC 2047/2231 by postal-mime) and hostile:
 * Windows ignores trailing dots and spaces, a run of spaces pushes ".exe" out
 * of sight in a mail client ("readme.txt          .exe"), a right-to-left
 * override makes "photo\u202Egpj.exe" display as "photoexe.jpg". Each rule
 * returns the human-readable test that failed, or null.
 */
import { cleanText } from '../obs/clean.ts';

/** Extensions Windows (and Office, and the shell) will execute. */
export const DEFAULT_BANNED_EXTENSIONS: readonly string[] = [
  'ade', 'adp', 'app', 'application', 'appref-ms', 'asp', 'bas', 'bat', 'cer', 'chm', 'cmd', 'cnt', 'com', 'cpl', 'crt',
  'csh', 'der', 'diagcab', 'exe', 'fxp', 'gadget', 'grp', 'hlp', 'hpj', 'hta', 'inf', 'ins', 'isp', 'its', 'jar', 'jnlp',
  'js', 'jse', 'ksh', 'lnk', 'mad', 'maf', 'mag', 'mam', 'maq', 'mar', 'mas', 'mat', 'mau', 'mav', 'maw', 'mcf', 'mda',
  'mdb', 'mde', 'mdt', 'mdw', 'mdz', 'msc', 'msh', 'msh1', 'msh2', 'mshxml', 'msh1xml', 'msh2xml', 'msi', 'msp', 'mst',
  'ops', 'osd', 'pcd', 'pif', 'pl', 'plg', 'prf', 'prg', 'ps1', 'ps1xml', 'ps2', 'ps2xml', 'psc1', 'psc2', 'pst', 'reg',
  'scf', 'scr', 'sct', 'shb', 'shs', 'tmp', 'url', 'vb', 'vbe', 'vbp', 'vbs', 'vsmacros', 'vsw', 'ws', 'wsc', 'wsf', 'wsh', 'xbap', 'xnk',
];

const BIDI_CONTROLS = /[\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

/** What Windows would see: trailing dots and spaces dropped, runs of whitespace folded. */
export function effectiveName(name: string): string {
  return name.replace(/[\s.]+$/u, '').replace(/\s+/gu, ' ');
}

export function checkFileName(rawName: string, banned: ReadonlySet<string>): string | null {
  const shown = cleanText(rawName, 120);
  if (BIDI_CONTROLS.test(rawName)) return `bidirectional override in file name (${shown})`;
  const name = effectiveName(rawName);
  // A CLSID extension ("file.{3050F4D8-98B5-11CF-BB82-00AA00BDCE0B}") runs as its handler.
  if (/\.\{[0-9a-f-]{36}\}$/i.test(name)) return `class-id extension (${shown})`;
  const parts = name.toLowerCase().split('.');
  if (parts.length < 2) return null;
  const ext = parts[parts.length - 1]!.trim();
  if (!banned.has(ext)) return null;
  if (/\s{4,}\.[^.]*$/u.test(rawName.replace(/[\s.]+$/u, ''))) return `padded file name hiding .${ext} (${shown})`;
  if (parts.length >= 3) return `double extension (${cleanText(parts.slice(-3).join('.'), 80)})`;
  return `forbidden file type (.${ext})`;
}
