import mqtt from 'mqtt-packet';
import { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChainResult, ConnectAuthenticator } from '../../../authn/types.js';
import type { Connection } from '../../../src/connection/connection.js';
import { startBroker, type TestBroker } from '../../helpers/broker.js';

class NullSocket extends Duplex {
  override _read(): void {}
  override _write(_chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    done();
  }
}

const connectBytes = (clientId: string, clean = true): Buffer =>
  mqtt.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId, clean, keepalive: 60 });

/**
 * CONNECT is handled in the turn its bytes arrive unless a step has to wait: an anonymous client is connected
 * before `onData` returns (no promise, no later turn), a client whose chain answers later is connected then.
 */
describe('the turn a CONNECT is answered in', () => {
  let anonymous: TestBroker;
  let waiting: TestBroker;
  let release: (() => void) | undefined;
  const slowChain: ConnectAuthenticator = {
    authenticate: (attempt) =>
      new Promise<ChainResult>((resolve) => {
        release = () =>
          resolve({
            kind: 'allow',
            steps: [],
            identity: {
              clientId: attempt.clientId,
              // Anonymous, so the test broker's default policy lets it connect: only the timing is under test.
              username: undefined,
              groups: [],
              attributes: {},
              superuser: false,
              anonymous: true,
              authenticator: 'slow',
            },
          });
      }),
    continueExchange: () => Promise.reject(new Error('not used')),
    supportsMethod: () => false,
  };

  beforeAll(async () => {
    anonymous = await startBroker();
    waiting = await startBroker({ authenticator: slowChain });
  });
  afterAll(async () => {
    await anonymous.stop();
    await waiting.stop();
  });

  const accept = (broker: TestBroker): Connection =>
    broker.server.broker.accept(
      new NullSocket(),
      broker.server.listeners[0]!,
      { address: '127.0.0.1', port: 1 },
      undefined,
    )!;

  it('an anonymous CONNECT is connected, recorded and answered within the same turn', () => {
    const connection = accept(anonymous);
    const recorded = anonymous.audit.events.length;
    connection.onData(connectBytes('same-turn'));
    expect(connection.state).toBe('connected');
    expect(connection.session?.clientId).toBe('same-turn');
    expect(anonymous.audit.events.slice(recorded).map((e) => e.event.action)).toEqual(['authn.allowed']);
    connection.destroy();
  });

  it('a resumed session is re-checked against the policy first, so it is connected on a later turn', async () => {
    const first = accept(anonymous);
    first.onData(connectBytes('resume-me', false));
    expect(first.state).toBe('connected');
    first.destroy();
    await new Promise((r) => setImmediate(r));
    const second = accept(anonymous);
    second.onData(connectBytes('resume-me', false));
    expect(second.state).toBe('authenticating');
    await new Promise((r) => setImmediate(r));
    expect(second.state).toBe('connected');
    second.destroy();
  });

  it('a chain that answers later leaves the client authenticating until it does', async () => {
    const connection = accept(waiting);
    connection.onData(connectBytes('later'));
    expect(connection.state).toBe('authenticating');
    release!();
    await new Promise((r) => setImmediate(r));
    expect([connection.state, connection.closeReason]).toEqual(['connected', undefined]);
    connection.destroy();
  });
});
