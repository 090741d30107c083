import type { IUnsubscribePacket } from 'mqtt-packet';
import type { Connection } from '../connection/connection.js';
import { ReasonCode } from '../protocol/reason-codes.js';

/** UNSUBSCRIBE: remove each filter; v5 answers per filter whether a subscription existed ([MQTT-3.11.3-1]). */
export function handleUnsubscribe(connection: Connection, packet: IUnsubscribePacket): void {
  if (packet.unsubscriptions.length === 0) {
    // [MQTT-3.10.3-2] an UNSUBSCRIBE must carry at least one topic filter.
    connection.protocolViolation('protocolError', 'UNSUBSCRIBE without a topic filter');
    return;
  }
  const broker = connection.broker;
  const session = connection.session!;
  const codes: number[] = [];
  for (const filter of packet.unsubscriptions) {
    const subscription = session.subscriptions.get(filter);
    if (subscription) broker.removeSubscription(subscription);
    codes.push(subscription ? ReasonCode.success : ReasonCode.noSubscriptionExisted);
  }
  // mqtt-packet encodes v5 UNSUBACK reason codes from `granted` (and ignores them for 3.1.1).
  connection.writePacket({ cmd: 'unsuback', messageId: packet.messageId, granted: codes });
}
