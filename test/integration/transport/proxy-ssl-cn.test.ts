import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { V2_SIGNATURE } from '../../../src/transport/proxy-protocol.js';
import { startBroker, type TestBroker } from '../../helpers/broker.js';

/**
 * `proxy_protocol.use_ssl_tlv_cn` against a real broker: 127.0.0.1 plays HAProxy with `send-proxy-v2-ssl-cn`,
 * writing a hand-built PROXY v2 header with a PP2_TYPE_SSL TLV, then a real MQTT client speaks on the same socket.
 */

function tlv(type: number, value: Buffer): Buffer {
  const head = Buffer.alloc(3);
  head[0] = type;
  head.writeUInt16BE(value.length, 1);
  return Buffer.concat([head, value]);
}

/** PP2_TYPE_SSL: `client` bits (0x01 SSL, 0x02 certificate on this connection), `verify` (0 = verified), CN. */
function sslTlv(client: number, verify: number, cn: string | undefined): Buffer {
  const fixed = Buffer.alloc(5);
  fixed[0] = client;
  fixed.writeUInt32BE(verify, 1);
  const version = tlv(0x21, Buffer.from('TLSv1.3'));
  return tlv(0x20, Buffer.concat([fixed, version, ...(cn === undefined ? [] : [tlv(0x22, Buffer.from(cn))])]));
}

/** A v2 PROXY header for TCP over IPv4 from 203.0.113.7:50000 to 10.0.0.1:1883, with these TLVs. */
function proxyV2(tlvs: Buffer[]): Buffer {
  const address = Buffer.from([203, 0, 113, 7, 10, 0, 0, 1, 0xc3, 0x50, 0x07, 0x5b]);
  const body = Buffer.concat([address, ...tlvs]);
  const fixed = Buffer.from([0x21, 0x11, 0, 0]);
  fixed.writeUInt16BE(body.length, 2);
  return Buffer.concat([V2_SIGNATURE, fixed, body]);
}

const VERIFIED = 0x01 | 0x02;

/** Opens a socket to the broker, sends the PROXY header, and runs an MQTT 5 client over that socket. */
async function connectThroughProxy(
  broker: TestBroker,
  header: Buffer,
  clientId: string,
): Promise<{ client: mqtt.MqttClient; connected: boolean; reasonCode?: number }> {
  const socket = net.connect(broker.port, '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.write(header);
  const client = new mqtt.MqttClient(() => socket, { clientId, protocolVersion: 5, reconnectPeriod: 0 });
  client.on('error', () => undefined);
  return new Promise((resolve) => {
    client.once('connect', () => resolve({ client, connected: true }));
    client.once('error', (error) =>
      resolve({ client, connected: false, reasonCode: (error as { code?: number }).code }),
    );
    client.once('close', () => resolve({ client, connected: false }));
  });
}

describe('PROXY v2 SSL TLV CN as the client certificate identity (use_ssl_tlv_cn)', () => {
  let dir: string;
  let broker: TestBroker;
  let off: TestBroker;
  let untrusted: TestBroker;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bulwark-tlvcn-'));
    const policy = join(dir, 'cn.policy.yaml');
    writeFileSync(
      policy,
      [
        'version: 1',
        'rules:',
        '  - name: alice-connects',
        '    allow: connect',
        '    subjects: { users: [alice] }',
        '  - name: own-topics',
        '    allow: publish',
        '    subjects: { authenticators: [x509] }',
        "    topics: ['devices/${username}/#']",
        '',
      ].join('\n'),
    );
    const config = { authorization: { policy_files: [policy] } };
    const authentication = {
      anonymous: false,
      steps: [{ type: 'x509', identity_source: 'cn', use_as_username: true }],
    };
    const proxyProtocol = { enabled: true, trusted_proxies: ['127.0.0.1/32'] };
    broker = await startBroker({
      config,
      listener: { transport: 'tcp', authentication, proxy_protocol: { ...proxyProtocol, use_ssl_tlv_cn: true } },
    });
    off = await startBroker({
      config,
      listener: { transport: 'tcp', authentication, proxy_protocol: proxyProtocol },
    });
    untrusted = await startBroker({
      config,
      listener: {
        transport: 'tcp',
        authentication,
        proxy_protocol: { enabled: true, trusted_proxies: ['192.0.2.1/32'], use_ssl_tlv_cn: true },
      },
    });
  });
  afterAll(async () => {
    for (const b of [broker, off, untrusted]) await b?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a verified CN authenticates through x509 as the username, which policies see, and the audit names the proxy', async () => {
    const { client, connected } = await connectThroughProxy(broker, proxyV2([sslTlv(VERIFIED, 0, 'alice')]), 'cn-1');
    expect(connected).toBe(true);
    const allowed = await broker.waitForAudit('authn.allowed', (e) => e.mqtt?.client_id === 'cn-1');
    expect(allowed.authn?.by).toBe('x509');
    expect(allowed.user?.name).toBe('alice');
    expect(allowed.client?.ip).toBe('203.0.113.7');
    expect(allowed.tls).toEqual({ source: 'proxy', subject: 'CN=alice' });
    // `devices/${username}/#` is alice's own subtree: the CN reached the policy as the username.
    await client.publishAsync('devices/alice/t', 'x', { qos: 1 });
    await expect(client.publishAsync('devices/bob/t', 'x', { qos: 1 })).rejects.toThrow();
    const denied = await broker.waitForAudit('authz.publish_denied', (e) => e.mqtt?.client_id === 'cn-1');
    expect(denied.user?.name).toBe('alice');
    await client.endAsync();
  });

  it('a denied attempt with a proxy-reported certificate is recorded with the proxy as its source', async () => {
    // bob's certificate is verified by the proxy; the policy lets only alice connect.
    const { client, connected } = await connectThroughProxy(broker, proxyV2([sslTlv(VERIFIED, 0, 'bob')]), 'cn-2');
    expect(connected).toBe(false);
    const event = await broker.waitForAudit('authz.connect_denied', (e) => e.mqtt?.client_id === 'cn-2');
    expect(event.user?.name).toBe('bob');
    expect(event.tls).toEqual({ source: 'proxy', subject: 'CN=bob' });
    const denied = await broker.waitForAudit('authn.denied', (e) => e.mqtt?.client_id === 'cn-2');
    expect(denied.authn?.steps).toEqual([expect.objectContaining({ type: 'x509', answer: 'allow' })]);
    expect(denied.tls).toEqual({ source: 'proxy', subject: 'CN=bob' });
    client.end(true);
  });

  it.each([
    ['the proxy could not verify the certificate (verify != 0)', sslTlv(VERIFIED, 1, 'alice'), 'cn-3'],
    ['no client certificate was presented', sslTlv(0x01, 0, 'alice'), 'cn-4'],
    ['the client did not use TLS', sslTlv(0x00, 0, 'alice'), 'cn-5'],
    ['there is no SSL TLV', undefined, 'cn-6'],
  ])('%s: no certificate identity, the x509 step answers "not mine"', async (_what, ssl, clientId) => {
    const header = proxyV2(ssl === undefined ? [] : [ssl]);
    const { client, connected } = await connectThroughProxy(broker, header, clientId);
    expect(connected).toBe(false);
    const denied = await broker.waitForAudit('authn.denied', (e) => e.mqtt?.client_id === clientId);
    expect(denied.authn?.steps).toEqual([expect.objectContaining({ type: 'x509', answer: 'ignore' })]);
    expect(denied.tls).toBeUndefined();
    client.end(true);
  });

  it('without use_ssl_tlv_cn a verified CN gives no certificate identity', async () => {
    const { client, connected } = await connectThroughProxy(off, proxyV2([sslTlv(VERIFIED, 0, 'alice')]), 'cn-7');
    expect(connected).toBe(false);
    const denied = await off.waitForAudit('authn.denied', (e) => e.mqtt?.client_id === 'cn-7');
    expect(denied.authn?.steps).toEqual([expect.objectContaining({ type: 'x509', answer: 'ignore' })]);
    client.end(true);
  });

  it('a peer that is not a trusted proxy cannot report a CN: it is refused before authentication', async () => {
    const { client, connected } = await connectThroughProxy(untrusted, proxyV2([sslTlv(VERIFIED, 0, 'alice')]), 'cn-8');
    expect(connected).toBe(false);
    const refused = await untrusted.waitForAudit('proxy.header_refused');
    expect(refused.event.code).toBe('untrusted_proxy');
    expect(untrusted.audit.events.some((e) => e.event.action.startsWith('authn.'))).toBe(false);
    client.end(true);
  });
});
