import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { mintTestPki, type TestPki } from '../../helpers/certs.js';

/** End-to-end listener tests: real TLS handshakes from mqtt.js and mosquitto clients into a real broker. */
describe('TLS, mTLS, PSK, WSS and PROXY listeners', () => {
  let pki: TestPki;
  let mtls: TestBroker;
  let strict: TestBroker;
  let psk: TestBroker;
  let strictPsk: TestBroker;
  let wss: TestBroker;
  let proxied: TestBroker;
  const pskKey = '0123456789abcdef0123456789abcdef';

  beforeAll(async () => {
    pki = await mintTestPki();
    const tls = {
      cert_file: pki.server.certFile,
      key_file: pki.server.keyFile,
      ca_file: pki.caFile,
      crl_file: pki.crlFile,
    };
    const x509Chain = { anonymous: false, steps: [{ type: 'x509', identity_source: 'cn' }] };
    // Certificate clients, and anonymous clients whose PROXY header names the documentation network, may connect.
    const connectPolicy = join(pki.dir, 'connect.policy.yaml');
    writeFileSync(
      connectPolicy,
      [
        'version: 1',
        'rules:',
        '  - name: certificate-clients-connect',
        '    allow: connect',
        '    subjects: { authenticators: [x509] }',
        '  - name: proxied-clients-connect',
        '    allow: connect',
        '    subjects: { anonymous: true, addresses: [203.0.113.0/24] }',
        '',
      ].join('\n'),
    );
    const withConnectPolicy = { authorization: { policy_files: [connectPolicy] } };
    mtls = await startBroker({
      config: withConnectPolicy,
      listener: { transport: 'tls', tls, authentication: x509Chain },
    });
    strict = await startBroker({
      config: withConnectPolicy,
      listener: { transport: 'tls', tls: { ...tls, require_certificate: true }, authentication: x509Chain },
    });
    const pskFile = join(pki.dir, 'psk.txt');
    writeFileSync(pskFile, `# identity:key\ndevice-7:${pskKey}\n`);
    const policy = join(pki.dir, 'psk.policy.yaml');
    writeFileSync(
      policy,
      [
        'version: 1',
        'rules:',
        '  - name: devices-connect',
        '    allow: connect',
        '    subjects: { users: [device-7] }',
        '  - name: devices-publish',
        '    allow: publish',
        '    subjects: { users: [device-7] }',
        "    topics: ['psk/#']",
        '',
      ].join('\n'),
    );
    psk = await startBroker({
      config: { authorization: { policy_files: [policy] } },
      listener: {
        transport: 'tls',
        tls: { cert_file: pki.server.certFile, key_file: pki.server.keyFile },
        psk: { file: pskFile },
        authentication: { anonymous: false, steps: [{ type: 'psk', use_identity_as_username: true }] },
      },
    });
    strictPsk = await startBroker({
      config: { authorization: { policy_files: [policy] } },
      listener: {
        transport: 'tls',
        tls: { ...tls, require_certificate: true },
        psk: { file: pskFile },
        authentication: { anonymous: true, steps: [{ type: 'psk', use_identity_as_username: true }] },
      },
    });
    wss = await startBroker({
      listener: { transport: 'wss', tls: { cert_file: pki.server.certFile, key_file: pki.server.keyFile } },
    });
    proxied = await startBroker({
      config: withConnectPolicy,
      listener: { transport: 'tcp', proxy_protocol: { enabled: true, trusted_proxies: ['127.0.0.1/32'] } },
    });
  });
  afterAll(async () => {
    for (const b of [mtls, strict, psk, strictPsk, wss, proxied]) await b?.stop();
    pki?.cleanup();
  });

  const tlsOptions = (client?: { certFile: string; keyFile: string }): mqtt.IClientOptions => ({
    ca: readFileSync(pki.caFile),
    ...(client ? { cert: readFileSync(client.certFile), key: readFileSync(client.keyFile) } : {}),
    rejectUnauthorized: true,
    servername: 'localhost',
    reconnectPeriod: 0,
  });

  it('an mTLS client is authenticated by its certificate CN, which policies and the audit log see', async () => {
    const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${mtls.port}`, {
      ...tlsOptions(pki.clients.good),
      clientId: 'cert-client',
      protocolVersion: 5,
    });
    const allowed = await mtls.waitForAudit('authn.allowed', (e) => e.mqtt?.client_id === 'cert-client');
    expect(allowed.authn?.by).toBe('x509');
    expect(allowed.user?.name).toBe('sensor-1');
    await client.endAsync();
  });

  it.each([
    ['expired', 'expired'],
    ['revoked', 'revoked'],
    ['otherCa', 'unknown_ca'],
  ] as const)('a %s certificate is refused at TLS with its recorded reason (%s)', async (which, refusal) => {
    const client = mqtt.connect(`mqtts://127.0.0.1:${strict.port}`, {
      ...tlsOptions(pki.clients[which]),
      clientId: `bad-${which}`,
    });
    client.on('error', () => undefined);
    let connected = false;
    client.on('connect', () => (connected = true));
    await new Promise<void>((resolve) => client.once('close', () => resolve()));
    client.end(true);
    expect(connected).toBe(false);
    const event = await strict.waitForAudit('tls.handshake_refused', (e) => e.event.code === refusal);
    expect(event.tls?.error).toBeTruthy();
    expect(
      strict.audit.events.some((e) => e.event.action === 'authn.allowed' && e.mqtt?.client_id === `bad-${which}`),
    ).toBe(false);
  });

  it('without require_certificate, the x509 step denies a revoked certificate with CONNACK 0x87 and says why', async () => {
    const client = mqtt.connect(`mqtts://127.0.0.1:${mtls.port}`, {
      ...tlsOptions(pki.clients.revoked),
      clientId: 'revoked-v5',
      protocolVersion: 5,
    });
    const error = await new Promise<Error & { code?: number }>((resolve) => client.once('error', resolve));
    expect(error.code).toBe(0x87);
    const denied = await mtls.waitForAudit('authn.denied', (e) => e.mqtt?.client_id === 'revoked-v5');
    expect(denied.event.reason ?? JSON.stringify(denied.authn)).toMatch(/revoked|CERT_REVOKED/i);
    client.end(true);
  });

  it('mosquitto_pub with --cafile/--cert/--key is authenticated by its certificate; without a certificate it is refused', async () => {
    const run = (args: string[]): Promise<number | null> =>
      new Promise((resolve) => {
        const child = spawn('mosquitto_pub', [
          '-h',
          'localhost',
          '-p',
          String(mtls.port),
          '--cafile',
          pki.caFile,
          '-t',
          'mtls/x',
          '-m',
          'hi',
          ...args,
        ]);
        child.on('exit', resolve);
      });
    await run(['--cert', pki.clients.good.certFile, '--key', pki.clients.good.keyFile, '-i', 'mosq-cert']);
    const allowed = await mtls.waitForAudit('authn.allowed', (e) => e.mqtt?.client_id === 'mosq-cert');
    expect(allowed.authn?.by).toBe('x509');
    expect(await run(['-i', 'mosq-nocert', '-V', 'mqttv5'])).not.toBe(0);
    const denied = await mtls.waitForAudit('authn.denied', (e) => e.mqtt?.client_id === 'mosq-nocert');
    expect(denied.event.code).toBe('notAuthorized');
  });

  it('mosquitto_pub connects with --psk and the PSK identity becomes the username', async () => {
    const code = await new Promise<number | null>((resolve) => {
      const child = spawn('mosquitto_pub', [
        '-h',
        '127.0.0.1',
        '-p',
        String(psk.port),
        '--psk',
        pskKey,
        '--psk-identity',
        'device-7',
        '-t',
        'psk/x',
        '-m',
        'hi',
        '-i',
        'psk-pub',
        '-q',
        '1',
      ]);
      child.stderr.on('data', (d: Buffer) => process.stderr.write(`mosquitto_pub: ${d.toString()}`));
      child.on('exit', resolve);
    });
    expect(code).toBe(0);
    const allowed = await psk.waitForAudit('authn.allowed', (e) => e.mqtt?.client_id === 'psk-pub');
    expect(allowed.user?.name).toBe('device-7');
    expect(allowed.authn?.by).toBe('psk');
  });

  it('mosquitto_pub with a wrong PSK key fails the handshake, which is recorded', async () => {
    const code = await new Promise<number | null>((resolve) => {
      const child = spawn('mosquitto_pub', [
        '-h',
        '127.0.0.1',
        '-p',
        String(psk.port),
        '--psk',
        'ffff' + pskKey.slice(4),
        '--psk-identity',
        'device-7',
        '-t',
        'psk/x',
        '-m',
        'hi',
        '-i',
        'psk-bad',
      ]);
      child.on('exit', resolve);
    });
    expect(code).not.toBe(0);
    expect(psk.audit.events.some((e) => e.event.action === 'authn.allowed' && e.mqtt?.client_id === 'psk-bad')).toBe(
      false,
    );
  });

  const pskConnect = (
    broker: TestBroker,
    clientId: string,
    key: Buffer,
    tlsVersion: 'TLSv1.2' | 'TLSv1.3',
    ciphers: string,
  ): Promise<boolean> => {
    // mqtt.js hands the TLS options to tls.connect; its own type does not list them.
    const options: mqtt.IClientOptions & tls.ConnectionOptions = {
      clientId,
      reconnectPeriod: 0,
      rejectUnauthorized: false,
      minVersion: tlsVersion,
      maxVersion: tlsVersion,
      ciphers,
      pskCallback: () => ({ identity: 'device-7', psk: key }),
    };
    const client = mqtt.connect(`mqtts://127.0.0.1:${broker.port}`, options);
    client.on('error', () => undefined);
    return new Promise<boolean>((resolve) => {
      client.once('connect', () => {
        client.end(true);
        resolve(true);
      });
      client.once('close', () => {
        client.end(true);
        resolve(false);
      });
    });
  };

  it.each([
    ['psk', () => psk],
    ['require_certificate + psk', () => strictPsk],
  ] as const)(
    'on a %s listener a wrong key offering only TLS_AES_256_GCM_SHA384 gets no CONNACK and no identity',
    async (_kind, broker) => {
      const wrong = Buffer.alloc(16, 0x41);
      expect(await pskConnect(broker(), 'psk-384', wrong, 'TLSv1.3', 'TLS_AES_256_GCM_SHA384')).toBe(false);
      expect(broker().audit.events.some((e) => e.mqtt?.client_id === 'psk-384' && e.user?.name === 'device-7')).toBe(
        false,
      );
    },
  );

  it.each([
    ['TLSv1.2', 'ECDHE-PSK-AES128-CBC-SHA256'],
    ['TLSv1.3', 'TLS_AES_128_GCM_SHA256'],
  ] as const)('the right key still connects over %s on a require_certificate listener', async (version, ciphers) => {
    const clientId = `psk-ok-${version}`;
    expect(await pskConnect(strictPsk, clientId, Buffer.from(pskKey, 'hex'), version, ciphers)).toBe(true);
    const allowed = await strictPsk.waitForAudit('authn.allowed', (e) => e.mqtt?.client_id === clientId);
    expect(allowed.user?.name).toBe('device-7');
  });

  it('MQTT over secure WebSocket carries messages', async () => {
    const url = `wss://localhost:${wss.port}/mqtt`;
    const sub = await mqtt.connectAsync(url, { ...tlsOptions(), clientId: 'wss-sub', protocolVersion: 5 });
    const pub = await mqtt.connectAsync(url, { ...tlsOptions(), clientId: 'wss-pub', protocolVersion: 4 });
    await sub.subscribeAsync('wss/#', { qos: 1 });
    const got = new Promise<string>((resolve) => sub.on('message', (_t, p) => resolve(p.toString())));
    await pub.publishAsync('wss/a', 'secure', { qos: 1 });
    expect(await got).toBe('secure');
    await sub.endAsync();
    await pub.endAsync();
  });

  it('listens on IPv6 loopback over TLS, and the audit log records the IPv6 peer', async () => {
    const v6 = await startBroker({
      listener: {
        host: '::1',
        transport: 'tls',
        tls: { cert_file: pki.server.certFile, key_file: pki.server.keyFile },
      },
    });
    try {
      const client = await mqtt.connectAsync(`mqtts://[::1]:${v6.port}`, {
        ...tlsOptions(),
        clientId: 'ipv6-client',
        protocolVersion: 5,
      });
      const allowed = await v6.waitForAudit('authn.allowed', (e) => e.mqtt?.client_id === 'ipv6-client');
      expect(allowed.client?.ip).toBe('::1');
      await client.endAsync();
    } finally {
      await v6.stop();
    }
  });

  it('rotates the server certificate without a restart while a connected client keeps working', async () => {
    const certFile = join(pki.dir, 'live-cert.pem');
    const keyFile = join(pki.dir, 'live-key.pem');
    writeFileSync(certFile, readFileSync(pki.server.certFile));
    writeFileSync(keyFile, readFileSync(pki.server.keyFile));
    const live = await startBroker({
      listener: { transport: 'tls', tls: { cert_file: certFile, key_file: keyFile, reload_debounce_ms: 50 } },
    });
    try {
      const fingerprintOf = async (): Promise<string> => {
        const socket = tls.connect({
          host: '127.0.0.1',
          port: live.port,
          ca: readFileSync(pki.caFile),
          servername: 'localhost',
        });
        await new Promise((resolve) => socket.once('secureConnect', resolve));
        const fingerprint = socket.getPeerCertificate().fingerprint256;
        socket.destroy();
        return fingerprint;
      };
      const before = await fingerprintOf();
      const stays = await mqtt.connectAsync(`mqtts://127.0.0.1:${live.port}`, {
        ...tlsOptions(),
        clientId: 'stays',
        protocolVersion: 5,
      });
      writeFileSync(keyFile, readFileSync(pki.serverRotated.keyFile));
      writeFileSync(certFile, readFileSync(pki.serverRotated.certFile));
      await live.waitForAudit('tls.reloaded');
      const after = await fingerprintOf();
      expect(after).not.toBe(before);
      await stays.subscribeAsync('rotate/#', { qos: 1 });
      const got = new Promise<string>((resolve) => stays.on('message', (_t, p) => resolve(p.toString())));
      await stays.publishAsync('rotate/x', 'still connected', { qos: 1 });
      expect(await got).toBe('still connected');
      await stays.endAsync();
    } finally {
      await live.stop();
    }
  });

  it('a PROXY v1 header from a trusted proxy gives the real client address to authentication and audit', async () => {
    const socket = net.connect(proxied.port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    const connect = Buffer.from([
      0x10, 0x12, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c, 0x00, 0x06, 0x70, 0x72, 0x6f, 0x78, 0x79,
      0x31,
    ]);
    socket.write(Buffer.concat([Buffer.from('PROXY TCP4 203.0.113.9 127.0.0.1 51234 1883\r\n'), connect]));
    const event = await proxied.waitForAudit('authn.allowed', (e) => e.mqtt?.client_id === 'proxy1');
    expect(event.client?.ip).toBe('203.0.113.9');
    expect(event.client?.port).toBe(51234);
    socket.destroy();
  });

  it('a malformed PROXY header is refused, logged and audited, and the connection closed', async () => {
    const socket = net.connect(proxied.port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write('PROXY TCP4 999.1.1.1 127.0.0.1 1 2\r\n');
    await new Promise((resolve) => socket.once('close', resolve));
    const event = await proxied.waitForAudit('proxy.header_refused');
    expect(event.event.code).toBe('invalid_header');
    expect(proxied.logs.some((l) => l.msg === 'PROXY header refused')).toBe(true);
  });
});
