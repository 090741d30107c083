import type { IDisconnectPacket } from 'mqtt-packet';
import type { Connection } from '../connection/connection.js';

/**
 * DISCONNECT from the client. [MQTT-3.14.4-3] a normal disconnect (0x00) discards the will; any other reason leaves
 * it to be published. [MQTT-3.14.2-2]: a session expiry of 0 in CONNECT cannot be raised here: protocol error. One
 * the CONNECT asked for and the broker capped to 0 can be set again (and is capped again): the client did nothing
 * wrong, and a protocol error would publish the will of a client that left normally. The server SHOULD close the
 * network connection if the client has not (MQTT 5 section 3.14.4): it is closed at once, or, where bytes are still
 * on their way out, after they are sent or the close grace has passed.
 */
export function handleDisconnect(connection: Connection, packet: IDisconnectPacket): void {
  const session = connection.session!;
  const requestedExpiry = packet.properties?.sessionExpiryInterval;
  if (requestedExpiry !== undefined) {
    if (!connection.connectAskedSessionExpiry && requestedExpiry !== 0) {
      connection.protocolViolation(
        'protocolError',
        'session expiry cannot be set on DISCONNECT when it was 0 at CONNECT',
      );
      return;
    }
    session.expiryInterval = Math.min(requestedExpiry, connection.broker.limits.max_session_expiry_interval);
  }
  // Only Normal disconnection discards the will ([MQTT-3.14.4-3], [MQTT-3.1.2-10]): 0x04 asks for it, and a client
  // leaving with an error reason (0x80 and above) ended abnormally, so its will is published, as EMQX does.
  connection.disconnectedCleanly = (packet.reasonCode ?? 0) === 0x00;
  connection.closeReason = `client disconnected (reason 0x${(packet.reasonCode ?? 0).toString(16).padStart(2, '0')})`;
  connection.state = 'closed';
  connection.endAfterClientDisconnect();
}
