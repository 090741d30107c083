import type { IPubackPacket, IPubcompPacket, IPubrecPacket, IPubrelPacket } from 'mqtt-packet';
import type { Connection } from '../connection/connection.js';
import { ReasonCode } from '../protocol/reason-codes.js';

/** PUBACK from the client completes a QoS 1 delivery ([MQTT-4.3.2]). */
export function handlePuback(connection: Connection, packet: IPubackPacket): void {
  if (packet.messageId !== undefined) completeOrRefuse(connection, packet.messageId, 'puback');
}

/**
 * Completes the delivery an acknowledgement names; one that does not fit it is a protocol error (0x82) and the
 * connection closes.
 */
export function completeOrRefuse(connection: Connection, id: number, cmd: 'puback' | 'pubrec' | 'pubcomp'): void {
  const mismatch = connection.session!.complete(id, cmd);
  if (mismatch !== undefined) connection.protocolViolation('protocolError', mismatch);
}

/** PUBREC: the client has the QoS 2 message; answer PUBREL, or end the exchange on an error reason. */
export function handlePubrec(connection: Connection, packet: IPubrecPacket): void {
  const id = packet.messageId;
  if (id === undefined) return;
  if ((packet.reasonCode ?? 0) >= 0x80) {
    // [MQTT-4.3.3] a PUBREC with a failure reason ends the exchange: no PUBREL.
    completeOrRefuse(connection, id, 'pubrec');
    return;
  }
  const released = connection.session!.released(id);
  if (typeof released === 'string') connection.protocolViolation('protocolError', released);
  else if (!released) {
    connection.writePacket({
      cmd: 'pubrel',
      messageId: id,
      reasonCode: connection.isV5 ? ReasonCode.packetIdentifierNotFound : undefined,
    });
  }
}

/** PUBCOMP completes a QoS 2 delivery. */
export function handlePubcomp(connection: Connection, packet: IPubcompPacket): void {
  if (packet.messageId !== undefined) completeOrRefuse(connection, packet.messageId, 'pubcomp');
}

/**
 * PUBREL from the client: release the packet id so it can be reused, and answer PUBCOMP. The message itself was
 * routed when its PUBLISH first arrived (method B of [MQTT-4.3.3], so a restart never delivers it twice).
 */
export function handlePubrel(connection: Connection, packet: IPubrelPacket): void {
  const session = connection.session!;
  const id = packet.messageId;
  if (id === undefined) return;
  const known = session.inboundQos2.delete(id);
  if (known) connection.inboundUnacknowledged = Math.max(0, connection.inboundUnacknowledged - 1);
  const store = known && session.journal ? connection.broker.store : undefined;
  store?.inboundQos2Released(connection.clientId, id);
  // PUBCOMP lets the client reuse the id: if the release were lost in a crash, the restored session would take
  // the next PUBLISH with that id for a re-send of the old one and not route it.
  const reasonCode = connection.isV5 && !known ? ReasonCode.packetIdentifierNotFound : undefined;
  connection.sendAck('pubcomp', id, reasonCode, undefined, store?.lastSeq ?? 0);
}
