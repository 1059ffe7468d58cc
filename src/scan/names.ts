/*
 * scan/names — is an attachment's file name one a worm would use?
 *
 * Pure. Names arrive decoded (RFC 2047 encoded-words and RFC 2231 parameters
 * are decoded by postal-mime) and hostile: Windows ignores trailing dots and
 * spaces, a run of spaces pushes ".exe" out of sight in a mail client
 * ("readme.txt          .exe"), a right-to-left override makes
 * "photo\u202Egpj.exe" display as "photoexe.jpg". Each rule returns the
 * human-readable test that failed, or null. Every name that goes into a test
 * text is passed through cleanText first: it ends up in logs, SMTP replies
 * and notification subjects.
 */
import { cleanText } from '../obs/clean.ts';

/**
 * Extensions Windows, Office or the shell will run or install: Outlook's
 * "Level 1" blocked list, plus the container and add-in types worms moved to
 * after it (disk images that bypass Mark-of-the-Web, Excel add-ins, app
 * packages, OneNote and search/library shortcuts).
 */
export const DEFAULT_BANNED_EXTENSIONS: readonly string[] = [
  'ade', 'adp', 'app', 'application', 'appref-ms', 'appx', 'appxbundle', 'asp', 'bas', 'bat', 'bgi', 'cer', 'chm', 'cmd',
  'cnt', 'com', 'cpl', 'crt', 'csh', 'der', 'diagcab', 'exe', 'fxp', 'gadget', 'grp', 'hlp', 'hpj', 'hta', 'img', 'inf',
  'ins', 'iso', 'isp', 'its', 'jar', 'jnlp', 'js', 'jse', 'ksh', 'library-ms', 'lnk', 'mad', 'maf', 'mag', 'mam', 'maq',
  'mar', 'mas', 'mat', 'mau', 'mav', 'maw', 'mcf', 'mda', 'mdb', 'mde', 'mdt', 'mdw', 'mdz', 'msc', 'msh', 'msh1', 'msh2',
  'mshxml', 'msh1xml', 'msh2xml', 'msi', 'msix', 'msixbundle', 'msp', 'mst', 'one', 'ops', 'osd', 'pcd', 'pif', 'pl',
  'plg', 'prf', 'prg', 'ps1', 'ps1xml', 'ps2', 'ps2xml', 'psc1', 'psc2', 'pst', 'reg', 'scf', 'scr', 'sct',
  'search-ms', 'settingcontent-ms', 'shb', 'shs', 'tmp', 'url', 'vb', 'vbe', 'vbp', 'vbs', 'vhd', 'vhdx', 'vsmacros',
  'vsw', 'ws', 'wsc', 'wsf', 'wsh', 'xbap', 'xll', 'xnk',
];

/** Left-to-right/right-to-left marks, embeddings, overrides and isolates (Unicode UAX #9). */
const BIDI_CONTROLS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/u;

/** The last path segment: a zip entry or a careless client may send "dir/x.exe" or "C:\\dir\\x.exe". */
export function baseName(name: string): string {
  const parts = name.split(/[\\/]/);
  return parts[parts.length - 1] ?? name;
}

/** What Windows would see: trailing dots and spaces dropped, runs of whitespace folded. */
export function effectiveName(name: string): string {
  return name.replace(/[\s.]+$/u, '').replace(/\s+/gu, ' ');
}

/** What the trick puts in front of the real extension: a type users open without a second thought. */
const DOCUMENT_EXTENSIONS = new Set([
  'txt', 'text', 'doc', 'docx', 'rtf', 'pdf', 'xls', 'xlsx', 'csv', 'ppt', 'pptx', 'odt', 'ods', 'htm', 'html', 'eml', 'msg',
  'jpg', 'jpeg', 'gif', 'png', 'bmp', 'tif', 'tiff', 'mp3', 'wav', 'avi', 'mpg', 'mpeg', 'mp4', 'zip', 'rar', 'dat', 'log',
]);

export function checkFileName(rawName: string, banned: ReadonlySet<string>): string | null {
  const original = baseName(rawName);
  const shown = cleanText(original, 120);
  if (BIDI_CONTROLS.test(original)) return `bidirectional override in file name (${shown})`;
  const name = effectiveName(original);
  // A CLSID extension ("file.{3050F4D8-98B5-11CF-BB82-00AA00BDCE0B}") runs as the class's handler.
  if (/\.\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}$/i.test(name)) return `class-id extension (${shown})`;
  const parts = name.split('.');
  if (parts.length < 2) return null;
  const ext = parts[parts.length - 1]!.trim().toLowerCase();
  if (!banned.has(ext)) return null;
  // "readme.txt          .exe": four or more blanks before the last dot hide it in a narrow column.
  if (/\s{4,}\.[^.]*$/u.test(original.replace(/[\s.]+$/u, ''))) return `padded file name hiding .${ext} (${cleanText(name, 80)})`;
  const previous = parts[parts.length - 2]!.trim();
  if (parts.length >= 3 && DOCUMENT_EXTENSIONS.has(previous.toLowerCase())) {
    return `double extension (${cleanText(parts.slice(-3).map((p) => p.trim()).join('.'), 80)})`;
  }
  return `forbidden file type (.${ext})`;
}
