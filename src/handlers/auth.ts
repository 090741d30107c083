import type { IAuthPacket } from 'mqtt-packet';
import type { ChainResult } from '../../authn/types.js';
import type { Connection } from '../connection/connection.js';
import { ReasonCode } from '../protocol/reason-codes.js';
import { chainRefusal, continueAfterAuthentication, refuseConnect } from './connect.js';

/**
 * AUTH: the next round of an MQTT 5 enhanced authentication exchange during CONNECT (0x18), or a
 * re-authentication of a connected client (0x19 starts it, 0x18 continues it) [MQTT-4.12].
 */
export async function handleAuth(connection: Connection, packet: IAuthPacket): Promise<void> {
  const broker = connection.broker;
  const chain = connection.listener.authenticator;
  const method = packet.properties?.authenticationMethod;
  const data = packet.properties?.authenticationData;
  const attempt = connection.attempt!;
  if (method !== attempt.authMethod) {
    // [MQTT-4.12.0-5] the method must stay the same for the whole exchange, and a re-authentication must use the
    // CONNECT's ([MQTT-4.12.1-1]).
    refuseAuth(connection, 'authentication method changed during the exchange');
    return;
  }
  const code = packet.reasonCode ?? 0;

  if (connection.state === 'authenticating') {
    const ctx = connection.pendingConnect;
    if (!ctx || !connection.exchange || code !== ReasonCode.continueAuthentication) {
      refuseAuth(connection, 'unexpected AUTH during CONNECT');
      return;
    }
    const result = await chain.continueExchange(connection.exchange, attempt, data, false);
    if (result.kind !== 'continue') {
      connection.pendingConnect = undefined;
      connection.exchange = undefined;
    }
    if (result.kind === 'deny') {
      broker.recordAuthentication(connection, attempt, result);
      broker.guardAfterAuthentication(connection, result);
      refuseConnect(ctx, chainRefusal(result));
      return;
    }
    await continueAfterAuthentication(ctx, result);
    return;
  }

  // Re-authentication of a connected client.
  if (attempt.authMethod === undefined) {
    refuseAuth(connection, 'AUTH without enhanced authentication at CONNECT');
    return;
  }
  let result: ChainResult;
  if (code === ReasonCode.reAuthenticate) {
    connection.startReauthentication();
    result = await chain.authenticate({ ...attempt, authData: data });
  } else if (code === ReasonCode.continueAuthentication && connection.exchange && connection.reauthenticating) {
    result = await chain.continueExchange(connection.exchange, attempt, data, true);
  } else {
    refuseAuth(connection, 'unexpected AUTH reason code');
    return;
  }
  if (connection.state === 'closed') return;
  result = refuseAnotherUser(connection, result);
  if (result.kind === 'continue') {
    connection.exchange = result.state;
    connection.writePacket({
      cmd: 'auth',
      reasonCode: ReasonCode.continueAuthentication,
      properties: { authenticationMethod: result.method, authenticationData: result.data },
    });
    return;
  }
  connection.exchange = undefined;
  connection.endReauthentication();
  broker.recordReauthentication(connection, result);
  if (result.kind === 'deny') {
    // Counted like a failed CONNECT, against the name that was tried: otherwise a connected client could guess
    // passwords here without ever being throttled.
    broker.guardAfterAuthentication(connection, result);
    connection.close(result.reason, REAUTHENTICATION_FAILED);
    return;
  }
  const identity = result.identity;
  connection.identity = identity;
  connection.scheduleCredentialExpiry();
  // The new identity may carry other groups or attributes: it must still be allowed to connect.
  const decision = await broker.authorizeConnect(connection);
  if (connection.state !== 'connected' || connection.identity !== identity) return;
  if (!decision.allowed) {
    broker.revokeConnection(connection, decision);
    return;
  }
  connection.writePacket({
    cmd: 'auth',
    reasonCode: ReasonCode.success,
    properties: { authenticationMethod: attempt.authMethod, authenticationData: result.authData },
  });
  // What the old identity subscribed to, the new one must still be allowed to receive.
  broker.reevaluateSubscriptionsOf(connection);
}

/**
 * An AUTH the broker refuses as a protocol error (CONNACK or DISCONNECT 0x82). From a connected client it was an
 * attempt to re-authenticate (another method, none at CONNECT, a client-final outside an exchange: a replay), so it
 * is recorded as a refused re-authentication like any other; not counted by the throttle, as no credential was tried.
 */
function refuseAuth(connection: Connection, detail: string): void {
  const ctx = connection.pendingConnect;
  if (connection.state === 'authenticating' && ctx) {
    // In the middle of CONNECT's exchange: the CONNECT is refused (0x82) and recorded as any CONNECT refused before
    // an authenticator decided is (authn.denied, bounded), rather than the connection dropped with no answer and no
    // record. Not counted by the throttle: no proof was checked.
    connection.pendingConnect = undefined;
    connection.exchange = undefined;
    refuseConnect(ctx, { ok: false, reason: 'protocolError', detail });
    return;
  }
  if (connection.state === 'connected') {
    connection.exchange = undefined;
    connection.endReauthentication();
    connection.broker.recordReauthentication(connection, {
      kind: 'deny',
      reason: 'protocolError',
      detail,
      decidedBy: 'broker',
      steps: [],
    });
  }
  connection.protocolViolation('protocolError', detail);
}

/**
 * The one Reason String of every failed re-authentication. The detail (wrong proof, another user, a malformed
 * message) goes to the audit log only: a client told "proof did not verify" for one answer and "different user"
 * for another could test passwords of other accounts through re-authentication (docs/scram.md).
 */
const REAUTHENTICATION_FAILED = 're-authentication failed';

/**
 * Re-authentication proves the connection's user again; it must not turn the connection into another user. A
 * round naming someone else is refused as soon as the name is known (for SCRAM, at the client-first message),
 * before any proof of theirs is verified, and counted against that name like any failed login.
 */
function refuseAnotherUser(connection: Connection, result: ChainResult): ChainResult {
  const user = connection.identity?.username;
  const named = result.kind === 'allow' ? result.identity.username : result.attemptedUsername;
  if (result.kind === 'deny' || named === user || (result.kind === 'continue' && named === undefined)) return result;
  return {
    kind: 'deny',
    reason: 'notAuthorized',
    detail: `re-authentication as a different user (${JSON.stringify(named ?? null)})`,
    decidedBy: 'broker',
    steps: result.steps,
    ...(named === undefined ? {} : { attemptedUsername: named }),
  };
}

/**
 * A re-authentication that did not end within the connect timeout has failed ([MQTT-4.12.1-2]): the client is told
 * 0x87 and disconnected. Not counted by the throttle: nothing was guessed.
 */
export function expireReauthentication(connection: Connection): void {
  connection.exchange = undefined;
  connection.endReauthentication();
  const detail = 're-authentication not completed within the connect timeout';
  connection.broker.recordReauthentication(connection, {
    kind: 'deny',
    reason: 'notAuthorized',
    detail,
    decidedBy: 'broker',
    steps: [],
  });
  connection.broker.log.info(
    { clientId: connection.clientId, peer: connection.peerLabel },
    `disconnecting client: ${detail}`,
  );
  connection.close('notAuthorized', detail);
}
