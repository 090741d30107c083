import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { exportJWK, SignJWT, type JWK } from 'jose';
import mqtt, { type IClientOptions, type IConnackPacket, type MqttClient } from 'mqtt';
import { Secret } from '../../authn/secret.js';
import { hashPassword } from '../../authn/verify/password-hash.js';
import { startBroker, type TestBroker, type TestBrokerOptions } from './broker.js';
import type { TempDir } from './policy-broker.js';

/**
 * Every password and token a wire test used, and every broker it started: the last test of each file checks that
 * none of them appears in any log line or audit event (issue 4: secrets never appear in logs or events).
 */
export class SecretLedger {
  readonly secrets = new Set<string>();
  readonly brokers: TestBroker[] = [];
  /** Output of external clients (mosquitto_pub) and other text the broker side produced. */
  readonly extra: string[] = [];

  /** Registers a test secret and returns it, so a test cannot use one the leak check does not know. */
  secret(value: string): string {
    this.secrets.add(value);
    return value;
  }

  /** A fresh random password, registered. */
  password(prefix = 'pw'): string {
    return this.secret(`${prefix}-${randomBytes(9).toString('base64url')}`);
  }

  async broker(options: TestBrokerOptions): Promise<TestBroker> {
    const broker = await startBroker(options);
    this.brokers.push(broker);
    return broker;
  }

  /** Every log line and audit event of every broker started through this ledger, as text. */
  corpus(): string[] {
    const out: string[] = [...this.extra];
    for (const b of this.brokers) {
      for (const line of b.logs) out.push(JSON.stringify(line));
      for (const e of b.audit.events) out.push(JSON.stringify(e));
    }
    return out;
  }

  /** The secrets (shown by index only, never by value) found in the corpus. */
  leaks(): { secret: number; line: number }[] {
    const corpus = this.corpus();
    const secrets = [...this.secrets];
    const found: { secret: number; line: number }[] = [];
    secrets.forEach((s, i) => {
      // A JWT's signature part alone would also be a leak; the payload part is not secret by itself.
      const needles = s.split('.').length === 3 ? [s, s.split('.')[2]!] : [s];
      corpus.forEach((text, line) => {
        if (needles.some((n) => n.length >= 6 && text.includes(n))) found.push({ secret: i, line });
      });
    });
    return found;
  }
}

/** A policy letting every authenticated client publish, subscribe and receive ordinary topics. */
export const OPEN_POLICY = `version: 1
rules:
  - name: everyone-connects
    allow: connect
    subjects: all
    why: These tests are about topic rules; every client may connect.

  - name: authenticated-everything
    allow: [publish, subscribe, receive]
    subjects: all
    topics: ['#']
`;

/** argon2id with cheap parameters (tests only). */
export function argonHash(password: string): Promise<string> {
  return hashPassword(new Secret(password), { memoryCost: 1024, timeCost: 1, parallelism: 1 });
}

/** A hash written by the real `mosquitto_passwd` (`$7$` PBKDF2-SHA512), as an operator would import it. */
export function mosquittoPasswdHash(dir: TempDir, user: string, password: string): string {
  const file = dir.write(`mosquitto-${user}.passwd`, '');
  // -b takes the password on argv: acceptable for a throw-away test password, never for real ones.
  execFileSync('mosquitto_passwd', ['-b', file, user, password], { stdio: 'ignore' });
  const line = readFileSync(file, 'utf8').trim();
  return line.slice(line.indexOf(':') + 1);
}

/** Writes a password-file YAML with the given precomputed hashes. */
export function writeUsers(
  dir: TempDir,
  name: string,
  users: Record<string, { hash: string; groups?: string[] }>,
): string {
  const lines = ['users:'];
  for (const [user, u] of Object.entries(users)) {
    lines.push(`  ${JSON.stringify(user)}:`, `    hash: '${u.hash}'`);
    if (u.groups) lines.push(`    groups: ${JSON.stringify(u.groups)}`);
  }
  return dir.write(name, lines.join('\n') + '\n');
}

export interface Attempt {
  /** 0 on success; otherwise the CONNACK reason code (v5) or return code (3.1.1). */
  code: number;
  client: MqttClient;
  connack?: IConnackPacket;
}

/** Connects mqtt.js once (no reconnect) and reports the CONNACK code, whether accepted or refused. */
export function tryConnect(url: string, options: IClientOptions): Promise<Attempt> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 8000, ...options });
    const timer = setTimeout(() => reject(new Error('no CONNACK')), 10_000);
    client.once('connect', (connack) => {
      clearTimeout(timer);
      resolve({ code: 0, client, connack });
    });
    client.once('error', (error: Error & { code?: unknown }) => {
      clearTimeout(timer);
      client.end(true);
      if (typeof error.code === 'number') resolve({ code: error.code, client });
      else reject(error);
    });
  });
}

/** The CONNACK code expected for an outcome in each protocol version (docs/authentication.md table). */
export const CODES = {
  badUserNameOrPassword: { 5: 0x86, 4: 4 },
  notAuthorized: { 5: 0x87, 4: 5 },
  serverUnavailable: { 5: 0x88, 4: 3 },
} as const;

/** A port on 127.0.0.1 on which nothing listens (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = createTcpServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/** A real JWKS endpoint on 127.0.0.1 whose key set a test can rotate. */
export class JwksServer {
  keys: JWK[] = [];
  fetches = 0;
  /** While set, every answer waits for it: an identity provider that is slow to answer. */
  hold: Promise<void> | undefined;
  readonly server: Server = createHttpServer((_req, res) => {
    this.fetches++;
    void (this.hold ?? Promise.resolve()).then(() => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys: this.keys }));
    });
  });
  async start(): Promise<string> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/.well-known/jwks.json`;
  }
  stop(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}

export interface SigningKey {
  kid: string;
  privateKey: KeyObject;
  jwk: JWK;
}

export async function es256Key(kid: string): Promise<SigningKey> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } };
}

/** A token for `sub`, expiring at `expSeconds` (epoch seconds). */
export function signToken(
  key: SigningKey,
  sub: string,
  expSeconds: number,
  issuer = 'idp',
  audience = 'bulwark',
): Promise<string> {
  return new SignJWT({ sub })
    .setProtectedHeader({ alg: 'ES256', kid: key.kid })
    .setIssuer(issuer)
    .setAudience(audience)
    .setIssuedAt()
    .setExpirationTime(expSeconds)
    .sign(key.privateKey);
}
