import type { Client, Entry } from 'ldapts';
import { escapeFilterValue, expandTemplate } from './escape.js';

/** How group membership is recorded in the directory. */
export type GroupSchema = 'groupOfNames' | 'groupOfUniqueNames' | 'posixGroup' | 'memberOf';

export interface GroupSettings {
  baseDn: string;
  schemas: readonly GroupSchema[];
  /** Attribute holding a group's name (default `cn`); also the RDN read from `memberOf` values. */
  nameAttribute: string;
  /** Replaces the per-schema filters; `${dn}`, `${username}`, `${clientid}` are RFC 4515-escaped. */
  filter: string | undefined;
  maxGroups: number;
}

export interface UserEntry {
  dn: string;
  username: string;
  clientId: string;
  /** The entry's attributes as read; `memberOf` and `uid` among them when needed. */
  attributes: Record<string, string[]>;
}

/** Filters per schema; the member value is the user's DN, or for posixGroup the user's uid. */
function schemaFilter(schema: Exclude<GroupSchema, 'memberOf'>, user: UserEntry): string {
  switch (schema) {
    case 'groupOfNames':
      return `(&(objectClass=groupOfNames)(member=${escapeFilterValue(user.dn)}))`;
    case 'groupOfUniqueNames':
      return `(&(objectClass=groupOfUniqueNames)(uniqueMember=${escapeFilterValue(user.dn)}))`;
    case 'posixGroup':
      return `(&(objectClass=posixGroup)(memberUid=${escapeFilterValue(user.attributes.uid?.[0] ?? user.username)}))`;
  }
}

/** The value of the first RDN if its attribute is `nameAttribute`: `cn=ops,ou=groups,...` → `ops`. */
export function groupNameFromDn(dn: string, nameAttribute: string): string | undefined {
  const m = /^\s*([^=,\s]+)\s*=\s*((?:\\.|[^,+\\])*)/.exec(dn);
  if (!m || m[1]?.toLowerCase() !== nameAttribute.toLowerCase()) return undefined;
  return (m[2] ?? '')
    .trim()
    .replace(/\\([0-9a-fA-F]{2})/g, (_x, h: string) => String.fromCharCode(parseInt(h, 16)))
    .replace(/\\(.)/g, '$1');
}

/** Reads all values of an attribute as strings, whatever shape ldapts returned. */
export function stringValues(entry: Entry, attribute: string): string[] {
  const key = Object.keys(entry).find((k) => k.toLowerCase() === attribute.toLowerCase());
  const raw = key === undefined ? undefined : entry[key];
  const list = Array.isArray(raw) ? raw : raw === undefined ? [] : [raw];
  return list.map((v) => (Buffer.isBuffer(v) ? v.toString('utf8') : String(v)));
}

/** Resolves the user's groups for every configured schema; the union, sorted, without duplicates. */
export async function lookupGroups(client: Client, settings: GroupSettings, user: UserEntry): Promise<string[]> {
  const names = new Set<string>();
  const filters: string[] = [];
  if (settings.filter !== undefined) {
    filters.push(
      expandTemplate(
        settings.filter,
        { username: user.username, clientid: user.clientId, dn: user.dn },
        escapeFilterValue,
      ),
    );
  } else {
    for (const schema of settings.schemas) {
      if (schema === 'memberOf') {
        for (const dn of user.attributes.memberof ?? []) {
          const name = groupNameFromDn(dn, settings.nameAttribute);
          if (name !== undefined) names.add(name);
        }
      } else {
        filters.push(schemaFilter(schema, user));
      }
    }
  }
  if (filters.length > 0) {
    const filter = filters.length === 1 ? (filters[0] ?? '') : `(|${filters.join('')})`;
    const { searchEntries } = await client.search(settings.baseDn, {
      scope: 'sub',
      filter,
      attributes: [settings.nameAttribute],
      sizeLimit: settings.maxGroups,
    });
    for (const entry of searchEntries) {
      for (const name of stringValues(entry, settings.nameAttribute)) names.add(name);
    }
  }
  return [...names].sort();
}
