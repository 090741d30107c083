import { spawn } from 'node:child_process';
import mqtt, { type IClientOptions, type IConnackPacket, type IPublishPacket, type MqttClient } from 'mqtt';
import type {
  IConnackPacket as RawConnack,
  IConnectPacket,
  IPublishPacket as RawPublish,
  ISubackPacket as RawSuback,
  ISubscribePacket as RawSubscribe,
} from 'mqtt-packet';
import { RawClient, connectPacket } from './raw-client.js';

/** One application message as a client saw it. */
export interface Received {
  topic: string;
  payload: string;
  packet: IPublishPacket;
}

/** Collects every message a client receives and lets a test wait for a count or a topic, without sleeping. */
export class Collector {
  readonly messages: Received[] = [];
  /** PUBLISH packets in the order they came off the wire (mqtt.js emits QoS 2 messages only at PUBREL). */
  readonly wire: IPublishPacket[] = [];
  private waiters: { done: () => boolean; resolve: () => void }[] = [];

  constructor(client: MqttClient) {
    client.on('packetreceive', (packet) => {
      if (packet.cmd === 'publish') this.wire.push(packet);
    });
    client.on('message', (topic, payload, packet) => {
      this.messages.push({ topic, payload: payload.toString('utf8'), packet });
      this.waiters = this.waiters.filter((w) => {
        if (!w.done()) return true;
        w.resolve();
        return false;
      });
    });
  }

  /** Resolves once `done()` holds, re-checked on every message. */
  until(done: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
      this.waiters.push({
        done,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }

  /** Resolves once at least `count` messages arrived. */
  async waitFor(count: number, timeoutMs = 5000): Promise<Received[]> {
    await this.until(() => this.messages.length >= count, `${count} messages`, timeoutMs);
    return this.messages;
  }

  /** Resolves with the first message on `topic` (already received ones included). */
  async waitForTopic(topic: string, timeoutMs = 5000): Promise<Received> {
    await this.until(() => this.messages.some((m) => m.topic === topic), `a message on ${topic}`, timeoutMs);
    return this.messages.find((m) => m.topic === topic)!;
  }

  /** Messages on `topic` (marker messages excluded by the caller's choice of topic). */
  on(topic: string): Received[] {
    return this.messages.filter((m) => m.topic === topic);
  }
}

export interface Connected {
  client: MqttClient;
  connack: IConnackPacket;
  received: Collector;
}

/**
 * Connects mqtt.js without automatic reconnection (a test controls every connection) and returns the CONNACK,
 * so session present, assigned client identifiers and server properties can be asserted.
 */
export function connectClient(url: string, options: IClientOptions): Promise<Connected> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options });
    const received = new Collector(client);
    client.once('connect', (connack) => {
      client.removeListener('error', onError);
      resolve({ client, connack, received });
    });
    const onError = (error: Error): void => {
      client.end(true);
      reject(error);
    };
    client.once('error', onError);
  });
}

/** A raw client that has sent CONNECT and got its CONNACK. */
export async function rawConnect(
  port: number,
  clientId: string,
  version: 3 | 4 | 5 = 4,
  extra: Partial<IConnectPacket> = {},
): Promise<{ client: RawClient; connack: RawConnack }> {
  const parserVersion = version === 3 ? 4 : version;
  const client = await RawClient.connect(port, parserVersion);
  client.send(
    connectPacket(clientId, {
      protocolVersion: version,
      ...(version === 3 ? { protocolId: 'MQIsdp' } : {}),
      ...extra,
    }),
    parserVersion,
  );
  const connack = await client.next('connack');
  return { client, connack };
}

/** Resolves when the mqtt.js client's connection has closed (for server-initiated disconnects). */
export function waitClientClosed(client: MqttClient, timeoutMs = 5000): Promise<void> {
  if (client.stream?.destroyed) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`client not closed within ${timeoutMs} ms`)), timeoutMs);
    client.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Ends every client given, ignoring ones already closed. */
export async function endAll(...clients: (MqttClient | RawClient | undefined)[]): Promise<void> {
  await Promise.all(
    clients.map(async (c) => {
      if (!c) return;
      if (c instanceof RawClient) c.end();
      else await c.endAsync(true).catch(() => undefined);
    }),
  );
}

export interface MosquittoRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a mosquitto client to completion (mosquitto_pub, or mosquitto_sub with `-C`/`-W`). */
export function runMosquitto(command: 'mosquitto_pub' | 'mosquitto_sub', args: string[]): Promise<MosquittoRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A running mosquitto_sub that prints `topic payload` lines; `subscribed` resolves after its SUBACK. */
export interface MosquittoSubscriber {
  lines: string[];
  subscribed: Promise<void>;
  exited: Promise<MosquittoRun>;
  waitForLines(count: number, timeoutMs?: number): Promise<string[]>;
  /** SIGTERM lets mosquitto_sub DISCONNECT cleanly; SIGKILL drops the connection (the will is sent). */
  kill(signal?: 'SIGTERM' | 'SIGKILL'): void;
}

/**
 * Spawns mosquitto_sub (line-buffered) with `-d` so its SUBACK can be awaited; debug lines start with "Client " and are kept apart
 * from the `-v` message lines.
 */
export function spawnMosquittoSub(args: string[]): MosquittoSubscriber {
  // stdbuf: mosquitto_sub's stdout is block-buffered on a pipe, which would hide the SUBACK line until exit.
  const child = spawn('stdbuf', ['-oL', 'mosquitto_sub', '-d', '-v', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let stdout = '';
  let stderr = '';
  let partial = '';
  let onSuback: (() => void) | undefined;
  const lineWaiters: { count: number; resolve: () => void }[] = [];
  const subscribed = new Promise<void>((resolve) => (onSuback = resolve));
  child.stdout.on('data', (d: Buffer) => {
    const text = d.toString('utf8');
    stdout += text;
    partial += text;
    const parts = partial.split('\n');
    partial = parts.pop()!;
    for (const line of parts) {
      if (line.startsWith('Client ')) {
        if (line.includes('received SUBACK')) onSuback?.();
        continue;
      }
      if (line.startsWith('Subscribed (mid')) continue;
      lines.push(line);
    }
    for (const w of [...lineWaiters]) {
      if (lines.length >= w.count) {
        lineWaiters.splice(lineWaiters.indexOf(w), 1);
        w.resolve();
      }
    }
  });
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
  const exited = new Promise<MosquittoRun>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  return {
    lines,
    subscribed,
    exited,
    waitForLines(count, timeoutMs = 5000) {
      if (lines.length >= count) return Promise.resolve(lines);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`mosquitto_sub printed ${lines.length} of ${count} lines; stderr: ${stderr}`)),
          timeoutMs,
        );
        lineWaiters.push({
          count,
          resolve: () => {
            clearTimeout(timer);
            resolve(lines);
          },
        });
      });
    },
    kill(signal = 'SIGTERM') {
      if (child.exitCode === null) child.kill(signal);
    },
  };
}

/** A PUBLISH for a raw client. */
export function rawPublish(
  topic: string,
  payload: string | Buffer,
  qos: 0 | 1 | 2,
  messageId?: number,
  extra: Partial<RawPublish> = {},
): RawPublish {
  return {
    cmd: 'publish',
    topic,
    payload: typeof payload === 'string' ? Buffer.from(payload) : payload,
    qos,
    dup: false,
    retain: false,
    messageId: qos > 0 ? messageId : undefined,
    ...extra,
  };
}

/** SUBSCRIBE from a raw client; resolves with the SUBACK. */
export async function rawSubscribe(
  client: RawClient,
  version: 3 | 4 | 5,
  messageId: number,
  subscriptions: RawSubscribe['subscriptions'],
  properties?: RawSubscribe['properties'],
): Promise<RawSuback> {
  client.send({ cmd: 'subscribe', messageId, subscriptions, properties }, version === 3 ? 4 : version);
  return client.next('suback');
}
