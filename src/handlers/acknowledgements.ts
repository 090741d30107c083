import type { IPubackPacket, IPubcompPacket, IPubrecPacket, IPubrelPacket } from 'mqtt-packet';
import type { Connection } from '../connection/connection.js';
import { ReasonCode } from '../protocol/reason-codes.js';

/** PUBACK from the client completes a QoS 1 delivery ([MQTT-4.3.2]). */
export function handlePuback(connection: Connection, packet: IPubackPacket): void {
  const id = packet.messageId;
  if (id !== undefined && !refuseIfMismatched(connection, id, 'puback')) connection.session!.complete(id);
}

/** True when the acknowledgement does not fit its delivery: the connection is then closing (0x82). */
export function refuseIfMismatched(connection: Connection, id: number, cmd: 'puback' | 'pubrec' | 'pubcomp'): boolean {
  const problem = connection.session!.acknowledgementMismatch(id, cmd);
  if (problem === undefined) return false;
  connection.protocolViolation('protocolError', problem);
  return true;
}

/** PUBREC: the client has the QoS 2 message; answer PUBREL, or end the exchange on an error reason. */
export function handlePubrec(connection: Connection, packet: IPubrecPacket): void {
  const session = connection.session!;
  const id = packet.messageId;
  if (id === undefined || refuseIfMismatched(connection, id, 'pubrec')) return;
  if ((packet.reasonCode ?? 0) >= 0x80) {
    // [MQTT-4.3.3] a PUBREC with a failure reason ends the exchange: no PUBREL.
    session.complete(id);
    return;
  }
  if (!session.released(id)) {
    connection.writePacket({
      cmd: 'pubrel',
      messageId: id,
      reasonCode: connection.isV5 ? ReasonCode.packetIdentifierNotFound : undefined,
    });
  }
}

/** PUBCOMP completes a QoS 2 delivery. */
export function handlePubcomp(connection: Connection, packet: IPubcompPacket): void {
  const id = packet.messageId;
  if (id !== undefined && !refuseIfMismatched(connection, id, 'pubcomp')) connection.session!.complete(id);
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
