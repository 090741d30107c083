import mqtt from 'mqtt';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type TestBroker } from '../../helpers/broker.js';

describe('MQTT over WebSocket', () => {
  let broker: TestBroker;
  let tcp: TestBroker;
  beforeAll(async () => {
    broker = await startBroker({ listener: { transport: 'ws', websocket_path: '/mqtt' } });
    tcp = await startBroker();
  });
  afterAll(async () => {
    await broker.stop();
    await tcp.stop();
  });

  it('carries MQTT 5 and 3.1.1 between mqtt.js clients on the mqtt subprotocol', async () => {
    const url = `ws://127.0.0.1:${broker.port}/mqtt`;
    const sub = await mqtt.connectAsync(url, { clientId: 'ws-sub', protocolVersion: 5 });
    const pub = await mqtt.connectAsync(url, { clientId: 'ws-pub', protocolVersion: 4 });
    await sub.subscribeAsync('ws/#', { qos: 1 });
    const got = new Promise<string>((resolve) => sub.on('message', (t, p) => resolve(`${t} ${p.toString()}`)));
    await pub.publishAsync('ws/a', 'over websocket', { qos: 1 });
    expect(await got).toBe('ws/a over websocket');
    const connected = broker.logs.find((l) => l.msg === 'client connected' && l.clientId === 'ws-sub');
    expect(connected?.peer).toMatch(/^127\.0\.0\.1:\d+$/);
    await sub.endAsync();
    await pub.endAsync();
  });

  it('selects the mqtt subprotocol and refuses other paths', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${broker.port}/mqtt`, ['mqtt']);
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    expect(ws.protocol).toBe('mqtt');
    ws.close();
    const wrong = new WebSocket(`ws://127.0.0.1:${broker.port}/other`, ['mqtt']);
    const status = await new Promise<number>((resolve) => {
      wrong.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      wrong.once('error', () => resolve(-1));
    });
    expect(status).toBe(404);
  });

  it('reassembles a CONNECT split across two WebSocket messages', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${broker.port}/mqtt`, ['mqtt']);
    await new Promise((resolve) => ws.once('open', resolve));
    const replies: Buffer[] = [];
    ws.on('message', (data: Buffer) => replies.push(data));
    const connect = Buffer.from([
      0x10, 0x0f, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c, 0x00, 0x03, 0x77, 0x73, 0x31,
    ]);
    ws.send(connect.subarray(0, 5));
    ws.send(connect.subarray(5));
    for (let i = 0; i < 100 && replies.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(Buffer.concat(replies)).toEqual(Buffer.from([0x20, 0x02, 0x00, 0x00]));
    ws.close();
  });
});
