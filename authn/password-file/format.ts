import { createHash } from 'node:crypto';
import { Document, isMap, LineCounter, parseDocument, type Node } from 'yaml';
import { z } from 'zod';
import { BulwarkError } from '../../src/errors.js';
import { detectAlgorithm } from '../verify/password-hash.js';

/**
 * The password file is YAML:
 *
 * ```yaml
 * users:
 *   alice:
 *     hash: $argon2id$v=19$m=19456,t=2,p=1$...   # or $7$/$6$ from mosquitto_passwd, or $2b$ bcrypt
 *     groups: [sensors, lab]
 *     superuser: false
 * ```
 */
export interface PasswordFileUser {
  hash: string;
  groups: readonly string[];
  superuser: boolean;
  /** Where the entry starts, for messages. */
  line: number;
}

export interface PasswordFileContents {
  users: ReadonlyMap<string, PasswordFileUser>;
  /** SHA-256 of the file bytes, for reload events and to skip reloads of identical content. */
  digest: string;
}

// eslint-disable-next-line no-control-regex
const USERNAME = /^[^\u0000-\u001f\u007f]{1,256}$/u;

const userSchema = z
  .object({
    hash: z.string().refine((h) => detectAlgorithm(h) !== undefined, {
      message: 'hash must be an argon2 PHC string, a mosquitto_passwd $6$/$7$ hash or a bcrypt $2b$ hash',
    }),
    groups: z.array(z.string().min(1).max(256)).max(1_000).default([]),
    superuser: z.boolean().default(false),
  })
  .strict();

const fileSchema = z
  .object({
    users: z
      .record(z.string().regex(USERNAME, 'usernames are 1–256 characters without control characters'), userSchema)
      .default({}),
  })
  .strict();

export function digestOf(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Parses and validates the file; every problem is a BulwarkError carrying `file:line:column`. */
export function parsePasswordFile(text: string, file: string): PasswordFileContents {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const firstError = doc.errors[0];
  if (firstError) {
    const pos = firstError.linePos?.[0] ?? { line: 1, col: 1 };
    throw new BulwarkError('BULWARK_ERR_PASSWORD_FILE', `not valid YAML: ${firstError.message.split('\n')[0] ?? ''}`, {
      file,
      line: pos.line,
      column: pos.col,
    });
  }
  const parsed = fileSchema.safeParse(doc.toJS() ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = (issue?.path ?? []).map((p) => (typeof p === 'symbol' ? String(p) : p));
    const { line, column } = positionOf(doc, path, lineCounter);
    throw new BulwarkError(
      'BULWARK_ERR_PASSWORD_FILE',
      `${path.join('.') || 'file'}: ${issue?.message ?? 'invalid'}`,
      { file, line, column },
      'see docs/authentication.md#password-file for the format',
    );
  }
  const users = new Map<string, PasswordFileUser>();
  for (const [name, u] of Object.entries(parsed.data.users)) {
    users.set(name, {
      hash: u.hash,
      groups: u.groups,
      superuser: u.superuser,
      line: positionOf(doc, ['users', name], lineCounter).line,
    });
  }
  return { users, digest: digestOf(text) };
}

/** The closest node along `path` that exists, so a missing key points at its parent. */
function positionOf(
  doc: Document,
  path: readonly (string | number)[],
  lc: LineCounter,
): { line: number; column: number } {
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n), true) as Node | undefined;
    if (node && typeof node === 'object' && 'range' in node && node.range) {
      const p = lc.linePos(node.range[0]);
      return { line: p.line, column: p.col };
    }
  }
  return { line: 1, column: 1 };
}

/** Edits keep the operator's comments and ordering: the file is changed through the YAML document model. */
export function editPasswordFile(
  text: string,
  file: string,
  edit: (users: Map<string, { hash: string; groups?: readonly string[]; superuser?: boolean }>) => void,
): string {
  parsePasswordFile(text, file);
  const doc = text.trim() === '' ? new Document({ users: {} }) : parseDocument(text, { uniqueKeys: true });
  if (!isMap(doc.get('users', true))) doc.set('users', doc.createNode({}));
  const current = new Map<string, { hash: string; groups?: readonly string[]; superuser?: boolean }>();
  const js =
    (doc.toJS() as { users?: Record<string, { hash: string; groups?: string[]; superuser?: boolean }> }).users ?? {};
  for (const [k, v] of Object.entries(js)) current.set(k, v);
  const before = new Map(current);
  edit(current);
  for (const name of before.keys()) if (!current.has(name)) doc.deleteIn(['users', name]);
  for (const [name, entry] of current) {
    const old = before.get(name);
    if (old === entry) continue;
    doc.setIn(['users', name, 'hash'], entry.hash);
    if (entry.groups !== undefined)
      doc.setIn(['users', name, 'groups'], doc.createNode([...entry.groups], { flow: true }));
    if (entry.superuser !== undefined) doc.setIn(['users', name, 'superuser'], entry.superuser);
  }
  const out = doc.toString({ lineWidth: 0 });
  parsePasswordFile(out, file);
  return out;
}
