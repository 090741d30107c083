import type { AuditActionName, AuditEvent } from '../audit/events.js';
import { DEFAULT_DENY_RULE } from '../authz/model.js';
import type { AccessAction, AuthzDecision, TopicAction } from '../authz/types.js';

/** What the records below read from a connection. */
export interface ConnectionFacts {
  readonly peer: { address: string; port: number };
  /** The CONNECT's username field as sent: nobody vouches for it. */
  readonly username: string | undefined;
  /** Who the authentication chain verified; undefined before (and after a refusal of) authentication. */
  readonly identity: { readonly username: string | undefined } | undefined;
  readonly clientId: string;
  readonly listener: { readonly name: string };
  readonly protocolVersion: number;
}

/**
 * An audit event about a connection (`client`, `user`, `mqtt` from it), a fresh literal that callers complete by
 * assignment (`authz`). The record* methods used to spread one shared base object (twice, for `mqtt`); object
 * spread was most of the broker's own cost of recording every allowed publish. Each nested object's members are in
 * sorted order, so the audit writer serialises the record with one JSON.stringify (audit/canonical.ts).
 *
 * `user.name` is only ever the verified identity's: a client admitted as anonymous, or refused, may have sent any
 * username, and a certificate or token names its own. What the client claimed is kept apart as `mqtt.username`.
 */
export function connectionEvent(
  connection: ConnectionFacts,
  event: AuditEvent['event'],
  reasonCode?: number,
): AuditEvent & { mqtt: NonNullable<AuditEvent['mqtt']> } {
  const record = connectionBase(connection, event);
  if (reasonCode !== undefined) record.mqtt.reason_code = reasonCode;
  if (connection.username !== undefined) record.mqtt.username = connection.username;
  return record;
}

/** `client`, `user` and the first `mqtt` members; `mqtt.username` sorts last, so callers add it after theirs. */
function connectionBase(
  connection: ConnectionFacts,
  event: AuditEvent['event'],
): AuditEvent & { mqtt: NonNullable<AuditEvent['mqtt']> } {
  const verified = connection.identity?.username;
  return {
    event,
    client: { ip: connection.peer.address, port: connection.peer.port },
    user: verified !== undefined ? { name: verified } : undefined,
    mqtt: {
      client_id: connection.clientId,
      listener: connection.listener.name,
      protocol_version: connection.protocolVersion,
    },
  };
}

/**
 * The record of a policy decision on a topic or filter: allowed (`success`) or denied (`failure`, code
 * `notAuthorized`), with the question the policy was asked (`access`, topic, QoS, retain flag) and the deciding
 * rule, so a reviewer can replay it with `bulwark policy explain`. `retain` is undefined for a subscription, which
 * has no retain flag. `reasonCode` is the code the client was sent about this decision (PUBACK, SUBACK, CONNACK),
 * undefined when it was told nothing: a QoS 0 publish, a withheld delivery, a 3.1.1 PUBACK.
 */
export function topicDecisionEvent(
  connection: ConnectionFacts,
  action: AuditActionName,
  access: TopicAction,
  topic: string,
  qos: number,
  retain: boolean | undefined,
  decision: AuthzDecision,
  reasonCode?: number,
): AuditEvent & { mqtt: NonNullable<AuditEvent['mqtt']> } {
  // With auditing of allowed traffic on, one of these is written per PUBLISH: members in sorted order (see above).
  const record = connectionBase(
    connection,
    decision.allowed
      ? { action, outcome: 'success', reason: decision.reason }
      : { action, code: 'notAuthorized', outcome: 'failure', reason: decision.reason },
  );
  record.mqtt.qos = qos;
  if (reasonCode !== undefined) record.mqtt.reason_code = reasonCode;
  if (retain !== undefined) record.mqtt.retain = retain;
  record.mqtt.topic = topic;
  if (connection.username !== undefined) record.mqtt.username = connection.username;
  record.authz = authzFields(access, decision);
  return record;
}

/**
 * The `authz` part of an audit record: the access asked for and the deciding rule as `file:line`, or
 * `default-deny` when none matched.
 */
export function authzFields(access: AccessAction, decision: AuthzDecision): NonNullable<AuditEvent['authz']> {
  const rule = decision.rule;
  if (!rule) return { action: access, rule: DEFAULT_DENY_RULE, rule_name: DEFAULT_DENY_RULE };
  return { action: access, rule: rule.location ?? rule.name, rule_name: rule.name, source: rule.source };
}

/**
 * `connection.malformed_connect`: the first packet was not a well-formed CONNECT (not a CONNECT at all, not
 * decodable, an unknown protocol level, a broken rule of the packet, too large), so there is no session and no
 * attempt to record. Who (address, port, listener), what the broker made of it (`code`, a reason name) and what the
 * client was sent (`reasonCode`, undefined when the connection was only closed). Never the packet's bytes, which may
 * hold a password; `detail` is the decoder's own message, cut short.
 */
export function malformedConnectEvent(
  peer: { address: string; port: number },
  listener: string,
  code: string,
  detail: string,
  reasonCode: number | undefined,
  protocolVersion: number | undefined,
): AuditEvent {
  const mqtt: NonNullable<AuditEvent['mqtt']> = { listener };
  if (protocolVersion !== undefined) mqtt.protocol_version = protocolVersion;
  if (reasonCode !== undefined) mqtt.reason_code = reasonCode;
  return {
    event: { action: 'connection.malformed_connect', outcome: 'failure', reason: detail.slice(0, 200), code },
    client: { ip: peer.address, port: peer.port },
    mqtt,
  };
}

/**
 * `connection.connect_timeout`: the connection was closed because no CONNECT arrived within
 * `limits.connect_timeout_ms` (`connect_timeout`), or an enhanced authentication exchange the CONNECT started did
 * not finish in that time (`authentication_timeout`, with the client id the CONNECT named). Nobody was verified.
 */
export function connectTimeoutEvent(
  peer: { address: string; port: number },
  listener: string,
  authenticating: { clientId: string } | undefined,
  detail: string,
): AuditEvent {
  const mqtt: NonNullable<AuditEvent['mqtt']> = { listener };
  if (authenticating !== undefined && authenticating.clientId !== '') mqtt.client_id = authenticating.clientId;
  return {
    event: {
      action: 'connection.connect_timeout',
      outcome: 'failure',
      reason: detail,
      code: authenticating === undefined ? 'connect_timeout' : 'authentication_timeout',
    },
    client: { ip: peer.address, port: peer.port },
    mqtt,
  };
}
