import { readFileSync } from 'node:fs';
import { isMap, isSeq, LineCounter, parseDocument, type Node as YamlNode } from 'yaml';
import type { z } from 'zod';
import { BulwarkError, type SourcePosition } from '../errors.js';
import { configSchema, type BrokerConfig } from './schema.js';

/** The configuration used when `bulwark start` gets no file: Mosquitto 2's local-only default. */
export function localOnlyConfig(): BrokerConfig {
  return configSchema.parse({
    listeners: [{ name: 'local', transport: 'tcp', host: '127.0.0.1', port: 1883 }],
    // Only the loopback listener exists, so anonymous clients are allowed only there (Mosquitto 2's default).
    authentication: { anonymous: true },
    // Every client of the local-only mode is on loopback: counting them as one flapping address would lock out
    // a developer's test scripts. The block list still applies.
    guard: { exempt_networks: ['127.0.0.0/8', '::1/128'] },
  });
}

/** Reads and validates a YAML file; every problem is reported as `file:line:column`, the key and what is wrong. */
export function loadConfigFile(file: string): BrokerConfig {
  return parseConfigText(readConfigFile(file).toString('utf8'), file);
}

/** The file's bytes, for callers that must parse and hash the very same content (`bulwark start`, SIGHUP). */
export function readConfigFile(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new BulwarkError('BULWARK_ERR_CONFIG_PARSE', `cannot read configuration: ${(error as Error).message}`, {
      file,
      line: 0,
      column: 0,
    });
  }
}

export function parseConfigText(text: string, file: string): BrokerConfig {
  return parseYamlWithSchema(text, file, configSchema, 'BULWARK_ERR_CONFIG_INVALID');
}

/**
 * Parses YAML and validates it with a zod schema, mapping the first problem's path back to the source position.
 * Shared by the broker configuration and any other YAML the broker reads.
 */
export function parseYamlWithSchema<S extends z.ZodType>(
  text: string,
  file: string,
  schema: S,
  code: 'BULWARK_ERR_CONFIG_INVALID' | 'BULWARK_ERR_POLICY_INVALID',
): z.infer<S> {
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (document.errors.length > 0) {
    const first = document.errors[0]!;
    const pos = lineCounter.linePos(first.pos[0]);
    throw new BulwarkError('BULWARK_ERR_CONFIG_PARSE', `YAML syntax error: ${first.message.split('\n')[0]}`, {
      file,
      line: pos.line,
      column: pos.col,
    });
  }
  const result = schema.safeParse(document.toJS() ?? {});
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const path = issue.path.filter((p): p is string | number => typeof p !== 'symbol');
  if (issue.code === 'unrecognized_keys') {
    // zod reports unknown keys at the object that holds them; the operator needs the line of the misspelt key.
    const [first, ...others] = issue.keys;
    const keyPath = [...path, first!];
    const also = others.length > 0 ? `; also unknown here: ${others.join(', ')}` : '';
    throw new BulwarkError(
      code,
      `${keyPath.join('.')}: unknown key${also}`,
      positionOf(document.contents, keyPath, lineCounter, file, 'key'),
      'see docs/configuration.md',
    );
  }
  const position = positionOf(document.contents, path, lineCounter, file, 'value');
  const key = path.length > 0 ? path.join('.') : '(top level)';
  throw new BulwarkError(code, `${key}: ${issue.message}`, position, 'see docs/configuration.md');
}

/** Where the value at `path` is written in a configuration's text, for problems found after validation. */
export function configValuePosition(text: string, file: string, path: readonly (string | number)[]): SourcePosition {
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { lineCounter, prettyErrors: false });
  return positionOf(document.contents, path, lineCounter, file, 'value');
}

/** Where `path` is in the document: the last key itself (`'key'`), or its scalar value when it has one. */
function positionOf(
  root: unknown,
  path: readonly (string | number)[],
  lineCounter: LineCounter,
  file: string,
  target: 'key' | 'value',
): SourcePosition {
  let node: unknown = root;
  let best: YamlNode | undefined = isNode(root) ? root : undefined;
  for (const [index, segment] of path.entries()) {
    if (isMap(node)) {
      const pair = node.items.find((item) => {
        const k = item.key as { value?: unknown } | null;
        return k !== null && k !== undefined && String(k.value ?? k) === String(segment);
      });
      if (!pair) break;
      const keyNode = pair.key;
      if (isNode(keyNode)) best = keyNode;
      node = pair.value;
      if (target === 'key' && index === path.length - 1) break;
      if (isNode(node) && !isMap(node) && !isSeq(node)) best = node;
    } else if (isSeq(node) && typeof segment === 'number') {
      node = node.items[segment];
      if (isNode(node)) best = node;
    } else break;
  }
  const offset = best?.range?.[0] ?? 0;
  const pos = lineCounter.linePos(offset);
  return { file, line: pos.line, column: pos.col };
}

function isNode(value: unknown): value is YamlNode {
  return typeof value === 'object' && value !== null && 'range' in value;
}
