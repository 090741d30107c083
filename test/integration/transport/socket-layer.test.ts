import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../../src/config/schema.js';
import { HandleSocket } from '../../../src/transport/handle-socket.js';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { startCliBroker } from '../../helpers/cli.js';

/** `listeners[].socket_layer`: which socket a tcp listener hands the broker, and that MQTT works the same on both. */
describe('socket_layer', () => {
  const brokers: TestBroker[] = [];
  afterAll(async () => {
    for (const b of brokers) await b.stop();
  });

  async function roundTrip(url: string, tag: string): Promise<string> {
    const sub = await mqtt.connectAsync(url, { clientId: `${tag}-sub`, protocolVersion: 5 });
    await sub.subscribeAsync(`${tag}/#`, { qos: 1 });
    const got = new Promise<string>((resolve) => sub.on('message', (_t, p) => resolve(p.toString())));
    const pub = await mqtt.connectAsync(url, { clientId: `${tag}-pub`, protocolVersion: 4 });
    await pub.publishAsync(`${tag}/x`, `over ${tag}`, { qos: 1 });
    const payload = await got;
    await pub.endAsync();
    await sub.endAsync();
    return payload;
  }

  const socketsOf = (broker: TestBroker): unknown[] => [...broker.server.broker.connections].map((c) => c.socket);

  it('by default a tcp listener drives its sockets directly, and clients publish and subscribe through it', async () => {
    const broker = await startBroker();
    brokers.push(broker);
    const held = await mqtt.connectAsync(broker.url, { clientId: 'held', protocolVersion: 5 });
    expect(socketsOf(broker).every((s) => s instanceof HandleSocket)).toBe(true);
    expect(socketsOf(broker)).toHaveLength(1);
    expect(await roundTrip(broker.url, 'direct')).toBe('over direct');
    await held.endAsync();
  });

  it('socket_layer: net uses net.Socket, with the same behaviour', async () => {
    const broker = await startBroker({ listener: { socket_layer: 'net' } });
    brokers.push(broker);
    const held = await mqtt.connectAsync(broker.url, { clientId: 'held', protocolVersion: 5 });
    expect(socketsOf(broker).every((s) => s instanceof net.Socket)).toBe(true);
    expect(await roundTrip(broker.url, 'streams')).toBe('over streams');
    await held.endAsync();
  });

  it('the client address policies and logs see is the same on both layers', async () => {
    for (const layer of ['direct', 'net']) {
      const broker = await startBroker({ listener: { socket_layer: layer } });
      brokers.push(broker);
      const client = await mqtt.connectAsync(broker.url, { clientId: `peer-${layer}`, protocolVersion: 5 });
      const connected = await broker.waitForAudit('authn.allowed');
      expect(connected.client?.ip).toBe('127.0.0.1');
      const connection = [...broker.server.broker.connections][0]!;
      expect(connection.peer.port).toBeGreaterThan(0);
      await client.endAsync();
    }
  });

  it('is refused where it does not apply: other transports, and direct with PROXY protocol', () => {
    const base = { transport: 'tcp', port: 1883 };
    const tlsListener = { transport: 'tls', port: 8883, tls: { cert_file: '/c', key_file: '/k' }, socket_layer: 'net' };
    const withProxy = {
      ...base,
      socket_layer: 'direct',
      proxy_protocol: { enabled: true, trusted_proxies: ['10.0.0.0/8'] },
    };
    const issues = (listener: Record<string, unknown>): string[] => {
      const r = configSchema.safeParse({ listeners: [listener] });
      return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    };
    expect(issues(tlsListener)).toEqual(['listeners.0.socket_layer: socket_layer applies to tcp listeners']);
    expect(issues(withProxy)).toEqual([
      'listeners.0.socket_layer: a listener with PROXY protocol reads its sockets through net: use socket_layer: net or leave it out',
    ]);
    expect(issues({ ...base, socket_layer: 'net', proxy_protocol: withProxy.proxy_protocol })).toEqual([]);
    expect(issues({ ...base, socket_layer: 'fast' })[0]).toMatch(/^listeners\.0\.socket_layer: /);
  });

  it('falls back to net, says why, and still serves clients when Node would warn about process.binding', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bulwark-socket-layer-'));
    const config = join(dir, 'bulwark.yaml');
    const yaml = (extra: string): string =>
      [
        `data_dir: ${join(dir, 'data')}`,
        'listeners:',
        '  - { name: plain, transport: tcp, host: 127.0.0.1, port: 0 }',
        'authentication: { anonymous: true }',
        'guard: { exempt_networks: [127.0.0.0/8] }',
        extra,
        '',
      ].join('\n');
    writeFileSync(config, yaml(''));
    const portOf = (output: string): string => /plain: tcp:\/\/127\.0\.0\.1:(\d+)/.exec(output)![1]!;

    const fallback = await startCliBroker(['-c', config], undefined, { NODE_PENDING_DEPRECATION: '1' });
    try {
      expect(await roundTrip(`mqtt://127.0.0.1:${portOf(fallback.output())}`, 'fallback')).toBe('over fallback');
      expect(fallback.output()).toContain('socket_layer direct is unavailable: using net');
      expect(fallback.output()).toContain('process.binding is deprecated under --pending-deprecation');
      expect(fallback.output()).not.toContain('DEP0111');
    } finally {
      fallback.child.kill('SIGTERM');
    }

    const direct = await startCliBroker(['-c', config]);
    try {
      expect(await roundTrip(`mqtt://127.0.0.1:${portOf(direct.output())}`, 'cli-direct')).toBe('over cli-direct');
      expect(direct.output()).not.toContain('socket_layer direct is unavailable');
      expect(direct.output()).not.toContain('DeprecationWarning');
    } finally {
      direct.child.kill('SIGTERM');
    }
  });
});
