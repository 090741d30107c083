import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Client side of SCRAM (RFC 5802 §3, §5, §7; RFC 7677), written from the RFC and independent of the server
 * code in authn/scram/, so a shared misreading cannot make both sides agree on the wrong answer. For tests:
 * drive it from mqtt.js's enhanced-auth hooks (CONNECT `authenticationData` = `clientFirst()`, answer the AUTH
 * 0x18 with `clientFinal(data)`, check CONNACK's data with `verifyServerFinal`).
 */
export type ScramClientHash = 'SHA-1' | 'SHA-256' | 'SHA-512';

const DIGEST: Record<ScramClientHash, { name: string; length: number }> = {
  'SHA-1': { name: 'sha1', length: 20 },
  'SHA-256': { name: 'sha256', length: 32 },
  'SHA-512': { name: 'sha512', length: 64 },
};

export interface ScramClientOptions {
  hash: ScramClientHash;
  username: string;
  password: string;
  /** Fixed client nonce for test vectors; random otherwise. */
  nonce?: string;
  /** Sent as `a=` in the gs2-header. */
  authzid?: string;
  /** gs2-cbind-flag; only tests of the server's refusal change it. */
  channelBindingFlag?: string;
}

export function escapeSaslName(name: string): string {
  return name.replace(/=/g, '=3D').replace(/,/g, '=2C');
}

export class ScramClient {
  readonly mechanism: string;
  readonly #opts: ScramClientOptions;
  readonly #nonce: string;
  readonly #gs2Header: string;
  #clientFirstBare = '';
  #expectedServerSignature: Buffer | undefined;
  /** The values this client computed, for tests that tamper with one field. */
  last: { saltedPassword?: Buffer; authMessage?: string; proof?: string; withoutProof?: string } = {};

  constructor(opts: ScramClientOptions) {
    this.#opts = opts;
    this.mechanism = `SCRAM-${opts.hash}`;
    this.#nonce = opts.nonce ?? randomBytes(18).toString('base64');
    const authz = opts.authzid === undefined ? '' : `a=${escapeSaslName(opts.authzid)}`;
    this.#gs2Header = `${opts.channelBindingFlag ?? 'n'},${authz},`;
  }

  clientFirst(): Buffer {
    this.#clientFirstBare = `n=${escapeSaslName(this.#opts.username)},r=${this.#nonce}`;
    return Buffer.from(this.#gs2Header + this.#clientFirstBare, 'utf8');
  }

  /** Checks server-first and answers with client-final; throws on anything the RFC says to abort on. */
  clientFinal(serverFirstData: Buffer, overrides: { nonce?: string; channelBinding?: string } = {}): Buffer {
    const serverFirst = serverFirstData.toString('utf8');
    const attrs = new Map(serverFirst.split(',').map((kv) => [kv.slice(0, 1), kv.slice(2)] as const));
    const nonce = attrs.get('r');
    const salt = attrs.get('s');
    const iterations = Number(attrs.get('i'));
    if (serverFirst.startsWith('m=')) throw new Error('server sent a mandatory extension');
    if (!nonce?.startsWith(this.#nonce) || nonce.length === this.#nonce.length) {
      throw new Error('server nonce does not extend the client nonce');
    }
    if (!salt || !Number.isInteger(iterations) || iterations < 1) throw new Error('bad salt or iteration count');
    const { name, length } = DIGEST[this.#opts.hash];
    const hmac = (key: Buffer, data: string): Buffer => createHmac(name, key).update(data).digest();
    // Hi() is PBKDF2 with HMAC as the PRF and dkLen = the hash's output length (RFC 5802 §2.2).
    const saltedPassword = pbkdf2Sync(this.#opts.password, Buffer.from(salt, 'base64'), iterations, length, name);
    const clientKey = hmac(saltedPassword, 'Client Key');
    const storedKey = createHash(name).update(clientKey).digest();
    const channelBinding = overrides.channelBinding ?? Buffer.from(this.#gs2Header, 'utf8').toString('base64');
    const withoutProof = `c=${channelBinding},r=${overrides.nonce ?? nonce}`;
    const authMessage = `${this.#clientFirstBare},${serverFirst},${withoutProof}`;
    const clientSignature = hmac(storedKey, authMessage);
    const proof = Buffer.alloc(length);
    for (let i = 0; i < length; i++) proof[i] = (clientKey[i] ?? 0) ^ (clientSignature[i] ?? 0);
    const serverKey = hmac(saltedPassword, 'Server Key');
    this.#expectedServerSignature = hmac(serverKey, authMessage);
    this.last = { saltedPassword, authMessage, proof: proof.toString('base64'), withoutProof };
    return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`, 'utf8');
  }

  /** Mutual authentication: true only when the server proved it holds ServerKey (RFC 5802 §3). */
  verifyServerFinal(data: Buffer | undefined): boolean {
    if (!data || !this.#expectedServerSignature) return false;
    const text = data.toString('utf8');
    if (!text.startsWith('v=')) return false;
    const got = Buffer.from(text.slice(2), 'base64');
    return got.length === this.#expectedServerSignature.length && timingSafeEqual(got, this.#expectedServerSignature);
  }
}

/** The AUTH packet shape mqtt.js hands to `handleAuth` and accepts back (structural, to avoid a type import). */
export interface MqttAuthPacket {
  cmd: 'auth';
  reasonCode?: number;
  properties?: { authenticationMethod?: string; authenticationData?: Buffer };
}

/**
 * Wires a {@link ScramClient} into mqtt.js: spread `properties` into the connect options' `properties`, and
 * assign `handleAuth` to the client (`client.handleAuth = hooks.handleAuth`) before the CONNACK arrives (use
 * `manualConnect: true`, then `client.connect()`). After a successful exchange, check
 * `scram.verifyServerFinal(connack.properties.authenticationData)` or, for a re-authentication,
 * `hooks.lastServerFinal`.
 */
export function scramForMqtt(scram: ScramClient): {
  properties: { authenticationMethod: string; authenticationData: Buffer };
  handleAuth: (packet: MqttAuthPacket, callback: (error?: Error, packet?: MqttAuthPacket) => void) => void;
  /** AUTH 0x19 packet starting a re-authentication with a fresh client-first-message. */
  reauthenticatePacket: () => MqttAuthPacket;
  readonly lastServerFinal: Buffer | undefined;
} {
  let lastServerFinal: Buffer | undefined;
  return {
    properties: { authenticationMethod: scram.mechanism, authenticationData: scram.clientFirst() },
    handleAuth(packet, callback) {
      const data = packet.properties?.authenticationData;
      if (packet.reasonCode !== 0x18) {
        lastServerFinal = data;
        callback();
        return;
      }
      try {
        const reply = scram.clientFinal(data ?? Buffer.alloc(0));
        callback(undefined, {
          cmd: 'auth',
          reasonCode: 0x18,
          properties: { authenticationMethod: scram.mechanism, authenticationData: reply },
        });
      } catch (error) {
        callback(error instanceof Error ? error : new Error(String(error)));
      }
    },
    reauthenticatePacket: () => ({
      cmd: 'auth',
      reasonCode: 0x19,
      properties: { authenticationMethod: scram.mechanism, authenticationData: scram.clientFirst() },
    }),
    get lastServerFinal() {
      return lastServerFinal;
    },
  };
}
