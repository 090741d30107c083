import type { IPublishPacket } from 'mqtt-packet';
import type { AuthzDecision } from '../../authz/types.js';
import type { Connection } from '../connection/connection.js';
import { ReasonCode, type ReasonName } from '../protocol/reason-codes.js';
import { checkTopicName } from '../protocol/topic.js';
import { forwardedProperties, type Message, type QoS } from '../routing/message.js';

/**
 * An inbound PUBLISH: resolve the topic alias, validate, authorize, route, acknowledge.
 * The common case (policy answered synchronously) runs without a promise.
 */
export function handlePublish(connection: Connection, packet: IPublishPacket): Promise<void> | void {
  const broker = connection.broker;
  const limits = broker.limits;
  const qos = packet.qos;
  if (packet.properties?.subscriptionIdentifier !== undefined) {
    // [MQTT-3.3.4-6] a PUBLISH from a client must not carry a Subscription Identifier.
    connection.protocolViolation('protocolError', 'subscription identifier in a client PUBLISH');
    return;
  }
  const responseTopic = packet.properties?.responseTopic;
  const responseProblem =
    responseTopic === undefined ? undefined : checkTopicName(responseTopic, limits.max_topic_length);
  if (responseProblem) {
    // [MQTT-3.3.2-14] a Response Topic is a topic name (its receiver publishes to it): no wildcards.
    connection.protocolViolation('protocolError', `invalid response topic (${responseProblem})`);
    return;
  }
  const topic = resolveTopic(connection, packet);
  if (topic === undefined) return;

  const problem = checkTopicName(topic, limits.max_topic_length);
  if (problem) {
    // [MQTT-1.5.4-2] U+0000 makes the packet malformed; ill-formed UTF-8 ([MQTT-1.5.4-1]) never gets here (framer).
    const malformed = problem === 'nullCharacter';
    connection.protocolViolation(malformed ? 'malformedPacket' : 'topicNameInvalid', `invalid topic name (${problem})`);
    return;
  }
  if (qos > limits.max_qos) {
    // [MQTT-3.2.2-11] a QoS above Maximum QoS is a protocol error: DISCONNECT 0x9B.
    connection.protocolViolation('qosNotSupported', `QoS ${qos} exceeds the maximum QoS ${limits.max_qos}`);
    return;
  }
  if (packet.retain && !limits.retain_available) {
    connection.protocolViolation('retainNotSupported', 'retained messages are not available');
    return;
  }
  broker.stats.messagesReceived++;

  if (qos > 0) {
    const id = packet.messageId!;
    if (qos === 2 && connection.session!.inboundQos2.has(id)) {
      // [MQTT-4.3.3-9] a re-sent QoS 2 PUBLISH whose PUBREC we already sent is not routed again.
      connection.writePacket({ cmd: 'pubrec', messageId: id });
      return;
    }
    if (connection.inboundUnacknowledged >= limits.receive_maximum) {
      // [MQTT-3.3.4-9] more unacknowledged QoS 1/2 PUBLISH than our Receive Maximum.
      connection.protocolViolation(
        'receiveMaximumExceeded',
        `more than ${limits.receive_maximum} unacknowledged QoS 1/2 messages`,
      );
      return;
    }
    connection.inboundUnacknowledged++;
  }

  const decision = broker.authorizePublish(connection, topic, qos, packet.retain);
  if (decision instanceof Promise) {
    return decision.then((d) => complete(connection, packet, topic, d));
  }
  complete(connection, packet, topic, decision);
}

function complete(connection: Connection, packet: IPublishPacket, topic: string, decision: AuthzDecision): void {
  if (connection.state === 'closed') return;
  if (!decision.allowed) {
    denied(connection, packet, topic, decision);
    return;
  }
  const broker = connection.broker;
  const expiry = packet.properties?.messageExpiryInterval;
  const message: Message = {
    topic,
    payload: packet.payload as Buffer,
    qos: packet.qos,
    retain: packet.retain,
    properties: connection.isV5 ? forwardedProperties(packet) : undefined,
    expiresAt: expiry !== undefined ? Date.now() + expiry * 1000 : undefined,
    publisherId: connection.clientId,
  };
  if (broker.allowedAudit.publish())
    broker.recordPublishAllowed(connection, topic, packet.qos, packet.retain, message.payload, decision);
  const store = broker.store;
  const before = store?.lastSeq ?? 0;
  broker.publish(message);
  if (packet.qos === 2 && connection.session!.journal)
    store!.inboundQos2Received(connection.clientId, packet.messageId!);
  // The acknowledgement waits for whatever this message made the store write: until it is synced (`sync`) or
  // handed to the OS (`periodic`), so that a broker crash after the PUBACK cannot lose it (docs/persistence.md).
  const seq = store && store.lastSeq !== before ? store.lastSeq : 0;
  acknowledge(connection, packet, 'success', undefined, seq);
}

function denied(connection: Connection, packet: IPublishPacket, topic: string, decision: AuthzDecision): void {
  const broker = connection.broker;
  // Only MQTT 5 acknowledgements carry a code: QoS 0 gets none, and 3.1.1 either disconnects or acknowledges.
  const reasonCode = connection.isV5 && packet.qos > 0 ? ReasonCode.notAuthorized : undefined;
  broker.recordPublishDenied(connection, topic, packet.qos, packet.retain, decision, reasonCode);
  if (!connection.isV5 && connection.listener.config.v3_publish_denied === 'disconnect') {
    connection.close('notAuthorized', `publish to ${topic} denied`);
    return;
  }
  // v5: PUBACK/PUBREC 0x87 tells the client; 3.1.1 in `drop` mode acknowledges as if delivered (Mosquitto).
  acknowledge(connection, packet, connection.isV5 ? 'notAuthorized' : 'success', decision.reason, 0);
}

function acknowledge(
  connection: Connection,
  packet: IPublishPacket,
  reason: ReasonName,
  detail: string | undefined,
  seq: number,
): void {
  const qos = packet.qos;
  if (qos === 0) return;
  const id = packet.messageId!;
  const reasonCode = connection.isV5 && reason !== 'success' ? ReasonCode[reason] : undefined;
  const properties = reasonCode !== undefined ? connection.reasonProperties(detail) : undefined;
  if (qos === 1) {
    connection.inboundUnacknowledged--;
    connection.sendAck('puback', id, reasonCode, properties, seq);
    return;
  }
  if (reasonCode === undefined) connection.session!.inboundQos2.add(id);
  else connection.inboundUnacknowledged--;
  connection.sendAck('pubrec', id, reasonCode, properties, seq);
}

/** [MQTT-3.3.2-12] topic aliases: set on a non-empty topic, looked up on an empty one. */
function resolveTopic(connection: Connection, packet: IPublishPacket): string | undefined {
  const alias = packet.properties?.topicAlias;
  if (alias === undefined || !connection.isV5) {
    if (packet.topic.length === 0) {
      connection.protocolViolation(
        connection.isV5 ? 'protocolError' : 'topicNameInvalid',
        'empty topic name without a topic alias',
      );
      return undefined;
    }
    return packet.topic;
  }
  const maximum = connection.broker.limits.topic_alias_maximum;
  if (alias === 0 || alias > maximum) {
    connection.protocolViolation('topicAliasInvalid', `topic alias ${alias} is outside 1..${maximum}`);
    return undefined;
  }
  if (packet.topic.length > 0) {
    (connection.inboundAliases ??= new Map()).set(alias, packet.topic);
    return packet.topic;
  }
  const topic = connection.inboundAliases?.get(alias);
  if (topic === undefined) {
    connection.protocolViolation('protocolError', `topic alias ${alias} has not been set`);
    return undefined;
  }
  return topic;
}

export type { QoS };
