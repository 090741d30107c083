import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfigText, localOnlyConfig } from '../../../src/config/load.js';
import { renderConfigurationReference } from '../../../src/config/reference.js';
import { BulwarkError } from '../../../src/errors.js';

describe('configuration', () => {
  it('docs/configuration.md is the reference generated from the schema (run `bulwark config reference`)', () => {
    const committed = readFileSync(resolve(import.meta.dirname, '../../../docs/configuration.md'), 'utf8');
    expect(committed).toBe(renderConfigurationReference());
  });

  it('the reference documents every top-level key and the authenticator types', () => {
    const text = renderConfigurationReference();
    for (const key of [
      'listeners[].tls.cert_file',
      'limits.max_packet_size',
      'persistence.durability',
      'audit',
      'guard',
      'authorization.policy_files',
    ]) {
      expect(text).toContain(`\`${key}`);
    }
    for (const type of ['password-file', 'jwt', 'postgres', 'mysql', 'x509', 'psk', 'ldap', 'scram'])
      expect(text).toContain(`type: ${type}`);
  });

  it('every setting the broker fills in when it is left out shows that default in the reference', () => {
    // A default applied only after a transform (durations, sizes) is invisible to the schema's input side, and the
    // reference showed such settings without one. Every leaf the parsed minimal configuration holds must have a
    // non-empty default cell in its row.
    const text = renderConfigurationReference();
    const defaultCell = new Map<string, string>();
    for (const line of text.split('\n')) {
      const cells = /^\| `([^`]+)` \|.*?\| ([^|]*) \| /.exec(line.replace(/\\\|/g, '/'));
      if (cells) defaultCell.set(cells[1] as string, (cells[2] as string).trim());
    }
    const parsed = parseConfigText('listeners:\n  - port: 1883\n', 'bulwark.yaml') as unknown as Record<
      string,
      unknown
    >;
    const missing: string[] = [];
    const walk = (value: unknown, path: string): void => {
      if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
        for (const [key, child] of Object.entries(value)) walk(child, path ? `${path}.${key}` : key);
        return;
      }
      if (value === undefined || !defaultCell.has(path)) return;
      if (defaultCell.get(path) === '') missing.push(path);
    };
    const { listeners: _listeners, ...rest } = parsed;
    walk(rest, '');
    expect(missing).toEqual([]);
    expect(defaultCell.get('audit.batch_delay')).toBe('`"5ms"`');
  });

  it('accepts use_ssl_tlv_cn on a tcp listener behind trusted proxies', () => {
    const config = parseConfigText(
      'listeners:\n  - port: 1883\n    proxy_protocol:\n      enabled: true\n      trusted_proxies: [10.0.0.1]\n      use_ssl_tlv_cn: true\n',
      'bulwark.yaml',
    );
    expect(config.listeners[0]?.proxy_protocol?.use_ssl_tlv_cn).toBe(true);
  });

  it('the local-only default listens on 127.0.0.1:1883 with anonymous clients, in sync durability', () => {
    const config = localOnlyConfig();
    expect(config.listeners).toHaveLength(1);
    expect(config.listeners[0]).toMatchObject({ host: '127.0.0.1', port: 1883, transport: 'tcp' });
    expect((config.authentication as { anonymous: boolean }).anonymous).toBe(true);
    expect(config.persistence.durability).toBe('sync');
    expect(config.data_dir).toBe('./data');
  });

  it.each([
    ['listeners:\n  - port: 70000\n', 'bulwark.yaml:2:11', 'listeners.0.port'],
    ['listeners:\n  - port: 1883\n    transport: tls\n', 'bulwark.yaml:2:5', 'listeners.0.tls'],
    [
      'listeners:\n  - port: 1883\npersistence:\n  durability: sometimes\n',
      'bulwark.yaml:4:15',
      'persistence.durability',
    ],
    ['listeners: []\n', 'bulwark.yaml:1:1', 'listeners'],
    [
      'listeners:\n  - port: 1883\n    proxy_protocol:\n      enabled: true\n      trusted_proxies:\n        - 10.0.0.0/8\n        - 10.0.0.1/8\n',
      'bulwark.yaml:7:11',
      'has host bits set; the network is 10.0.0.0/8',
    ],
    [
      'listeners:\n  - port: 1883\n    proxy_protocol:\n      enabled: true\n      trusted_proxies: [lb.example]\n',
      'bulwark.yaml:5',
      'is not an IP address or CIDR',
    ],
    [
      'listeners:\n  - port: 1883\n    transport: tls\n    tls: { cert_file: c.pem, key_file: k.pem }\n    proxy_protocol:\n      enabled: true\n      trusted_proxies: [10.0.0.1]\n      use_ssl_tlv_cn: true\n',
      'bulwark.yaml:8:23',
      'on a tls listener the broker verifies the client certificate itself: remove use_ssl_tlv_cn',
    ],
    [
      'listeners:\n  - port: 1883\n    proxy_protocol:\n      enabled: false\n      trusted_proxies: [10.0.0.1]\n      use_ssl_tlv_cn: true\n',
      'bulwark.yaml:6:23',
      'use_ssl_tlv_cn needs proxy_protocol.enabled: true',
    ],
    [
      'listeners:\n  - port: 1883\n    proxy_protocol:\n      enabled: true\n      trusted_proxies: [10.0.0.1]\n      versions: [1]\n      use_ssl_tlv_cn: true\n',
      'bulwark.yaml:7:23',
      'use_ssl_tlv_cn reads the PROXY v2 SSL TLV: add 2 to versions',
    ],
    [
      'listeners:\n  - port: 1883\n    transport: ws\n    proxy_protocol:\n      enabled: true\n      trusted_proxies: [10.0.0.1]\n      use_ssl_tlv_cn: true\n',
      'bulwark.yaml:4:5',
      'PROXY protocol is supported on tcp and tls listeners',
    ],
    [
      'listeners:\n  - port: 1883\n    tls:\n      cert_file: c.pem\n      key_file: k.pem\n      require_certificate: true\n',
      'bulwark.yaml:3:5',
      'a tcp listener does not use tls; set transport: tls',
    ],
    [
      'listeners:\n  - port: 1883\n    transport: ws\n    tls:\n      cert_file: c.pem\n      key_file: k.pem\n',
      'bulwark.yaml:4:5',
      'a ws listener does not use tls; set transport: wss',
    ],
    [
      'listeners:\n  - port: 1883\nauthentication:\n  steps:\n    - type: kerberos\n',
      'bulwark.yaml:5',
      'authentication.steps.0',
    ],
  ])('refuses %j at %s naming %s', (text, where, key) => {
    try {
      parseConfigText(text, 'bulwark.yaml');
      expect.unreachable('the configuration must be refused');
    } catch (error) {
      expect(error).toBeInstanceOf(BulwarkError);
      const described = (error as BulwarkError).describe();
      expect(described).toContain(where);
      expect(described).toContain(key);
    }
  });
});
