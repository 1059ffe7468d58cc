/*
 * milter/codec — the Sendmail/Postfix milter protocol, version 6, as bytes. Pure.
 *
 * Sources: Sendmail's libmilter (include/libmilter/mfdef.h: the command,
 * reply, protocol-flag and action-flag codes; libmilter/engine.c and comm.c:
 * packet framing, option negotiation, the layout of each command) and
 * Postfix's MILTER_README (Postfix speaks version 6 by default; it is not
 * built on libmilter). Every packet, either way, is
 *
 *   uint32 length (big-endian, counts the command byte and the data)
 *   char   command
 *   data   (length - 1 bytes)
 *
 * Strings inside data are NUL-terminated. The MTA sends commands (upper case);
 * the filter answers with replies (lower case, plus 'O' for negotiation).
 *
 * Trusts nothing: every length is checked before it is used, a packet larger
 * than the configured limit is a protocol error before a byte of it is
 * buffered, and a command that does not parse is an error, never a guess.
 * It must never allocate on a peer's say-so beyond that limit.
 */

export const MILTER_VERSION = 6;

/** MTA → filter commands (mfdef.h SMFIC_*). */
export const SMFIC = {
  ABORT: 'A',
  BODY: 'B',
  CONNECT: 'C',
  MACRO: 'D',
  BODYEOB: 'E',
  HELO: 'H',
  QUIT_NC: 'K',
  HEADER: 'L',
  MAIL: 'M',
  EOH: 'N',
  OPTNEG: 'O',
  QUIT: 'Q',
  RCPT: 'R',
  DATA: 'T',
  UNKNOWN: 'U',
} as const;

/** Filter → MTA replies (mfdef.h SMFIR_*), those Backstop sends or a test decodes. */
export const SMFIR = {
  ADDRCPT: '+',
  DELRCPT: '-',
  ACCEPT: 'a',
  CONTINUE: 'c',
  DISCARD: 'd',
  CHGFROM: 'e',
  ADDHEADER: 'h',
  PROGRESS: 'p',
  QUARANTINE: 'q',
  REJECT: 'r',
  TEMPFAIL: 't',
  REPLYCODE: 'y',
  OPTNEG: 'O',
} as const;

/** Protocol flags (mfdef.h SMFIP_*): steps the filter asks the MTA to skip, or not to wait for a reply to. */
export const SMFIP = {
  NOCONNECT: 0x1,
  NOHELO: 0x2,
  NOMAIL: 0x4,
  NORCPT: 0x8,
  NOBODY: 0x10,
  NOHDRS: 0x20,
  NOEOH: 0x40,
  NR_HDR: 0x80,
  NOUNKNOWN: 0x100,
  NODATA: 0x200,
  SKIP: 0x400,
  RCPT_REJ: 0x800,
  NR_CONN: 0x1000,
  NR_HELO: 0x2000,
  NR_MAIL: 0x4000,
  NR_RCPT: 0x8000,
  NR_DATA: 0x10000,
  NR_UNKN: 0x20000,
  NR_EOH: 0x40000,
  NR_BODY: 0x80000,
  HDR_LEADSPC: 0x100000,
} as const;

/** Action flags (mfapi.h SMFIF_*): what the filter may do to the message at end of message. */
/** Macro stages for SMFIF_SETSYMLIST (mfapi.h SMFIM_*). */
export const SMFIM = { CONNECT: 0, HELO: 1, ENVFROM: 2, ENVRCPT: 3, DATA: 4, EOM: 5, EOH: 6 } as const;

export const SMFIF = {
  ADDHDRS: 0x1,
  CHGBODY: 0x2,
  ADDRCPT: 0x4,
  DELRCPT: 0x8,
  CHGHDRS: 0x10,
  QUARANTINE: 0x20,
  CHGFROM: 0x40,
  ADDRCPT_PAR: 0x80,
  SETSYMLIST: 0x100,
} as const;

export type Family = '4' | '6' | 'L' | 'U';

export type MilterCommand =
  | { command: 'optneg'; version: number; actions: number; protocol: number }
  | { command: 'macro'; stage: string; macros: Record<string, string> }
  | { command: 'connect'; hostname: string; family: Family; port: number; address: string }
  | { command: 'helo'; helo: string }
  | { command: 'mail'; args: string[] }
  | { command: 'rcpt'; args: string[] }
  | { command: 'header'; name: string; value: string }
  | { command: 'eoh' }
  | { command: 'body'; chunk: Buffer }
  | { command: 'eom'; chunk: Buffer }
  | { command: 'abort' }
  | { command: 'quit' }
  | { command: 'quit-nc' }
  | { command: 'data' }
  | { command: 'unknown'; line: string };

export type MilterReply =
  /** macros (with SMFIF_SETSYMLIST): per stage (SMFIM), the macro names the MTA is to send there; "" for none. */
  | { reply: 'optneg'; version: number; actions: number; protocol: number; macros?: Partial<Record<number, string>> }
  | { reply: 'continue' }
  | { reply: 'accept' }
  | { reply: 'reject' }
  | { reply: 'tempfail' }
  | { reply: 'discard' }
  | { reply: 'progress' }
  /** "550 5.7.1 text": Postfix passes it to the client as the SMTP reply. */
  | { reply: 'replycode'; code: number; text: string }
  | { reply: 'quarantine'; reason: string }
  | { reply: 'addheader'; name: string; value: string }
  | { reply: 'chgfrom'; address: string; args?: string }
  | { reply: 'addrcpt'; address: string }
  | { reply: 'delrcpt'; address: string };

export class MilterProtocolError extends Error {}

/** A raw packet: its command byte and data. */
export interface Packet {
  code: string;
  data: Buffer;
}

function packet(code: string, data: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(data.length + 1, 0);
  head.write(code, 4, 'latin1');
  return Buffer.concat([head, data]);
}

/** NUL-terminated strings, as libmilter writes them. Milter strings are bytes; latin1 keeps every byte. */
function strings(...values: string[]): Buffer {
  return Buffer.concat(values.map((v) => Buffer.from(`${v}\0`, 'latin1')));
}

function u32s(...values: number[]): Buffer {
  const b = Buffer.alloc(4 * values.length);
  values.forEach((v, i) => b.writeUInt32BE(v >>> 0, 4 * i));
  return b;
}

/** Splits NUL-terminated strings; data that does not end in NUL is malformed (a truncated string). */
function splitStrings(data: Buffer, what: string): string[] {
  if (data.length === 0 || data[data.length - 1] !== 0) throw new MilterProtocolError(`${what}: string not NUL-terminated`);
  return data.subarray(0, data.length - 1).toString('latin1').split('\0');
}

function exactly(list: string[], n: number, what: string): string[] {
  if (list.length !== n) throw new MilterProtocolError(`${what}: expected ${n} strings, got ${list.length}`);
  return list;
}

export function decodeCommand(p: Packet): MilterCommand {
  const { code, data } = p;
  switch (code) {
    case SMFIC.OPTNEG: {
      if (data.length < 12) throw new MilterProtocolError('optneg: shorter than 12 bytes');
      return { command: 'optneg', version: data.readUInt32BE(0), actions: data.readUInt32BE(4), protocol: data.readUInt32BE(8) };
    }
    case SMFIC.MACRO: {
      if (data.length < 1) throw new MilterProtocolError('macro: no stage');
      const stage = String.fromCharCode(data[0]!);
      const rest = data.subarray(1);
      const pairs: [string, string][] = [];
      if (rest.length > 0) {
        const list = splitStrings(rest, 'macro');
        if (list.length % 2 !== 0) throw new MilterProtocolError('macro: a name without a value');
        for (let i = 0; i < list.length; i += 2) pairs.push([list[i]!, list[i + 1]!]);
      }
      // fromEntries defines own properties: a macro named "__proto__" is data, not a prototype.
      return { command: 'macro', stage, macros: Object.fromEntries(pairs) };
    }
    case SMFIC.CONNECT: {
      const nul = data.indexOf(0);
      if (nul < 0 || nul + 1 >= data.length) throw new MilterProtocolError('connect: truncated');
      const hostname = data.subarray(0, nul).toString('latin1');
      const family = String.fromCharCode(data[nul + 1]!);
      if (family === 'U') return { command: 'connect', hostname, family, port: 0, address: '' };
      if (family !== '4' && family !== '6' && family !== 'L') throw new MilterProtocolError(`connect: unknown family ${JSON.stringify(family)}`);
      const rest = data.subarray(nul + 2);
      if (rest.length < 3) throw new MilterProtocolError('connect: truncated');
      const port = rest.readUInt16BE(0);
      const [address] = exactly(splitStrings(rest.subarray(2), 'connect'), 1, 'connect');
      return { command: 'connect', hostname, family, port, address: address! };
    }
    case SMFIC.HELO:
      return { command: 'helo', helo: exactly(splitStrings(data, 'helo'), 1, 'helo')[0]! };
    case SMFIC.MAIL:
      return { command: 'mail', args: splitStrings(data, 'mail') };
    case SMFIC.RCPT:
      return { command: 'rcpt', args: splitStrings(data, 'rcpt') };
    case SMFIC.HEADER: {
      const [name, value] = exactly(splitStrings(data, 'header'), 2, 'header');
      return { command: 'header', name: name!, value: value! };
    }
    case SMFIC.EOH:
      return { command: 'eoh' };
    case SMFIC.BODY:
      return { command: 'body', chunk: data };
    case SMFIC.BODYEOB:
      return { command: 'eom', chunk: data };
    case SMFIC.ABORT:
      return { command: 'abort' };
    case SMFIC.QUIT:
      return { command: 'quit' };
    case SMFIC.QUIT_NC:
      return { command: 'quit-nc' };
    case SMFIC.DATA:
      return { command: 'data' };
    case SMFIC.UNKNOWN:
      return { command: 'unknown', line: exactly(splitStrings(data, 'unknown'), 1, 'unknown')[0]! };
    default:
      throw new MilterProtocolError(`unknown command byte 0x${code.charCodeAt(0).toString(16)}`);
  }
}

/** The MTA's side, for tests and the bench's own client. */
export function encodeCommand(c: MilterCommand): Buffer {
  switch (c.command) {
    case 'optneg':
      return packet(SMFIC.OPTNEG, u32s(c.version, c.actions, c.protocol));
    case 'macro':
      return packet(SMFIC.MACRO, Buffer.concat([Buffer.from(c.stage, 'latin1'), strings(...Object.entries(c.macros).flat())]));
    case 'connect': {
      const head = strings(c.hostname);
      if (c.family === 'U') return packet(SMFIC.CONNECT, Buffer.concat([head, Buffer.from('U')]));
      const port = Buffer.alloc(2);
      port.writeUInt16BE(c.port, 0);
      return packet(SMFIC.CONNECT, Buffer.concat([head, Buffer.from(c.family), port, strings(c.address)]));
    }
    case 'helo':
      return packet(SMFIC.HELO, strings(c.helo));
    case 'mail':
      return packet(SMFIC.MAIL, strings(...c.args));
    case 'rcpt':
      return packet(SMFIC.RCPT, strings(...c.args));
    case 'header':
      return packet(SMFIC.HEADER, strings(c.name, c.value));
    case 'eoh':
      return packet(SMFIC.EOH);
    case 'body':
      return packet(SMFIC.BODY, c.chunk);
    case 'eom':
      return packet(SMFIC.BODYEOB, c.chunk);
    case 'abort':
      return packet(SMFIC.ABORT);
    case 'quit':
      return packet(SMFIC.QUIT);
    case 'quit-nc':
      return packet(SMFIC.QUIT_NC);
    case 'data':
      return packet(SMFIC.DATA);
    case 'unknown':
      return packet(SMFIC.UNKNOWN, strings(c.line));
  }
}

/** An SMTP reply a milter may hand the MTA: 4xx or 5xx, one line, no NUL (libmilter smfi_setreply's rules). */
const REPLY_LINE = /^[45]\d\d [^\0\r\n]*$/;

export function encodeReply(r: MilterReply): Buffer {
  switch (r.reply) {
    case 'optneg': {
      // libmilter st_optionneg: after the three words, (uint32 stage, NUL-terminated space-separated names) pairs.
      const lists = Object.entries(r.macros ?? {}).map(([stage, names]) => Buffer.concat([u32s(Number(stage)), strings(names!)]));
      return packet(SMFIR.OPTNEG, Buffer.concat([u32s(r.version, r.actions, r.protocol), ...lists]));
    }
    case 'continue':
      return packet(SMFIR.CONTINUE);
    case 'accept':
      return packet(SMFIR.ACCEPT);
    case 'reject':
      return packet(SMFIR.REJECT);
    case 'tempfail':
      return packet(SMFIR.TEMPFAIL);
    case 'discard':
      return packet(SMFIR.DISCARD);
    case 'progress':
      return packet(SMFIR.PROGRESS);
    case 'replycode': {
      const line = `${r.code} ${r.text}`;
      if (!REPLY_LINE.test(line)) throw new MilterProtocolError(`replycode: not a one-line 4xx/5xx reply: ${JSON.stringify(line.slice(0, 40))}`);
      return packet(SMFIR.REPLYCODE, strings(line));
    }
    case 'quarantine':
      return packet(SMFIR.QUARANTINE, strings(r.reason.replace(/[\0\r\n]/g, ' ')));
    case 'addheader':
      if (/[\0]/.test(r.name + r.value) || !/^[!-9;-~]+$/.test(r.name)) throw new MilterProtocolError('addheader: malformed header field');
      return packet(SMFIR.ADDHEADER, strings(r.name, r.value));
    case 'chgfrom':
      return packet(SMFIR.CHGFROM, r.args ? strings(r.address, r.args) : strings(r.address));
    case 'addrcpt':
      return packet(SMFIR.ADDRCPT, strings(r.address));
    case 'delrcpt':
      return packet(SMFIR.DELRCPT, strings(r.address));
  }
}

/** The filter's side decoded, for tests and the bench's client. */
export function decodeReply(p: Packet): MilterReply {
  const { code, data } = p;
  switch (code) {
    case SMFIR.OPTNEG:
    {
      if (data.length < 12) throw new MilterProtocolError('optneg reply: shorter than 12 bytes');
      const head = { reply: 'optneg' as const, version: data.readUInt32BE(0), actions: data.readUInt32BE(4), protocol: data.readUInt32BE(8) };
      if (data.length === 12) return head;
      const macros: Partial<Record<number, string>> = {};
      let at = 12;
      while (at < data.length) {
        if (data.length - at < 5) throw new MilterProtocolError('optneg reply: truncated macro list');
        const stage = data.readUInt32BE(at);
        const end = data.indexOf(0, at + 4);
        if (end < 0) throw new MilterProtocolError('optneg reply: macro list not NUL-terminated');
        macros[stage] = data.subarray(at + 4, end).toString('latin1');
        at = end + 1;
      }
      return { ...head, macros };
    }
    case SMFIR.CONTINUE:
      return { reply: 'continue' };
    case SMFIR.ACCEPT:
      return { reply: 'accept' };
    case SMFIR.REJECT:
      return { reply: 'reject' };
    case SMFIR.TEMPFAIL:
      return { reply: 'tempfail' };
    case SMFIR.DISCARD:
      return { reply: 'discard' };
    case SMFIR.PROGRESS:
      return { reply: 'progress' };
    case SMFIR.REPLYCODE: {
      const [line] = exactly(splitStrings(data, 'replycode'), 1, 'replycode');
      if (!REPLY_LINE.test(line!)) throw new MilterProtocolError('replycode: malformed');
      return { reply: 'replycode', code: Number(line!.slice(0, 3)), text: line!.slice(4) };
    }
    case SMFIR.QUARANTINE:
      return { reply: 'quarantine', reason: exactly(splitStrings(data, 'quarantine'), 1, 'quarantine')[0]! };
    case SMFIR.ADDHEADER: {
      const [name, value] = exactly(splitStrings(data, 'addheader'), 2, 'addheader');
      return { reply: 'addheader', name: name!, value: value! };
    }
    case SMFIR.CHGFROM: {
      const list = splitStrings(data, 'chgfrom');
      if (list.length > 2) throw new MilterProtocolError('chgfrom: too many strings');
      return list.length === 2 ? { reply: 'chgfrom', address: list[0]!, args: list[1]! } : { reply: 'chgfrom', address: list[0]! };
    }
    case SMFIR.ADDRCPT:
      return { reply: 'addrcpt', address: exactly(splitStrings(data, 'addrcpt'), 1, 'addrcpt')[0]! };
    case SMFIR.DELRCPT:
      return { reply: 'delrcpt', address: exactly(splitStrings(data, 'delrcpt'), 1, 'delrcpt')[0]! };
    default:
      throw new MilterProtocolError(`unknown reply byte 0x${code.charCodeAt(0).toString(16)}`);
  }
}

/**
 * Cuts a byte stream into packets. The length is checked against maxPacketBytes
 * as soon as its four bytes are in, so an oversized packet is refused before any
 * of it is kept; a zero length (no command byte) is malformed.
 */
export class PacketReader {
  private buffered: Buffer[] = [];
  private size = 0;
  constructor(private readonly maxPacketBytes: number) {}

  push(chunk: Buffer): Packet[] {
    this.buffered.push(chunk);
    this.size += chunk.length;
    const out: Packet[] = [];
    for (;;) {
      if (this.size < 4) break;
      // Join only what is needed: the 4 length bytes, then the whole packet once it is all in.
      if (this.buffered[0]!.length < 4) this.buffered = [Buffer.concat(this.buffered, this.size)];
      const length = this.buffered[0]!.readUInt32BE(0);
      if (length === 0) throw new MilterProtocolError('packet with length 0 (no command)');
      if (length > this.maxPacketBytes) throw new MilterProtocolError(`packet of ${length} bytes exceeds milter.maxPacketBytes (${this.maxPacketBytes})`);
      if (this.size < 4 + length) break;
      const all = this.buffered.length === 1 ? this.buffered[0]! : Buffer.concat(this.buffered, this.size);
      out.push({ code: String.fromCharCode(all[4]!), data: Buffer.from(all.subarray(5, 4 + length)) });
      const rest = all.subarray(4 + length);
      this.buffered = rest.length ? [rest] : [];
      this.size = rest.length;
    }
    return out;
  }

  /** Bytes of a packet begun and not finished: at end of stream, a truncated packet. */
  get pending(): number {
    return this.size;
  }
}

/**
 * Option negotiation (libmilter st_optionneg): the MTA offers a version, the
 * actions it allows and the protocol steps it can skip; the filter answers
 * with what it will use — never more than was offered. Backstop needs
 * version 6, and takes only what the MTA offers of what it wants.
 */
export function negotiate(
  offer: { version: number; actions: number; protocol: number },
  want: { actions: number; protocol: number; macros?: Partial<Record<number, string>> },
): { reply: 'optneg'; version: number; actions: number; protocol: number; macros?: Partial<Record<number, string>> } {
  if (offer.version < MILTER_VERSION) throw new MilterProtocolError(`MTA offers milter protocol version ${offer.version}; Backstop speaks ${MILTER_VERSION} (Postfix: milter_protocol = 6)`);
  const reply = { reply: 'optneg' as const, version: MILTER_VERSION, actions: offer.actions & want.actions, protocol: offer.protocol & want.protocol };
  // Macro lists only if the MTA lets the filter set them.
  return want.macros && offer.actions & SMFIF.SETSYMLIST ? { ...reply, actions: reply.actions | SMFIF.SETSYMLIST, macros: want.macros } : reply;
}
