import type { MqttClient, Packet } from 'mqtt';

/** Every packet an mqtt.js client received, so a test can wait for a PUBACK/PUBREC/SUBACK and read its reason code. */
export class PacketLog {
  readonly packets: Packet[] = [];
  private waiters: { match: (p: Packet) => boolean; resolve: (p: Packet) => void }[] = [];

  constructor(client: MqttClient) {
    client.on('packetreceive', (packet) => {
      this.packets.push(packet);
      this.waiters = this.waiters.filter((w) => {
        if (!w.match(packet)) return true;
        w.resolve(packet);
        return false;
      });
    });
  }

  /** The first packet (already received or still to come) for which `match` holds. */
  next(match: (p: Packet) => boolean, what: string, timeoutMs = 5000): Promise<Packet> {
    const seen = this.packets.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
      this.waiters.push({
        match,
        resolve: (p) => {
          clearTimeout(timer);
          resolve(p);
        },
      });
    });
  }

  /** The acknowledgement (`puback` or `pubrec`) of the PUBLISH with this packet id. */
  ack(cmd: 'puback' | 'pubrec', messageId: number): Promise<Packet & { reasonCode?: number }> {
    return this.next(
      (p) => p.cmd === cmd && 'messageId' in p && p.messageId === messageId,
      `${cmd} ${messageId}`,
    ) as Promise<Packet & { reasonCode?: number }>;
  }
}

/**
 * Publishes with mqtt.js and returns the packet id it used, without waiting for the acknowledgement (a denied
 * v5 publish rejects the callback with the reason code; a denied 3.1.1 publish may never be acknowledged).
 */
export function publishNoWait(
  client: MqttClient,
  topic: string,
  payload: string,
  opts: { qos: 0 | 1 | 2; retain?: boolean },
): Promise<number | undefined> {
  return new Promise((resolve) => {
    const onSend = (p: Packet): void => {
      if (p.cmd !== 'publish' || p.topic !== topic) return;
      client.removeListener('packetsend', onSend);
      resolve(p.messageId);
    };
    client.on('packetsend', onSend);
    client.publish(topic, payload, opts, () => undefined);
  });
}

/**
 * SUBSCRIBE through mqtt.js and resolve with the SUBACK's return codes, one per filter in order. mqtt.js v5
 * rejects its own callback when any code is a failure, so the codes are read off the wire instead.
 */
export async function subscribeCodes(
  client: MqttClient,
  log: PacketLog,
  filters: Record<string, { qos: 0 | 1 | 2 }>,
): Promise<number[]> {
  const before = log.packets.filter((p) => p.cmd === 'suback').length;
  client.subscribe(filters, () => undefined);
  let seen = 0;
  const suback = await log.next((p) => p.cmd === 'suback' && ++seen > before, 'suback');
  return 'granted' in suback ? (suback.granted as number[]) : [];
}
