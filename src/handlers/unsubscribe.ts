import type { IUnsubscribePacket } from 'mqtt-packet';
import type { Connection } from '../connection/connection.js';
import { ReasonCode } from '../protocol/reason-codes.js';
import { filterProblem, parseSharedFilter } from '../protocol/topic.js';

/**
 * UNSUBSCRIBE: remove each filter; v5 answers per filter whether a subscription existed ([MQTT-3.11.3-1]), and 0x8F
 * for a filter that is not a valid one (an empty filter, `a/#/b`), as SUBACK answers it: no subscription can have it.
 */
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
    if (!subscribable(filter, broker.limits.max_topic_length, broker.limits.max_topic_levels)) {
      codes.push(ReasonCode.topicFilterInvalid);
      continue;
    }
    const subscription = session.subscriptions.get(filter);
    if (subscription) broker.removeSubscription(subscription);
    codes.push(subscription ? ReasonCode.success : ReasonCode.noSubscriptionExisted);
  }
  // mqtt-packet encodes v5 UNSUBACK reason codes from `granted` (and ignores them for 3.1.1).
  connection.writePacket({ cmd: 'unsuback', messageId: packet.messageId, granted: codes });
}

/** What SUBSCRIBE would accept as a filter (`handleSubscribe`): anything else was never subscribed to. */
function subscribable(filter: string, maxLength: number, maxLevels: number): boolean {
  const shared = parseSharedFilter(filter);
  if (shared.kind === 'invalid') return false;
  return filterProblem(shared.kind === 'shared' ? shared.shared.filter : filter, maxLength, maxLevels) === undefined;
}
