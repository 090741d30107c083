import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { formatScramCredentialLine } from '../../../authn/scram/file-store.js';
import { deriveScramCredential } from '../../../authn/scram/mechanism.js';
import { UNKNOWN_USER_SECRET_FILE } from '../../../authn/scram/unknown-user-secret.js';
import { startBroker } from '../../helpers/broker.js';
import { tempDir } from '../../helpers/policy-broker.js';
import { RawClient, connectPacket } from '../../helpers/raw-client.js';
import { configSchema } from '../../../src/config/schema.js';
import { BulwarkServer } from '../../../src/server.js';

/**
 * RFC 5802 §9: an unknown user must get a challenge that cannot be told from a real user's. Real users' salts
 * survive a restart and their iteration counts are what the operator chose; an unknown user's must behave alike
 * without the operator having to configure anything.
 */
const dir = tempDir('bulwark-scram-unknown-');
afterAll(() => dir.cleanup());

/** The server-first message a CONNECT for `username` gets: its salt and iteration count. */
async function challenge(port: number, username: string): Promise<{ salt: string; iterations: string }> {
  const client = await RawClient.connect(port, 5);
  try {
    client.send(
      connectPacket(`probe-${username}`, {
        protocolVersion: 5,
        properties: {
          authenticationMethod: 'SCRAM-SHA-256',
          authenticationData: Buffer.from(`n,,n=${username},r=clientnonce0123456789`),
        },
      }),
      5,
    );
    const auth = await client.next('auth');
    const fields = new Map(
      (auth.properties?.authenticationData?.toString() ?? '').split(',').map((kv) => [kv[0], kv.slice(2)] as const),
    );
    return { salt: fields.get('s') ?? '', iterations: fields.get('i') ?? '' };
  } finally {
    client.end();
  }
}

describe('SCRAM unknown users', () => {
  it('get the iteration count the stored credentials use, and the same salt after a restart, with no settings', async () => {
    const lines: string[] = [];
    for (const [name, iterations] of [
      ['alice', 8192],
      ['bob', 8192],
      ['carol', 4096],
    ] as const)
      lines.push(
        formatScramCredentialLine(name, await deriveScramCredential(`${name}-pw`, 'SCRAM-SHA-256', iterations)),
      );
    const credentials = dir.write('scram.txt', `${lines.join('\n')}\n`);
    const dataDir = dir.file('data');
    const start = () =>
      startBroker({
        config: {
          data_dir: dataDir,
          authentication: {
            anonymous: false,
            steps: [{ type: 'scram', id: 'scram', store: { type: 'file', path: credentials } }],
          },
        },
      });
    mkdirSync(dataDir, { mode: 0o700 });

    let broker = await start();
    const real = await challenge(broker.port, 'alice');
    const before = await challenge(broker.port, 'ghost');
    await broker.stop();
    expect(real.iterations).toBe('8192');
    expect(before.iterations).toBe('8192');
    // Made on the first start, owner-only.
    expect(statSync(join(dataDir, UNKNOWN_USER_SECRET_FILE)).mode & 0o777).toBe(0o600);

    broker = await start();
    try {
      const after = await challenge(broker.port, 'ghost');
      expect(after.salt).toBe(before.salt);
      expect((await challenge(broker.port, 'alice')).salt).toBe(real.salt);
      // Another unknown name gets a salt of its own, not one shared by every unknown user.
      expect((await challenge(broker.port, 'phantom')).salt).not.toBe(before.salt);
    } finally {
      await broker.stop();
    }
  });

  it('two listeners with SCRAM steps on different files do not tell a user real in one from a user in neither', async () => {
    const fileA = dir.write(
      'scram-a.txt',
      `${formatScramCredentialLine('bob', await deriveScramCredential('bob-pw', 'SCRAM-SHA-256', 4096))}\n`,
    );
    const fileB = dir.write(
      'scram-b.txt',
      `${formatScramCredentialLine('carol', await deriveScramCredential('carol-pw', 'SCRAM-SHA-256', 4096))}\n`,
    );
    const dataDir = dir.file('two-listeners');
    mkdirSync(dataDir, { mode: 0o700 });
    const listener = (name: string, path: string) => ({
      name,
      transport: 'tcp',
      host: '127.0.0.1',
      port: 0,
      authentication: {
        anonymous: false,
        steps: [{ type: 'scram', id: `scram-${name}`, store: { type: 'file', path } }],
      },
    });
    const server = new BulwarkServer({
      config: configSchema.parse({
        sys_interval_seconds: 0,
        persistence: { durability: 'none' },
        data_dir: dataDir,
        guard: { exempt_networks: ['127.0.0.0/8', '::1/128'] },
        listeners: [listener('a', fileA), listener('b', fileB)],
      }),
      log: pino({ level: 'silent' }),
    });
    await server.start();
    try {
      const [portA, portB] = server.listeners.map((l) => l.address!.port) as [number, number];
      // bob is real behind listener a only; ghost is real nowhere. Were ghost's two salts equal while bob's differ,
      // comparing the listeners would sort names into real somewhere and real nowhere.
      const bob = [(await challenge(portA, 'bob')).salt, (await challenge(portB, 'bob')).salt];
      const ghost = [(await challenge(portA, 'ghost')).salt, (await challenge(portB, 'ghost')).salt];
      expect(bob[0]).not.toBe(bob[1]);
      expect(ghost[0]).not.toBe(ghost[1]);
    } finally {
      await server.stop();
    }
  });

  it('get a salt as long as the stored credentials use', async () => {
    // Credentials made elsewhere with 24-byte salts: a 16-byte one would mark a name as unknown at a glance.
    const lines: string[] = [];
    for (const name of ['alice', 'bob'])
      lines.push(
        formatScramCredentialLine(
          name,
          await deriveScramCredential(`${name}-pw`, 'SCRAM-SHA-256', 4096, randomBytes(24)),
        ),
      );
    const credentials = dir.write('scram-salt24.txt', `${lines.join('\n')}\n`);
    const broker = await startBroker({
      config: {
        authentication: {
          anonymous: false,
          steps: [{ type: 'scram', id: 'scram', store: { type: 'file', path: credentials } }],
        },
      },
    });
    try {
      const real = await challenge(broker.port, 'alice');
      const unknown = await challenge(broker.port, 'ghost');
      expect(Buffer.from(real.salt, 'base64')).toHaveLength(24);
      expect(Buffer.from(unknown.salt, 'base64')).toHaveLength(24);
    } finally {
      await broker.stop();
    }
  });

  // A short one (a write cut off), or one others can read (restored from a backup, say: whoever can read it can
  // compute every unknown user's fake salt).
  it.each([
    [
      'shorter than 32 bytes',
      Buffer.from('too short'),
      0o600,
      /scram-unknown-user\.secret: holds 9 bytes, fewer than 32/,
    ],
    [
      'others can read',
      randomBytes(32),
      0o644,
      /scram-unknown-user\.secret: readable or writable by group or others \(mode 644\)/,
    ],
  ] as const)('a secret file %s stops the start, naming the file', async (name, content, mode, expected) => {
    const dataDir = dir.file(name.replace(/\W+/g, '-'));
    mkdirSync(dataDir, { mode: 0o700 });
    const secret = join(dataDir, UNKNOWN_USER_SECRET_FILE);
    writeFileSync(secret, content, { mode });
    chmodSync(secret, mode);
    const credentials = dir.write(
      `${dataDir.split('/').at(-1)}.txt`,
      `${formatScramCredentialLine('alice', await deriveScramCredential('pw', 'SCRAM-SHA-256', 4096))}\n`,
    );
    await expect(
      startBroker({
        config: {
          data_dir: dataDir,
          authentication: { steps: [{ type: 'scram', store: { type: 'file', path: credentials } }] },
        },
      }),
    ).rejects.toThrow(expected);
  });
});
