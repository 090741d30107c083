import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../audit/events.js';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { rawPublish } from '../../helpers/mqtt-clients.js';
import { RawClient } from '../../helpers/raw-client.js';

const PASSWORD = 'hunter2-never-in-the-log';

/** A CONNECT written by hand, with a User Name and Password, so a test can break what a library would not. */
function handmadeConnect(protocolName: string, level: number, clientId: string): Buffer {
  const name = Buffer.from(protocolName);
  const field = (s: string): Buffer => Buffer.concat([Buffer.from([0, Buffer.byteLength(s)]), Buffer.from(s)]);
  const body = Buffer.concat([
    Buffer.from([0, name.length]),
    name,
    // User Name and Password flags, clean session, keep alive 60.
    Buffer.from([level, 0xc2, 0, 60]),
    ...(level === 5 ? [Buffer.from([0])] : []),
    field(clientId),
    field('alice'),
    field(PASSWORD),
  ]);
  return Buffer.concat([Buffer.from([0x10, body.length]), body]);
}

describe('a malformed CONNECT', () => {
  let broker: TestBroker;

  beforeAll(async () => {
    broker = await startBroker({ config: { audit: { refusals: { burst: 3, window: '1h' } } } });
  });
  afterAll(async () => {
    await broker?.stop();
  });

  /** Connects, and keeps the local port: a closed socket no longer reports it. */
  const connect = async (version: number): Promise<{ client: RawClient; port: number }> => {
    const client = await RawClient.connect(broker.port, version);
    return { client, port: client.socket.localPort! };
  };
  /** The record of the connection from that port. */
  const recordOf = (port: number): Promise<AuditEvent> =>
    broker.waitForAudit('connection.malformed_connect', (e) => e.client?.port === port);

  it('an invalid protocol name is recorded with who sent it, and the connection is closed as before', async () => {
    const { client, port } = await connect(4);
    client.sendBytes(handmadeConnect('MQTX', 4, 'bad-name'));
    await client.waitClosed();
    expect(client.packets).toEqual([]);
    const record = await recordOf(port);
    expect(record.event).toEqual({
      action: 'connection.malformed_connect',
      outcome: 'failure',
      reason: 'malformed packet: Invalid protocolId',
      code: 'malformedPacket',
    });
    expect(record.client).toEqual({ ip: '127.0.0.1', port });
    // Nothing was sent: no reason code. Nothing of the packet: no client id, user name or password.
    expect(record.mqtt).toEqual({ listener: 'test' });
    expect(JSON.stringify(record)).not.toContain(PASSWORD);
    expect(JSON.stringify(record)).not.toContain('alice');
    // No session, no authentication: this record is the only trace of the attempt.
    expect(broker.audit.events.some((e) => e.event.action === 'authn.denied')).toBe(false);
  });

  it('an unsupported protocol level is recorded with the CONNACK code it was sent', async () => {
    const { client, port } = await connect(5);
    client.sendBytes(handmadeConnect('MQTT', 6, 'level-six'));
    expect((await client.next('connack')).reasonCode).toBe(0x84);
    await client.waitClosed();
    const record = await recordOf(port);
    expect(record.event.code).toBe('unsupportedProtocolVersion');
    expect(record.event.reason).toBe('unsupported protocol level 6');
    expect(record.mqtt).toEqual({ listener: 'test', reason_code: 0x84 });
  });

  it('a first packet that is not a CONNECT is recorded as a protocol error', async () => {
    const { client, port } = await connect(4);
    client.send(rawPublish('first/not-connect', 'x', 0));
    await client.waitClosed();
    const record = await recordOf(port);
    expect(record.event.code).toBe('protocolError');
    expect(record.event.reason).toBe('first packet is not CONNECT');
    expect(record.mqtt?.reason_code).toBeUndefined();
  });

  it('an MQTT 5 CONNECT that breaks a packet rule is recorded with CONNACK 0x82', async () => {
    const { client, port } = await connect(5);
    // Session Expiry Interval (0x11) twice: a protocol error [MQTT-2.2.2-2].
    const properties = Buffer.from([10, 0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2]);
    const id = Buffer.from('dup-prop');
    const body = Buffer.concat([
      Buffer.from([0, 4]),
      Buffer.from('MQTT'),
      Buffer.from([5, 0x02, 0, 60]),
      properties,
      Buffer.from([0, id.length]),
      id,
    ]);
    client.sendBytes(Buffer.concat([Buffer.from([0x10, body.length]), body]));
    expect((await client.next('connack')).reasonCode).toBe(0x82);
    await client.waitClosed();
    const record = await recordOf(port);
    expect(record.event.code).toBe('protocolError');
    expect(record.mqtt).toEqual({ listener: 'test', protocol_version: 5, reason_code: 0x82 });
  });

  it('a loop of malformed CONNECTs is bounded like every pre-authentication refusal, and counted', async () => {
    const before = broker.audit.events.filter((e) => e.event.action === 'connection.malformed_connect').length;
    const attempts = 40;
    for (let i = 0; i < attempts; i++) {
      const client = await RawClient.connect(broker.port, 4);
      client.sendBytes(handmadeConnect('MQTX', 4, `loop-${i}`));
      await client.waitClosed();
    }
    // The earlier test used one of the burst of 3 for this key (address, malformedPacket, listener).
    const recorded = broker.audit.events.filter(
      (e) => e.event.action === 'connection.malformed_connect' && e.event.code === 'malformedPacket',
    );
    expect(recorded).toHaveLength(3);
    const logLines = broker.logs.filter(
      (l) => l['msg'] === 'closing connection: protocol violation' && l['reason'] === 'malformedPacket',
    );
    expect(logLines).toHaveLength(3);
    broker.server.broker.refusals.flush();
    const summary = await broker.waitForAudit(
      'audit.refusals_suppressed',
      (e) => e.audit?.action === 'connection.malformed_connect' && e.event.code === 'malformedPacket',
    );
    expect(summary.audit?.suppressed).toBe(attempts + 1 - 3);
    expect(summary.audit?.recorded).toBe(3);
    expect(before).toBeGreaterThan(0);
  });
});
