/**
 * Escaping for values substituted into LDAP filters and DNs. A user name is attacker-controlled: unescaped,
 * `*` or `)(uid=*` in a filter, or `,ou=admins` in a DN, would change which entry the directory selects.
 */

/**
 * RFC 4515 §3 assertion value: `*`, `(`, `)`, `\` and NUL must be written as `\2a`, `\28`, `\29`, `\5c`, `\00`.
 * Everything else may stay as UTF-8.
 */
export function escapeFilterValue(value: string): string {
  return value.replace(/[*()\\\0]/g, (c) => `\\${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/**
 * RFC 4514 §2.4 attribute value in a DN: `"`, `+`, `,`, `;`, `<`, `>`, `\` escaped with a backslash, NUL as
 * `\00`, a leading space or `#` and a trailing space escaped too.
 */
export function escapeDnValue(value: string): string {
  let out = value.replace(/[\\"+,;<>=]/g, (c) => `\\${c}`).replace(/\0/g, '\\00');
  if (out.startsWith(' ') || out.startsWith('#')) out = `\\${out}`;
  if (out.endsWith(' ') && !out.endsWith('\\ ')) out = `${out.slice(0, -1)}\\ `;
  return out;
}

/** The placeholders templates may use. */
export interface TemplateValues {
  username: string;
  clientid: string;
  /** The user's DN, for group filters. */
  dn?: string;
}

const PLACEHOLDER = /\$\{(username|clientid|dn)\}/g;

/** Replaces `${username}`, `${clientid}` and `${dn}` with escaped values; unknown placeholders stay literal. */
export function expandTemplate(template: string, values: TemplateValues, escape: (v: string) => string): string {
  return template.replace(PLACEHOLDER, (_m, name: keyof TemplateValues) => escape(values[name] ?? ''));
}

/** The placeholders a template uses, to validate configuration and to key caches on exactly what matters. */
export function templatePlaceholders(template: string): Set<string> {
  return new Set([...template.matchAll(PLACEHOLDER)].map((m) => m[1] ?? ''));
}
