/** Counters behind `$SYS/broker/...`, kept as plain numbers so the per-message path only increments. */
export class BrokerStats {
  readonly startedAt = Date.now();
  messagesReceived = 0;
  messagesSent = 0;
  messagesDiscarded = 0;
  messagesDropped = 0;
  bytesReceived = 0;
  bytesSent = 0;
  clientsConnected = 0;
  clientsMaximum = 0;
  connectionsTotal = 0;
  protocolErrors = 0;
  slowClientsDisconnected = 0;
  publishDenied = 0;
  subscribeDenied = 0;
  connectRefused = 0;
  // The rest of the policy's denials, for the metrics endpoint: counted with the decision, never per allowed message.
  receiveDenied = 0;
  /** Wills refused at CONNECT, and wills withheld when they fell due (both `authz.will_denied`). */
  willDenied = 0;
  /** CONNECTs refused by the policy's `connect` action. */
  connectDenied = 0;
  /** Connected clients disconnected because a changed policy no longer lets them connect. */
  connectionsRevoked = 0;
}
