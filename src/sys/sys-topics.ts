import type { Broker } from '../broker.js';
import { BROKER_VERSION } from '../version.js';

/**
 * Publishes `$SYS/broker/...` as retained messages on an interval, with Mosquitto's topic names so existing
 * dashboards work. Values are plain decimal strings.
 */
export class SysTopics {
  private timer: NodeJS.Timeout | undefined;
  private readonly extra = new Map<string, () => string>();

  constructor(
    private readonly broker: Broker,
    private readonly intervalSeconds: number,
  ) {}

  /** Other subsystems (store, audit) add their own values. */
  add(topic: string, value: () => string): void {
    this.extra.set(topic, value);
  }

  start(): void {
    if (this.intervalSeconds <= 0) return;
    this.publishAll();
    this.timer = setInterval(() => this.publishAll(), this.intervalSeconds * 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  values(): Map<string, string> {
    const b = this.broker;
    const s = b.stats;
    const values = new Map<string, string>([
      ['$SYS/broker/version', `bulwark ${BROKER_VERSION}`],
      ['$SYS/broker/uptime', `${Math.floor((Date.now() - s.startedAt) / 1000)} seconds`],
      ['$SYS/broker/clients/connected', String(s.clientsConnected)],
      ['$SYS/broker/clients/total', String(b.sessions.size)],
      ['$SYS/broker/clients/disconnected', String(Math.max(0, b.sessions.size - s.clientsConnected))],
      ['$SYS/broker/clients/maximum', String(s.clientsMaximum)],
      ['$SYS/broker/connections/total', String(s.connectionsTotal)],
      ['$SYS/broker/messages/received', String(s.messagesReceived)],
      ['$SYS/broker/messages/sent', String(s.messagesSent)],
      ['$SYS/broker/messages/dropped', String(s.messagesDropped)],
      ['$SYS/broker/messages/discarded', String(s.messagesDiscarded)],
      ['$SYS/broker/bytes/received', String(s.bytesReceived)],
      ['$SYS/broker/bytes/sent', String(s.bytesSent)],
      ['$SYS/broker/subscriptions/count', String(b.tree.size)],
      ['$SYS/broker/retained messages/count', String(b.retained.size)],
      ['$SYS/broker/security/connect_refused', String(s.connectRefused)],
      ['$SYS/broker/security/publish_denied', String(s.publishDenied)],
      ['$SYS/broker/security/subscribe_denied', String(s.subscribeDenied)],
      ['$SYS/broker/protocol_errors', String(s.protocolErrors)],
    ]);
    for (const [topic, value] of this.extra) values.set(topic, value());
    return values;
  }

  publishAll(): void {
    for (const [topic, value] of this.values()) {
      this.broker.publish({
        topic,
        payload: Buffer.from(value),
        qos: 0,
        retain: true,
        properties: undefined,
        expiresAt: undefined,
        publisherId: undefined,
      });
    }
  }
}
