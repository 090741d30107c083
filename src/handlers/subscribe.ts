import type { ISubscribePacket, ISubscription } from 'mqtt-packet';
import type { AuthzDecision } from '../../authz/types.js';
import type { Connection } from '../connection/connection.js';
import { ReasonCode, v3SubackCode, type ReasonName } from '../protocol/reason-codes.js';
import { filterProblem, hasWildcard, parseSharedFilter } from '../protocol/topic.js';
import type { QoS } from '../routing/message.js';
import type { Subscription } from '../routing/subscription.js';

interface FilterCheck {
  request: ISubscription;
  filter: string;
  shareGroup: string | undefined;
  /** Set when the filter is refused before authorization. */
  refusal: ReasonName | undefined;
  detail: string | undefined;
  decision: AuthzDecision | Promise<AuthzDecision> | undefined;
}

/**
 * SUBSCRIBE: validate each filter, authorize it, store granted subscriptions, answer SUBACK with one code per
 * filter ([MQTT-3.8.4-6]), then send matching retained messages as Retain Handling says.
 */
export function handleSubscribe(connection: Connection, packet: ISubscribePacket): Promise<void> | void {
  const broker = connection.broker;
  const limits = broker.limits;
  if (packet.subscriptions.length === 0) {
    // [MQTT-3.8.3-2] a SUBSCRIBE must carry at least one topic filter.
    connection.protocolViolation('protocolError', 'SUBSCRIBE without a topic filter');
    return;
  }
  const subscriptionId = packet.properties?.subscriptionIdentifier;
  if (subscriptionId !== undefined && (Array.isArray(subscriptionId) || subscriptionId === 0)) {
    // MQTT 5 section 3.8.2.1.2: a Subscription Identifier of 0 is a protocol error.
    connection.protocolViolation('protocolError', 'invalid subscription identifier');
    return;
  }
  const checks: FilterCheck[] = [];
  // Fail closed (docs/audit.md "Durability and failure"): while the audit log cannot be written, no subscription
  // is granted, since its decision could not be recorded. 0x80 Unspecified error rather than 0x97 Quota exceeded:
  // the client did nothing wrong and has no quota to lower; 3.1.1 has only 0x80 anyway.
  const auditUnavailable = !broker.audit.writable;
  // Filters this SUBSCRIBE adds, so the subscription limit also holds within one packet.
  const newFilters = new Set<string>();
  let asynchronous = false;
  for (const request of packet.subscriptions) {
    const check: FilterCheck = {
      request,
      filter: request.topic,
      shareGroup: undefined,
      refusal: undefined,
      detail: undefined,
      decision: undefined,
    };
    checks.push(check);
    const shared = parseSharedFilter(request.topic);
    if (shared.kind === 'invalid') {
      check.refusal = 'topicFilterInvalid';
      check.detail = shared.why;
      continue;
    }
    if (shared.kind === 'shared') {
      check.filter = shared.shared.filter;
      check.shareGroup = shared.shared.group;
      if (request.nl) {
        // [MQTT-3.8.3-4] No Local on a shared subscription is a protocol error.
        connection.protocolViolation('protocolError', 'no local is not allowed on a shared subscription');
        return;
      }
    }
    const problem = filterProblem(check.filter, limits.max_topic_length, limits.max_topic_levels);
    if (problem !== undefined) {
      check.refusal = 'topicFilterInvalid';
      check.detail = `invalid topic filter (${problem})`;
      continue;
    }
    if (auditUnavailable) {
      check.refusal = 'unspecifiedError';
      check.detail = 'audit log unavailable (fail-closed)';
      continue;
    }
    const session = connection.session!;
    const isNew = !session.subscriptions.has(request.topic) && !newFilters.has(request.topic);
    if (isNew && session.subscriptions.size + newFilters.size >= limits.max_subscriptions) {
      check.refusal = 'quotaExceeded';
      check.detail = `at most ${limits.max_subscriptions} subscriptions per session`;
      continue;
    }
    if (isNew) newFilters.add(request.topic);
    const qos = Math.min(request.qos, limits.max_qos) as QoS;
    check.decision = broker.authorizeSubscribe(connection, check.filter, qos, check.shareGroup);
    if (check.decision instanceof Promise) asynchronous = true;
  }
  if (!asynchronous) {
    finish(connection, packet, checks, subscriptionId);
    return;
  }
  return Promise.all(checks.map((c) => c.decision)).then((decisions) => {
    decisions.forEach((d, i) => (checks[i]!.decision = d));
    finish(connection, packet, checks, subscriptionId);
  });
}

function finish(
  connection: Connection,
  packet: ISubscribePacket,
  checks: FilterCheck[],
  subscriptionId: number | undefined,
): void {
  if (connection.state === 'closed') return;
  const broker = connection.broker;
  const session = connection.session!;
  const granted: number[] = [];
  const retainedFor: { subscription: Subscription; isNew: boolean }[] = [];
  for (const check of checks) {
    const decision = check.decision as AuthzDecision | undefined;
    if (check.refusal || !decision?.allowed) {
      const reason: ReasonName = check.refusal ?? 'notAuthorized';
      const code = connection.isV5 ? ReasonCode[reason] : v3SubackCode(reason);
      if (!check.refusal && decision)
        broker.recordSubscribeDenied(connection, check.request.topic, check.request.qos, decision, code);
      else
        broker.log.info(
          { clientId: connection.clientId, filter: check.request.topic, reason, detail: check.detail },
          'subscription refused',
        );
      granted.push(code);
      continue;
    }
    const qos = Math.min(check.request.qos, broker.limits.max_qos) as QoS;
    const subscription: Subscription = {
      session,
      key: check.request.topic,
      filter: check.filter,
      shareGroup: check.shareGroup,
      qos,
      noLocal: connection.isV5 ? (check.request.nl ?? false) : false,
      retainAsPublished: connection.isV5 ? (check.request.rap ?? false) : false,
      retainHandling: connection.isV5 ? ((check.request.rh ?? 0) as 0 | 1 | 2) : 0,
      subscriptionId,
      receiveProof: undefined,
    };
    if (broker.allowedAudit.subscribe()) broker.recordSubscribeAllowed(connection, check.request.topic, qos, decision);
    const isNew = broker.addSubscription(subscription);
    granted.push(qos);
    if (subscription.shareGroup === undefined) retainedFor.push({ subscription, isNew });
  }
  connection.writePacket({ cmd: 'suback', messageId: packet.messageId, granted });
  // [MQTT-3.3.1-9] retained messages on subscribe, per Retain Handling: 0 always, 1 only if new, 2 never.
  for (const { subscription, isNew } of retainedFor) {
    if (subscription.retainHandling === 2 || (subscription.retainHandling === 1 && !isNew)) continue;
    broker.deliverRetained(connection, subscription);
  }
}

export { hasWildcard };
