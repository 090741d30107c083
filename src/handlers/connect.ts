import { Buffer } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import type { IConnackPacket, IConnectPacket } from 'mqtt-packet';
import { Secret } from '../../authn/secret.js';
import { clientReasonString } from '../../authn/client-detail.js';
import { recordableUsername, type ChainResult, type ConnectAttempt } from '../../authn/types.js';
import type { AuthzDecision } from '../../authz/types.js';
import type { Connection } from '../connection/connection.js';
import { ReasonCode, v3ConnackCode, type ReasonName } from '../protocol/reason-codes.js';
import { checkTopicName } from '../protocol/topic.js';
import { forwardedProperties, type Message, type QoS } from '../routing/message.js';
import type { Session } from '../session/session.js';

/** Everything the CONNECT steps share. */
export interface ConnectContext {
  connection: Connection;
  packet: IConnectPacket;
  attempt: ConnectAttempt;
  cleanStart: boolean;
  sessionExpiry: number;
  sessionExpiryClamped: boolean;
  assignedClientId: string | undefined;
  serverKeepAlive: number | undefined;
  will: Message | undefined;
  willDelay: number;
  /** Message Expiry Interval of the will, applied from the moment it is published. */
  willExpiry: number | undefined;
  authResult: Extract<ChainResult, { kind: 'allow' }> | undefined;
}

/**
 * `detail` goes to the audit record and the log. The client's Reason String is `clientDetail` when set (a refusal
 * by the authentication chain always sets it: see `clientReasonString`), else `detail`, which the broker's own
 * steps write for the client to read (a malformed CONNECT, a ban, the policy).
 */
export type StepResult =
  | { ok: true }
  | {
      ok: false;
      reason: ReasonName;
      detail: string;
      clientDetail?: string;
      audited?: boolean;
      /** The authentication chain's deciding step (`decidedBy`), when the chain refused: a metrics label. */
      authenticator?: string;
    };

type ConnectStep = (ctx: ConnectContext) => StepResult | Promise<StepResult>;

const OK: StepResult = { ok: true };

/** Before authentication: cheap checks first, so a refused client costs as little as possible. */
const preAuthSteps: readonly ConnectStep[] = [validateConnect, checkGuard];
/** After the chain (and the guard) allowed the client: may this identity connect, may it leave this will. */
const postAuthSteps: readonly ConnectStep[] = [authorizeConnect, authorizeWill, openSession];

/**
 * CONNECT runs synchronously until a step has to wait: an anonymous or cached connect is answered in the same turn,
 * with no promise. A step that returns a promise continues the rest from its answer.
 */
export function handleConnect(connection: Connection, packet: IConnectPacket): void | Promise<void> {
  connection.state = 'authenticating';
  const ctx = createContext(connection, packet);
  if (!ctx) return;
  return runPreAuthSteps(ctx, 0);
}

function runPreAuthSteps(ctx: ConnectContext, from: number): void | Promise<void> {
  for (let i = from; i < preAuthSteps.length; i++) {
    const result = preAuthSteps[i]!(ctx);
    if (result instanceof Promise)
      return result.then((r) => (r.ok ? runPreAuthSteps(ctx, i + 1) : refuseConnect(ctx, r)));
    if (!result.ok) return refuseConnect(ctx, result);
  }
  const chain = ctx.connection.listener.authenticator;
  if (ctx.attempt.authMethod !== undefined && !chain.supportsMethod(ctx.attempt.authMethod)) {
    return refuseConnect(ctx, {
      ok: false,
      reason: 'badAuthenticationMethod',
      detail: `authentication method ${ctx.attempt.authMethod} is not supported`,
    });
  }
  const result = chain.authenticate(ctx.attempt);
  if (result instanceof Promise) return result.then((r) => continueAfterAuthentication(ctx, r));
  return continueAfterAuthentication(ctx, result);
}

/** Shared by CONNECT and by AUTH packets of an enhanced authentication exchange. */
export function continueAfterAuthentication(ctx: ConnectContext, result: ChainResult): void | Promise<void> {
  const connection = ctx.connection;
  if (connection.state === 'closed') return;
  // A finished exchange must not be continued later: re-authentication starts afresh with AUTH 0x19.
  if (result.kind !== 'continue') connection.exchange = undefined;
  if (result.kind === 'continue') {
    const named = result.attemptedUsername;
    if (named !== undefined && named !== ctx.attempt.username) {
      // The exchange named a user the CONNECT did not: a banned or locked-out name goes no further than it would
      // have as a User Name, before the client gets a chance to prove anything.
      const verdict = connection.broker.guardCheckAttemptedUsername(connection, named);
      if (verdict.kind === 'refuse')
        return refuseConnect(ctx, { ok: false, reason: verdict.reason, detail: verdict.detail, audited: true });
    }
    connection.exchange = result.state;
    connection.pendingConnect = ctx;
    connection.writePacket({
      cmd: 'auth',
      reasonCode: ReasonCode.continueAuthentication,
      properties: { authenticationMethod: result.method, authenticationData: result.data },
    });
    return;
  }
  const verdict = connection.broker.guardAfterAuthentication(connection, result);
  if (result.kind === 'allow' && verdict.kind === 'refuse') {
    // The guard recorded why; the client is refused as banned or rate-limited.
    return refuseConnect(ctx, { ok: false, reason: verdict.reason, detail: verdict.detail, audited: true });
  }
  if (result.kind === 'deny') {
    connection.broker.recordAuthentication(connection, ctx.attempt, result);
    return refuseConnect(ctx, chainRefusal(result));
  }
  ctx.authResult = result;
  connection.identity = result.identity;
  return runPostAuthSteps(ctx, result, 0);
}

function runPostAuthSteps(
  ctx: ConnectContext,
  result: Extract<ChainResult, { kind: 'allow' }>,
  from: number,
): void | Promise<void> {
  for (let i = from; i < postAuthSteps.length; i++) {
    const outcome = postAuthSteps[i]!(ctx);
    if (outcome instanceof Promise)
      return outcome.then((o) =>
        o.ok ? runPostAuthSteps(ctx, result, i + 1) : refuseAfterAuthentication(ctx, result, o),
      );
    if (!outcome.ok) return refuseAfterAuthentication(ctx, result, outcome);
  }
  ctx.connection.broker.recordAuthentication(ctx.connection, ctx.attempt, result);
}

/** The chain allowed the client but a later step (policy, will, session) did not: recorded as the broker's deny. */
function refuseAfterAuthentication(
  ctx: ConnectContext,
  result: Extract<ChainResult, { kind: 'allow' }>,
  outcome: Extract<StepResult, { ok: false }>,
): void {
  ctx.connection.broker.recordAuthentication(ctx.connection, ctx.attempt, {
    kind: 'deny',
    reason: outcome.reason,
    detail: outcome.detail,
    decidedBy: 'broker',
    steps: result.steps,
  });
  refuseConnect(ctx, { ...outcome, audited: true });
}

function createContext(connection: Connection, packet: IConnectPacket): ConnectContext | undefined {
  const properties = packet.properties ?? {};
  const limits = connection.broker.limits;
  const v5 = packet.protocolVersion === 5;
  const requestedExpiry = v5 ? (properties.sessionExpiryInterval ?? 0) : packet.clean ? 0 : 0xffff_ffff;
  const sessionExpiry = Math.min(requestedExpiry, limits.max_session_expiry_interval);
  const password = packet.password === undefined ? undefined : new Secret(packet.password);
  const attempt: ConnectAttempt = {
    listener: connection.listener.name,
    clientId: packet.clientId,
    username: packet.username,
    password,
    protocolVersion: packet.protocolVersion as 3 | 4 | 5,
    peer: connection.peer,
    tls: connection.tls,
    authMethod: properties.authenticationMethod,
    authData: properties.authenticationData,
    usernameIsCredential: connection.listener.authenticator.usernameIsCredential === true,
  };
  connection.attempt = attempt;
  // What audit records show as `mqtt.username`: never a token the User Name carries.
  connection.username = recordableUsername(attempt);
  return {
    connection,
    packet,
    attempt,
    cleanStart: packet.clean ?? true,
    sessionExpiry,
    sessionExpiryClamped: v5 && sessionExpiry !== requestedExpiry,
    assignedClientId: undefined,
    serverKeepAlive: undefined,
    will: undefined,
    willDelay: 0,
    willExpiry: undefined,
    authResult: undefined,
  };
}

/** [MQTT-3.1.2] and [MQTT-3.1.3]: everything that can be refused without knowing who the client is. */
function validateConnect(ctx: ConnectContext): StepResult {
  const { connection, packet, attempt } = ctx;
  const limits = connection.broker.limits;
  const version = packet.protocolVersion;
  const v5 = version === 5;
  const properties = packet.properties;
  // First: a refusal's CONNACK, Reason String included, must not exceed it either ([MQTT-3.1.2-24], [MQTT-3.2.2-19]).
  if (v5 && properties?.maximumPacketSize !== undefined && properties.maximumPacketSize > 0)
    connection.clientMaximumPacketSize = properties.maximumPacketSize;
  if ((version === 3) !== (packet.protocolId === 'MQIsdp')) {
    return {
      ok: false,
      reason: 'unsupportedProtocolVersion',
      detail: `protocol name ${packet.protocolId} does not match level ${version}`,
    };
  }
  if (version === 4 && packet.password !== undefined && packet.username === undefined) {
    // [MQTT-3.1.2-22] 3.1.1 forbids a password without a user name.
    return { ok: false, reason: 'protocolError', detail: 'password without user name' };
  }
  if (v5 && properties) {
    if (properties.receiveMaximum === 0) return { ok: false, reason: 'protocolError', detail: 'receive maximum of 0' };
    if (properties.maximumPacketSize === 0)
      return { ok: false, reason: 'protocolError', detail: 'maximum packet size of 0' };
    if (properties.authenticationData !== undefined && properties.authenticationMethod === undefined) {
      return { ok: false, reason: 'protocolError', detail: 'authentication data without a method' };
    }
    connection.clientReceiveMaximum = properties.receiveMaximum ?? 65_535;
    connection.clientMaximumPacketSize = properties.maximumPacketSize ?? 268_435_460;
    connection.clientTopicAliasMaximum = properties.topicAliasMaximum ?? 0;
    connection.requestProblemInformation = properties.requestProblemInformation !== false;
  }

  let clientId = packet.clientId;
  if (clientId.length === 0) {
    // [MQTT-3.1.3-7] 3.1.1 refuses an empty client id with a persistent session; 3.1 refuses any.
    if (version === 3 || (version === 4 && !packet.clean)) {
      return { ok: false, reason: 'clientIdentifierNotValid', detail: 'empty client identifier needs clean session' };
    }
    clientId = `auto-${randomUUID()}`;
    if (v5) ctx.assignedClientId = clientId;
  }
  if (clientId.length > limits.max_client_id_length || (version === 3 && clientId.length > 23)) {
    return { ok: false, reason: 'clientIdentifierNotValid', detail: 'client identifier too long' };
  }
  // Ill-formed UTF-8 and U+0000 do not get here: the codec refuses such a CONNECT as malformed [MQTT-1.5.4-1/2].
  // A well-formed U+FFFD is refused by choice: in logs, audit and %c substitution it could not be told from a
  // decoding error. U+0000 is checked again so that no other path can hand one over.
  if (clientId.includes('\ufffd') || clientId.includes('\u0000')) {
    return { ok: false, reason: 'clientIdentifierNotValid', detail: 'client identifier contains U+FFFD or U+0000' };
  }
  attempt.clientId = clientId;
  connection.clientId = clientId;

  const keepalive = packet.keepalive ?? 0;
  if (keepalive > limits.max_keepalive || (keepalive === 0 && limits.max_keepalive < 65_535)) {
    if (!v5) {
      // 3.1.1 cannot be told another keep alive: refused as Mosquitto does.
      return {
        ok: false,
        reason: 'clientIdentifierNotValid',
        detail: `keep alive ${keepalive} exceeds the maximum ${limits.max_keepalive}`,
      };
    }
    ctx.serverKeepAlive = limits.max_keepalive;
  }
  connection.keepalive = ctx.serverKeepAlive ?? keepalive;

  const will = packet.will;
  if (will) {
    const problem = checkTopicName(will.topic, limits.max_topic_length);
    if (problem) return { ok: false, reason: 'topicNameInvalid', detail: `invalid will topic (${problem})` };
    const willQos = (will.qos ?? 0) as QoS;
    if (willQos > limits.max_qos)
      return { ok: false, reason: 'qosNotSupported', detail: `will QoS ${will.qos} exceeds the maximum` };
    if (will.retain && !limits.retain_available)
      return { ok: false, reason: 'retainNotSupported', detail: 'retained wills are not available' };
    const willProperties = will.properties;
    const responseTopic = v5 ? willProperties?.responseTopic : undefined;
    const responseProblem =
      responseTopic === undefined ? undefined : checkTopicName(responseTopic, limits.max_topic_length);
    // [MQTT-3.3.2-14] as for a PUBLISH: the will's Response Topic is a topic name.
    if (responseProblem)
      return { ok: false, reason: 'protocolError', detail: `invalid will response topic (${responseProblem})` };
    const expiry = willProperties?.messageExpiryInterval;
    ctx.will = {
      topic: will.topic,
      payload: Buffer.isBuffer(will.payload) ? will.payload : Buffer.from(will.payload ?? ''),
      qos: willQos,
      retain: will.retain ?? false,
      properties:
        v5 && willProperties
          ? forwardedProperties({
              cmd: 'publish',
              topic: will.topic,
              payload: '',
              qos: 0,
              dup: false,
              retain: false,
              properties: willProperties,
            })
          : undefined,
      expiresAt: undefined,
      publisherId: clientId,
    };
    ctx.willDelay = v5 ? (willProperties?.willDelayInterval ?? 0) : 0;
    ctx.willExpiry = expiry;
  }
  return OK;
}

/** Block list, flapping and brute-force throttling run before any expensive authentication. */
function checkGuard(ctx: ConnectContext): StepResult {
  const verdict = ctx.connection.broker.guardCheckConnect(ctx.connection, ctx.attempt);
  if (verdict.kind === 'pass') return OK;
  return { ok: false, reason: verdict.reason, detail: verdict.detail, audited: true };
}

/**
 * The policy's `connect` action, asked with the authenticated identity: a client the policy does not allow is
 * refused with 0x87 (MQTT 5 section 3.2.2.2), 0x05 on 3.1.1 and 3.1 (the one mapping in protocol/reason-codes.ts).
 */
function authorizeConnect(ctx: ConnectContext): StepResult | Promise<StepResult> {
  const broker = ctx.connection.broker;
  const decision = broker.authorizeConnect(ctx.connection);
  const judge = (d: AuthzDecision): StepResult => {
    if (d.allowed) return OK;
    broker.recordConnectDenied(ctx.connection, d);
    return { ok: false, reason: 'notAuthorized', detail: 'not allowed to connect by the authorization policy' };
  };
  if (decision instanceof Promise) return decision.then(judge);
  return judge(decision);
}

/** MQTT 5 section 3.2.2.2 (0x87): a will the client may not publish refuses the CONNECT with 0x87. */
function authorizeWill(ctx: ConnectContext): StepResult | Promise<StepResult> {
  const will = ctx.will;
  if (!will) return OK;
  const decision = ctx.connection.broker.authorizePublish(ctx.connection, will.topic, will.qos, will.retain);
  const judge = (d: AuthzDecision): StepResult => {
    if (d.allowed) return OK;
    ctx.connection.broker.recordWillDenied(ctx.connection, will, d);
    return { ok: false, reason: 'notAuthorized', detail: `will topic ${will.topic} not allowed` };
  };
  if (decision instanceof Promise) return decision.then(judge);
  return judge(decision);
}

/** Takeover, clean start or resume, then CONNACK and redelivery. */
function openSession(ctx: ConnectContext): StepResult | Promise<StepResult> {
  const connection = ctx.connection;
  const broker = connection.broker;
  const { session, present } = broker.openSession(connection, ctx.cleanStart, ctx.sessionExpiry);
  // A resumed session meets today's policy and this connection's identity before anything is sent.
  if (present) return broker.recheckResumedSession(connection, session).then(() => acceptSession(ctx, session, true));
  return acceptSession(ctx, session, false);
}

function acceptSession(ctx: ConnectContext, session: Session, present: boolean): StepResult {
  const { connection, packet } = ctx;
  const broker = connection.broker;
  if (connection.state === 'closed') return OK;
  connection.connectAskedSessionExpiry = ctx.sessionExpiry > 0 || ctx.sessionExpiryClamped;
  if (ctx.will)
    session.will = {
      message: ctx.will,
      delaySeconds: ctx.willDelay,
      expirySeconds: ctx.willExpiry,
      timer: undefined,
      authorizedFor: {
        identity: connection.identity!,
        listener: connection.listener.name,
        peerAddress: connection.peer.address,
        claimedUsername: connection.username,
      },
    };
  else session.will = undefined;
  let connack: IConnackPacket;
  // Whole literals, one per version: a field added afterwards made shapes that no live object keeps, and V8 drops
  // the code compiled for a shape at the first full collection that finds none (docs/performance.md, "Session 25").
  if (packet.protocolVersion === 5) {
    const limits = broker.limits;
    const properties: NonNullable<IConnackPacket['properties']> = {
      receiveMaximum: limits.receive_maximum,
      maximumPacketSize: limits.max_packet_size,
      topicAliasMaximum: limits.topic_alias_maximum,
    };
    if (ctx.sessionExpiryClamped) properties.sessionExpiryInterval = ctx.sessionExpiry;
    if (limits.max_qos < 2) properties.maximumQoS = limits.max_qos as 0 | 1;
    if (!limits.retain_available) properties.retainAvailable = false;
    if (ctx.assignedClientId) properties.assignedClientIdentifier = ctx.assignedClientId;
    if (ctx.serverKeepAlive !== undefined) properties.serverKeepAlive = ctx.serverKeepAlive;
    const authData = ctx.authResult?.authData;
    if (ctx.attempt.authMethod !== undefined) {
      properties.authenticationMethod = ctx.attempt.authMethod;
      if (authData) properties.authenticationData = authData;
    }
    connack = { cmd: 'connack', sessionPresent: present, reasonCode: ReasonCode.success, properties };
  } else connack = { cmd: 'connack', sessionPresent: present, returnCode: 0 };
  connection.writePacket(connack);
  connection.onConnected();
  broker.onSessionOpened(connection, session);
  broker.settleConnect(connection);
  return OK;
}

/** The chain's deny as a refusal: the audit keeps the step's detail, the client gets only `clientReasonString`. */
export function chainRefusal(result: Extract<ChainResult, { kind: 'deny' }>): Extract<StepResult, { ok: false }> {
  return {
    ok: false,
    reason: result.reason,
    detail: result.detail,
    clientDetail: clientReasonString(result),
    audited: true,
    authenticator: result.decidedBy,
  };
}

/**
 * A CONNECT that breaks the protocol (a wildcard in its will topic, say) has no return code in MQTT 3.1.1: the
 * connection closes without CONNACK ([MQTT-3.1.4-1]), as Mosquitto closes it. Return code 3 ("server unavailable"),
 * which it got before, told the client to try the same CONNECT again later.
 */
const V3_CLOSED_WITHOUT_CONNACK: ReadonlySet<ReasonName> = new Set([
  'protocolError',
  'malformedPacket',
  'topicNameInvalid',
]);

/** CONNACK with the refusal, in the client's protocol version, then close ([MQTT-3.2.2-7]). */
export function refuseConnect(ctx: ConnectContext, result: Extract<StepResult, { ok: false }>): void {
  const connection = ctx.connection;
  const broker = connection.broker;
  // Counted even for a client that has gone meanwhile: the decision was made (and audited) all the same.
  broker.connectOutcomes.denied(result.reason, result.authenticator);
  if (connection.state === 'closed') return;
  if (!result.audited) {
    // Refused before any authenticator ran (the CONNECT itself broke a rule): a client can repeat it at no cost,
    // so its records are bounded like the other refusals before authentication.
    broker.recordPreAuthenticationRefusal(connection, ctx.attempt, {
      kind: 'deny',
      reason: result.reason,
      detail: result.detail,
      decidedBy: 'broker',
      steps: [],
    });
  }
  const v5 = ctx.packet.protocolVersion === 5;
  if (!v5 && V3_CLOSED_WITHOUT_CONNACK.has(result.reason)) {
    connection.destroy();
    return;
  }
  const packet: IConnackPacket = v5
    ? {
        cmd: 'connack',
        sessionPresent: false,
        reasonCode: ReasonCode[result.reason],
        properties: connection.reasonProperties(result.clientDetail ?? result.detail),
      }
    : { cmd: 'connack', sessionPresent: false, returnCode: v3ConnackCode(result.reason) };
  connection.closeReason = result.detail;
  connection.writePacket(packet);
  connection.state = 'closed';
  connection.endSocket();
}
