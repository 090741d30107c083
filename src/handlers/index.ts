import type { Packet } from 'mqtt-packet';
import type { Connection } from '../connection/connection.js';
import { handleAuth } from './auth.js';
import { handleConnect } from './connect.js';
import { handleDisconnect } from './disconnect.js';
import { handlePuback, handlePubcomp, handlePubrec, handlePubrel } from './acknowledgements.js';
import { handlePublish } from './publish.js';
import { handleSubscribe } from './subscribe.js';
import { handleUnsubscribe } from './unsubscribe.js';

/**
 * Routes a decoded packet to its handler. A handler returns a promise only when it had to wait (authentication,
 * a remote authorization source); the connection then holds later packets so their order is kept.
 */
export function dispatchPacket(connection: Connection, packet: Packet): Promise<void> | void {
  if (packet.cmd === 'connect') {
    if (connection.state !== 'awaiting-connect') {
      // [MQTT-3.1.0-2] a second CONNECT is a protocol violation.
      connection.protocolViolation('protocolError', 'second CONNECT on the same connection');
      return;
    }
    return handleConnect(connection, packet);
  }
  if (connection.state === 'authenticating') {
    if (packet.cmd === 'auth') return handleAuth(connection, packet);
    if (packet.cmd === 'disconnect') {
      connection.destroy();
      return;
    }
    return;
  }
  if (connection.state !== 'connected') return;
  switch (packet.cmd) {
    case 'publish':
      return handlePublish(connection, packet);
    case 'puback':
      return handlePuback(connection, packet);
    case 'pubrec':
      return handlePubrec(connection, packet);
    case 'pubrel':
      return handlePubrel(connection, packet);
    case 'pubcomp':
      return handlePubcomp(connection, packet);
    case 'subscribe':
      return handleSubscribe(connection, packet);
    case 'unsubscribe':
      return handleUnsubscribe(connection, packet);
    case 'pingreq':
      connection.writePacket({ cmd: 'pingresp' });
      return;
    case 'disconnect':
      return handleDisconnect(connection, packet);
    case 'auth':
      return handleAuth(connection, packet);
    default:
      // CONNACK, SUBACK, UNSUBACK, PINGRESP are server-to-client only.
      connection.protocolViolation('protocolError', `unexpected ${packet.cmd} from a client`);
  }
}
