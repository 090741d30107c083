/**
 * MQTT 5 reason codes by name, and the only place where they are mapped to MQTT 3.1/3.1.1 return codes.
 * Every send site speaks MQTT 5 names; the connection translates for older clients.
 */
export const ReasonCode = {
  success: 0x00,
  grantedQos1: 0x01,
  grantedQos2: 0x02,
  disconnectWithWill: 0x04,
  noMatchingSubscribers: 0x10,
  noSubscriptionExisted: 0x11,
  continueAuthentication: 0x18,
  reAuthenticate: 0x19,
  unspecifiedError: 0x80,
  malformedPacket: 0x81,
  protocolError: 0x82,
  implementationSpecificError: 0x83,
  unsupportedProtocolVersion: 0x84,
  clientIdentifierNotValid: 0x85,
  badUserNameOrPassword: 0x86,
  notAuthorized: 0x87,
  serverUnavailable: 0x88,
  serverBusy: 0x89,
  banned: 0x8a,
  serverShuttingDown: 0x8b,
  badAuthenticationMethod: 0x8c,
  keepAliveTimeout: 0x8d,
  sessionTakenOver: 0x8e,
  topicFilterInvalid: 0x8f,
  topicNameInvalid: 0x90,
  packetIdentifierInUse: 0x91,
  packetIdentifierNotFound: 0x92,
  receiveMaximumExceeded: 0x93,
  topicAliasInvalid: 0x94,
  packetTooLarge: 0x95,
  messageRateTooHigh: 0x96,
  quotaExceeded: 0x97,
  administrativeAction: 0x98,
  payloadFormatInvalid: 0x99,
  retainNotSupported: 0x9a,
  qosNotSupported: 0x9b,
  useAnotherServer: 0x9c,
  serverMoved: 0x9d,
  sharedSubscriptionsNotSupported: 0x9e,
  connectionRateExceeded: 0x9f,
  maximumConnectTime: 0xa0,
  subscriptionIdentifiersNotSupported: 0xa1,
  wildcardSubscriptionsNotSupported: 0xa2,
} as const;

export type ReasonName = keyof typeof ReasonCode;

/** CONNACK return codes of MQTT 3.1 and 3.1.1 (section 3.2.2.3). */
export const V3ConnackCode = {
  accepted: 0,
  unacceptableProtocolVersion: 1,
  identifierRejected: 2,
  serverUnavailable: 3,
  badUserNameOrPassword: 4,
  notAuthorized: 5,
} as const;

/**
 * Maps an MQTT 5 CONNACK reason to the nearest 3.1.1 return code, as Mosquitto and EMQX do:
 * a ban is "not authorized" and every overload or backend failure is "server unavailable".
 */
export function v3ConnackCode(reason: ReasonName): number {
  switch (reason) {
    case 'success':
      return V3ConnackCode.accepted;
    case 'unsupportedProtocolVersion':
      return V3ConnackCode.unacceptableProtocolVersion;
    case 'clientIdentifierNotValid':
      return V3ConnackCode.identifierRejected;
    case 'badUserNameOrPassword':
    case 'badAuthenticationMethod':
      return V3ConnackCode.badUserNameOrPassword;
    case 'notAuthorized':
    case 'banned':
      return V3ConnackCode.notAuthorized;
    default:
      return V3ConnackCode.serverUnavailable;
  }
}

/** SUBACK failure in 3.1.1 is the single value 0x80 whatever the v5 reason was. */
export function v3SubackCode(reason: ReasonName): number {
  const code = ReasonCode[reason];
  return code >= 0x80 ? 0x80 : code;
}

const namesByCode = new Map<number, ReasonName>();
for (const [name, code] of Object.entries(ReasonCode) as [ReasonName, number][]) {
  if (!namesByCode.has(code)) namesByCode.set(code, name);
}

export function reasonName(code: number): ReasonName | undefined {
  return namesByCode.get(code);
}
