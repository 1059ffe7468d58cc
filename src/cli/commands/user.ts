/*
 * cli/commands/user — the web console's local users:
 *   backstop user add NAME --admin|--analyst [--password-file FILE]
 *   backstop user passwd NAME [--password-file FILE]
 *   backstop user disable|enable|remove NAME
 *   backstop user list
 * all with [--config FILE] (the store the nodes share).
 *
 * The password is read from --password-file (its first line) or standard
 * input (a pipe: its first line; a terminal: asked twice, not echoed), never
 * from the command line, where every user of the machine can read it in the
 * process list and the shell keeps it in its history. Every change is
 * audited. Exit 0 done, 1 not found / already exists, 2 error.
 */
import { readFileSync } from 'node:fs';
import { audit } from '../../store/audit.ts';
import { addUser, listUsers, removeUser, setDisabled, setPassword, UserError, type Role } from '../../web/auth/users.ts';
import { MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH } from '../../web/auth/passwords.ts';
import { operator, parseCommandArgs } from '../args.ts';
import { CONFIG_OPTION, withStore } from '../store.ts';
import { UsageError, type Command } from '../command.ts';

const SUBS = ['add', 'passwd', 'disable', 'enable', 'remove', 'list'] as const;

function firstLine(text: string): string {
  return text.split(/\r?\n/, 1)[0] ?? '';
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    chunks.push(chunk as Buffer);
    size += (chunk as Buffer).length;
    if (size > 64 * 1024) break;
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** One line from the terminal with echo off. */
function askHidden(prompt: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const stdin = process.stdin;
    process.stderr.write(prompt);
    stdin.setRawMode(true);
    stdin.resume();
    let value = '';
    const onData = (data: Buffer) => {
      for (const ch of data.toString('utf8')) {
        if (ch === '\r' || ch === '\n') {
          done();
          return resolve(value);
        }
        if (ch === '\u0003') {
          done();
          return reject(new Error('interrupted'));
        }
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else value += ch;
      }
    };
    const done = () => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
    };
    stdin.on('data', onData);
  });
}

export async function readPassword(passwordFile: string | undefined): Promise<string> {
  let password: string;
  if (passwordFile) {
    try {
      password = firstLine(readFileSync(passwordFile, 'utf8'));
    } catch (err) {
      throw new UsageError(`cannot read --password-file: ${(err as Error).message}`);
    }
  } else if (process.stdin.isTTY) {
    password = await askHidden('password: ');
    if ((await askHidden('again: ')) !== password) throw new UsageError('the two passwords differ');
  } else {
    password = firstLine(await readStdin());
  }
  if (password.length < MIN_PASSWORD_LENGTH) throw new UsageError(`the password needs at least ${MIN_PASSWORD_LENGTH} characters (give it on standard input or with --password-file)`);
  if (password.length > MAX_PASSWORD_LENGTH) throw new UsageError(`the password may have at most ${MAX_PASSWORD_LENGTH} characters`);
  return password;
}

export const command: Command = {
  summary: 'Manage the web console users (password from standard input or --password-file, never the command line).',
  usage: 'backstop user add NAME --admin|--analyst [--password-file FILE] | passwd NAME [--password-file FILE] | disable NAME | enable NAME | remove NAME | list  [--config FILE]',
  async run(args) {
    const { values, positionals } = parseCommandArgs(args, {
      ...CONFIG_OPTION,
      admin: { type: 'boolean' },
      analyst: { type: 'boolean' },
      'password-file': { type: 'string' },
      password: { type: 'string' },
    });
    if (values.password !== undefined) throw new UsageError('--password is not accepted: a password on the command line is visible to every user of this machine; use standard input or --password-file');
    const [sub, name] = positionals;
    if (!sub || !(SUBS as readonly string[]).includes(sub)) throw new UsageError(`expected ${SUBS.join(', ')}`);
    if (sub === 'list' ? positionals.length !== 1 : positionals.length !== 2 || !name) throw new UsageError(sub === 'list' ? 'list takes no name' : `${sub} needs exactly one user name`);
    let role: Role | undefined;
    if (sub === 'add') {
      if (values.admin === values.analyst) throw new UsageError('add needs exactly one of --admin or --analyst');
      role = values.admin ? 'admin' : 'analyst';
    } else if (values.admin || values.analyst) {
      throw new UsageError('--admin and --analyst go with add');
    }
    // Ask for the password before opening the store: nothing is half-done if the input is wrong.
    const password = sub === 'add' || sub === 'passwd' ? await readPassword(values['password-file']) : undefined;
    return withStore(values.config, async (store) => {
      switch (sub) {
        case 'list':
          for (const u of await listUsers(store.db)) console.log([u.name, u.role, u.disabled ? 'disabled' : 'active', u.createdAt.toISOString()].join('\t'));
          return 0;
        case 'add':
          try {
            await addUser(store.db, name!, role!, password!);
          } catch (err) {
            if (err instanceof UserError) {
              console.error(err.message);
              return /exists/.test(err.message) ? 1 : 2;
            }
            throw err;
          }
          await audit(store.db, operator(), 'user.add', name!.toLowerCase(), { role });
          console.log(`added ${role} ${name!.toLowerCase()}`);
          return 0;
        case 'passwd':
        case 'disable':
        case 'enable':
        case 'remove': {
          const ok =
            sub === 'passwd' ? await setPassword(store.db, name!, password!)
            : sub === 'remove' ? await removeUser(store.db, name!)
            : await setDisabled(store.db, name!, sub === 'disable');
          if (!ok) {
            console.error(`no user ${name!.toLowerCase()}`);
            return 1;
          }
          await audit(store.db, operator(), `user.${sub}`, name!.toLowerCase());
          console.log(`${sub === 'passwd' ? 'password changed for' : `${sub}d`} ${name!.toLowerCase()}`);
          return 0;
        }
      }
      return 2;
    });
  },
};
