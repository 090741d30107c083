import { z } from 'zod';
import { configSchema } from './schema.js';

interface JsonSchemaNode {
  type?: string | string[];
  description?: string;
  default?: unknown;
  enum?: unknown[];
  const?: unknown;
  properties?: Record<string, JsonSchemaNode>;
  items?: JsonSchemaNode;
  anyOf?: JsonSchemaNode[];
  oneOf?: JsonSchemaNode[];
  minimum?: number;
  maximum?: number;
}

function typeOf(node: JsonSchemaNode): string {
  if (node.enum) return node.enum.map((v) => `\`${String(v)}\``).join(' \\| ');
  if (node.const !== undefined) return `\`${String(node.const)}\``;
  const alternatives = node.anyOf ?? node.oneOf;
  if (alternatives) return alternatives.map(typeOf).join(' \\| ');
  const type = Array.isArray(node.type) ? node.type.join(' \\| ') : (node.type ?? 'any');
  if (type === 'array' && node.items) return `list of ${typeOf(node.items)}`;
  const range =
    node.minimum !== undefined || node.maximum !== undefined ? ` (${node.minimum ?? '…'}–${node.maximum ?? '…'})` : '';
  return `${type}${range}`;
}

function defaultOf(node: JsonSchemaNode): string {
  if (node.default === undefined) return '';
  const value = JSON.stringify(node.default);
  return value.length > 60 ? '(see below)' : `\`${value}\``;
}

function escape(text: string | undefined): string {
  return (text ?? '').replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/**
 * The configuration reference, generated from the zod schema so it cannot drift from what the broker accepts.
 * `docs/configuration.md` is this text; a test fails when they differ (regenerate with `bulwark config reference`).
 */
export function renderConfigurationReference(): string {
  const root = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchemaNode;
  const rows: string[] = [];
  const unions: string[] = [];
  const walk = (node: JsonSchemaNode, path: string): void => {
    if (path) rows.push(`| \`${path}\` | ${typeOf(node)} | ${defaultOf(node)} | ${escape(node.description)} |`);
    if (node.properties) {
      for (const [key, child] of Object.entries(node.properties)) walk(child, path ? `${path}.${key}` : key);
    }
    if (node.items?.properties) walk({ ...node.items, description: undefined, type: undefined }, `${path}[]`);
    const variants = node.items?.anyOf ?? node.items?.oneOf;
    if (variants && variants.some((v) => v.properties?.type?.const !== undefined)) {
      for (const variant of variants) {
        const kind = variant.properties?.type?.const;
        if (kind === undefined) continue;
        unions.push(
          `\n### \`${path}[]\` with \`type: ${String(kind)}\`\n\n| key | type | default | meaning |\n| --- | --- | --- | --- |`,
        );
        for (const [key, child] of Object.entries(variant.properties ?? {})) {
          unions.push(`| \`${key}\` | ${typeOf(child)} | ${defaultOf(child)} | ${escape(child.description)} |`);
        }
      }
    }
  };
  walk(root, '');
  return [
    '# Configuration reference',
    '',
    'Generated from the configuration schema (`src/config/schema.ts`) by `bulwark config reference`; do not edit by hand.',
    'A configuration file is YAML. Unknown keys are errors, and every error names `file:line:column` and the key.',
    "Check a file without starting the broker with `bulwark config check FILE`: besides the schema it reads what `bulwark start` reads before it opens a port (every file a setting names, the password, PSK and SCRAM credential files and the persisted block list parsed, the policy files and their cases, each TLS listener's certificate, key, CA bundle and CRLs), and refuses what start would refuse there. It does not contact databases, directories, identity providers or OCSP responders.",
    '',
    '| key | type | default | meaning |',
    '| --- | --- | --- | --- |',
    ...rows,
    ...(unions.length > 0 ? ['', '## Members of lists with a `type`', ...unions] : []),
    '',
  ].join('\n');
}
