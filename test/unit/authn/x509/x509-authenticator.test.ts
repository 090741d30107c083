import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  certificateFingerprint,
  proxyReportedTls,
  type AuthnOutcome,
  type ConnectAttempt,
  type TlsPeerInfo,
} from '../../../../authn/types.js';
import {
  X509Authenticator,
  type X509AuthenticatorOptions,
  x509SettingsSchema,
  x509Type,
} from '../../../../authn/x509/index.js';
import { type TestCredential, type TestPki, mintTestPki } from '../../../helpers/certs.js';
import { connectClient, startTlsServer } from '../../transport/tls-harness.js';

const signal = new AbortController().signal;

function attempt(tls: TlsPeerInfo | undefined, over: Partial<ConnectAttempt> = {}): ConnectAttempt {
  return {
    listener: 'mtls',
    clientId: 'sensor-1',
    username: undefined,
    password: undefined,
    protocolVersion: 5,
    peer: { address: '127.0.0.1', port: 50000 },
    tls,
    authMethod: undefined,
    authData: undefined,
    ...over,
  };
}

function authenticator(over: Partial<X509AuthenticatorOptions> = {}): X509Authenticator {
  return new X509Authenticator({
    id: 'x509',
    identitySource: 'cn',
    useAsUsername: true,
    requireClientIdMatch: false,
    requireUsernameMatch: false,
    groupsFromOu: false,
    ...over,
  });
}

function allowed(outcome: AuthnOutcome): Extract<AuthnOutcome, { kind: 'allow' }> {
  if (outcome.kind !== 'allow') throw new Error(`expected allow, got ${JSON.stringify(outcome)}`);
  return outcome;
}

describe('x509 authenticator over real mTLS handshakes', () => {
  let pki: TestPki;
  const seen = new Map<string, TlsPeerInfo>();

  beforeAll(async () => {
    pki = await mintTestPki({ intermediate: true });
    // Node reads only the first CRL of a PEM buffer, so every CRL goes in as its own entry.
    const crls = readFileSync(pki.crlFile, 'utf8')
      .split(/(?<=-----END X509 CRL-----\n)/)
      .filter((s) => s.trim() !== '');
    const server = await startTlsServer({
      cert: readFileSync(pki.server.chainFile),
      key: readFileSync(pki.server.keyFile),
      ca: readFileSync(pki.caFile),
      crl: crls,
      requestCert: true,
      rejectUnauthorized: false,
    });
    const entries: Array<[string, TestCredential | undefined]> = [
      ['good', pki.clients.good],
      ['expired', pki.clients.expired],
      ['revoked', pki.clients.revoked],
      ['otherCa', pki.clients.otherCa],
      ['none', undefined],
    ];
    for (const [name, cred] of entries) {
      const client = await connectClient(server, {
        ca: readFileSync(pki.caFile),
        cert: cred ? readFileSync(cred.chainFile) : undefined,
        key: cred ? readFileSync(cred.keyFile) : undefined,
      });
      const { info } = await server.nextAccepted();
      if (client.ok) client.socket.end();
      seen.set(name, info);
    }
    await server.close();
  });
  afterAll(() => pki.cleanup());

  const tls = (name: string): TlsPeerInfo => {
    const info = seen.get(name);
    if (!info) throw new Error(`no handshake recorded for ${name}`);
    return info;
  };

  it.each([
    ['cn', undefined, 'sensor-1'],
    ['dn', undefined, 'CN=sensor-1,OU=floor-2,OU=sensors,O=Bulwark Tests'],
    ['san_dns', undefined, 'sensor-1.bulwark.test'],
    ['san_uri', 'spiffe://bulwark.test/', 'spiffe://bulwark.test/sensor/1'],
    ['san_email', undefined, 'sensor-1@bulwark.test'],
  ] as const)('maps identity source %s to the username', async (identitySource, sanPrefix, expected) => {
    const outcome = allowed(
      await authenticator({ identitySource, sanPrefix }).authenticate(attempt(tls('good')), signal),
    );
    expect(outcome.identity.username).toBe(expected);
    expect(outcome.identity.attributes['cert.identity']).toBe(expected);
    expect(outcome.identity.authenticator).toBe('x509');
  });

  it('maps the fingerprint source to the SHA-256 fingerprint the certificate really has', async () => {
    const outcome = allowed(
      await authenticator({ identitySource: 'fingerprint' }).authenticate(attempt(tls('good')), signal),
    );
    expect(outcome.identity.username).toBe(pki.clients.good.fingerprint256);
  });

  it('exposes certificate attributes for policies and OUs as groups when configured', async () => {
    const outcome = allowed(await authenticator({ groupsFromOu: true }).authenticate(attempt(tls('good')), signal));
    expect(outcome.identity.groups).toEqual(['sensors', 'floor-2']);
    expect(outcome.identity.attributes).toMatchObject({
      'cert.cn': 'sensor-1',
      'cert.ou': 'sensors,floor-2',
      'cert.serial': pki.clients.good.serialNumber,
      'cert.fingerprint': pki.clients.good.fingerprint256,
      'cert.san_uri': 'spiffe://bulwark.test/sensor/1',
      'cert.san_email': 'sensor-1@bulwark.test',
      'cert.issuer_dn': 'CN=Bulwark Test Intermediate CA,O=Bulwark Tests',
    });
  });

  it('gives no username when use_as_username is off: the certificate does not vouch for the one the client wrote', async () => {
    const outcome = allowed(
      await authenticator({ useAsUsername: false }).authenticate(attempt(tls('good'), { username: 'admin' }), signal),
    );
    expect(outcome.identity.username).toBeUndefined();
    expect(outcome.identity.attributes['cert.cn']).toBe('sensor-1');
  });

  it('keeps the username when use_as_username is off but require_username_match proved it', async () => {
    const outcome = allowed(
      await authenticator({ useAsUsername: false, requireUsernameMatch: true }).authenticate(
        attempt(tls('good'), { username: 'sensor-1' }),
        signal,
      ),
    );
    expect(outcome.identity.username).toBe('sensor-1');
  });

  it('denies a SAN source the certificate lacks, naming the missing entry', async () => {
    const outcome = await authenticator({
      identitySource: 'san_uri',
      sanPrefix: 'spiffe://other.domain/',
    }).authenticate(attempt(tls('good')), signal);
    expect(outcome).toEqual({
      kind: 'deny',
      reason: 'notAuthorized',
      detail: 'client certificate has no URI SAN starting with "spiffe://other.domain/"',
    });
  });

  it('allows a matching client id and denies a different one when require_client_id_match is on', async () => {
    const a = authenticator({ requireClientIdMatch: true });
    expect((await a.authenticate(attempt(tls('good'), { clientId: 'sensor-1' }), signal)).kind).toBe('allow');
    expect(await a.authenticate(attempt(tls('good'), { clientId: 'sensor-2' }), signal)).toEqual({
      kind: 'deny',
      reason: 'notAuthorized',
      detail: 'client id "sensor-2" does not match the certificate cn "sensor-1"',
    });
  });

  it('denies a missing or different username when require_username_match is on', async () => {
    const a = authenticator({ requireUsernameMatch: true });
    expect((await a.authenticate(attempt(tls('good'), { username: 'sensor-1' }), signal)).kind).toBe('allow');
    const none = await a.authenticate(attempt(tls('good')), signal);
    expect(none.kind === 'deny' && none.detail).toBe('no username does not match the certificate cn "sensor-1"');
    const other = await a.authenticate(attempt(tls('good'), { username: 'root' }), signal);
    expect(other.kind === 'deny' && other.detail).toBe('username "root" does not match the certificate cn "sensor-1"');
  });

  it.each([
    ['expired', 'client certificate has expired (CERT_HAS_EXPIRED)'],
    ['revoked', 'client certificate is revoked (CERT_REVOKED)'],
    ['otherCa', 'client certificate is not issued by a trusted CA (UNABLE_TO_VERIFY_LEAF_SIGNATURE)'],
  ])('denies the %s certificate with OpenSSL’s reason', async (name, detail) => {
    expect(await authenticator().authenticate(attempt(tls(name)), signal)).toEqual({
      kind: 'deny',
      reason: 'notAuthorized',
      detail,
    });
  });

  it('ignores a TLS connection without a client certificate and a plain TCP connection', async () => {
    expect(await authenticator().authenticate(attempt(tls('none')), signal)).toEqual({
      kind: 'ignore',
      detail: 'no client certificate presented',
    });
    expect(await authenticator().authenticate(attempt(undefined), signal)).toEqual({
      kind: 'ignore',
      detail: 'not a TLS connection',
    });
  });
});

describe('x509 authenticator with a certificate a trusted proxy reported (use_ssl_tlv_cn)', () => {
  const fromProxy = proxyReportedTls('sensor-1');

  it('maps the CN, marks the source, and gives policies no fact the proxy did not report', () => {
    const outcome = allowed(authenticator().decide(attempt(fromProxy)));
    expect(outcome.identity.username).toBe('sensor-1');
    expect(outcome.identity.groups).toEqual([]);
    expect(outcome.identity.attributes).toEqual({
      'cert.cn': 'sensor-1',
      'cert.identity': 'sensor-1',
      'cert.identity_source': 'cn',
      'cert.source': 'proxy',
    });
  });

  it('enforces the client id and username bindings against the reported CN', () => {
    expect(allowed(authenticator({ requireClientIdMatch: true }).decide(attempt(fromProxy))).identity.username).toBe(
      'sensor-1',
    );
    expect(authenticator({ requireClientIdMatch: true }).decide(attempt(fromProxy, { clientId: 'other' })).kind).toBe(
      'deny',
    );
    expect(authenticator({ requireUsernameMatch: true }).decide(attempt(fromProxy, { username: 'other' })).kind).toBe(
      'deny',
    );
  });

  it.each(['dn', 'san_dns', 'san_uri', 'san_email', 'fingerprint'] as const)(
    'denies identity_source %s, which needs facts the proxy did not report',
    (identitySource) => {
      expect(authenticator({ identitySource }).decide(attempt(fromProxy))).toEqual({
        kind: 'deny',
        reason: 'notAuthorized',
        detail: `identity_source ${identitySource} needs the certificate itself; the proxy reported only its CN`,
      });
    },
  );

  it('denies groups_from_ou, which needs OUs the proxy did not report', () => {
    expect(authenticator({ groupsFromOu: true }).decide(attempt(fromProxy))).toEqual({
      kind: 'deny',
      reason: 'notAuthorized',
      detail: "groups_from_ou needs the certificate's OUs; the proxy reported only its CN",
    });
  });

  it('holds no fingerprint for the guard, and escapes the CN in the subject DN', () => {
    expect(certificateFingerprint(fromProxy)).toBeUndefined();
    expect(proxyReportedTls('a,b=c').certificate?.subjectDn).toBe('CN=a\\,b\\=c');
  });
});

describe('x509 settings', () => {
  it('defaults to the CN as username with no bindings', () => {
    expect(x509SettingsSchema.parse({})).toEqual({
      identity_source: 'cn',
      use_as_username: true,
      require_client_id_match: false,
      require_username_match: false,
      groups_from_ou: false,
    });
  });

  it('rejects unknown keys and unknown sources', () => {
    expect(x509SettingsSchema.safeParse({ identity_sorce: 'cn' }).success).toBe(false);
    expect(x509SettingsSchema.safeParse({ identity_source: 'serial' }).success).toBe(false);
  });

  it('registers as type x509 and builds an authenticator with the configured id', () => {
    expect(x509Type.type).toBe('x509');
    const settings = x509Type.settings.parse({ identity_source: 'san_uri' });
    const created = x509Type.create(settings, 'devices', undefined as never);
    expect(created.id).toBe('devices');
    expect(created.type).toBe('x509');
  });
});
