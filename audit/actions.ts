/**
 * Every `event.action` the broker and the audit writer record. Stable ids: a SIEM rule written against one of
 * these keeps working across releases. docs/audit.md documents each with an example record.
 */
export const AuditAction = {
  brokerStarted: 'broker.started',
  brokerStopped: 'broker.stopped',
  authnAllowed: 'authn.allowed',
  authnDenied: 'authn.denied',
  authnReauthAllowed: 'authn.reauth_allowed',
  authnReauthDenied: 'authn.reauth_denied',
  authnBackendUnavailable: 'authn.backend_unavailable',
  authnBackendRecovered: 'authn.backend_recovered',
  clientDisconnected: 'client.disconnected',
  connectionMalformedConnect: 'connection.malformed_connect',
  connectionConnectTimeout: 'connection.connect_timeout',
  authzConnectDenied: 'authz.connect_denied',
  authzPublishDenied: 'authz.publish_denied',
  authzSubscribeDenied: 'authz.subscribe_denied',
  authzWillDenied: 'authz.will_denied',
  authzReceiveDenied: 'authz.receive_denied',
  authzPublishAllowed: 'authz.publish_allowed',
  authzSubscribeAllowed: 'authz.subscribe_allowed',
  authzSubscriptionRevoked: 'authz.subscription_revoked',
  authzConnectionRevoked: 'authz.connection_revoked',
  authzSourceUnavailable: 'authz.source_unavailable',
  authzSourceRecovered: 'authz.source_recovered',
  guardBanned: 'guard.banned',
  guardUnbanned: 'guard.unbanned',
  guardBanExpired: 'guard.ban_expired',
  guardFlappingDetected: 'guard.flapping_detected',
  guardThrottled: 'guard.throttled',
  guardBlocked: 'guard.blocked',
  guardThrottleRefused: 'guard.throttle_refused',
  proxyHeaderRefused: 'proxy.header_refused',
  metricsScrapeRefused: 'metrics.scrape_refused',
  policyReloaded: 'policy.reloaded',
  policyReloadFailed: 'policy.reload_failed',
  credentialsReloaded: 'credentials.reloaded',
  credentialsReloadFailed: 'credentials.reload_failed',
  credentialsRehashed: 'credentials.rehashed',
  credentialsRehashFailed: 'credentials.rehash_failed',
  tlsReloaded: 'tls.reloaded',
  tlsReloadFailed: 'tls.reload_failed',
  tlsHandshakeRefused: 'tls.handshake_refused',
  tlsOcspRefreshed: 'tls.ocsp_refreshed',
  tlsOcspFailed: 'tls.ocsp_failed',
  configChanged: 'config.changed',
  adminCommand: 'admin.command',
  auditTornTailSealed: 'audit.torn_tail_sealed',
  auditRetentionDeleted: 'audit.retention_deleted',
  auditCheckpoint: 'audit.checkpoint',
  auditWriteRecovered: 'audit.write_recovered',
  auditRefusalsSuppressed: 'audit.refusals_suppressed',
  auditEarlyEventsDropped: 'audit.early_events_dropped',
} as const;

export type AuditActionName = (typeof AuditAction)[keyof typeof AuditAction];

/**
 * The actions the writer itself appends; the broker never records these. (`audit.refusals_suppressed` is about
 * the log's content too, but the broker records it: see audit/refusal-limiter.ts.)
 */
export const WRITER_ACTIONS: ReadonlySet<string> = new Set([
  AuditAction.auditTornTailSealed,
  AuditAction.auditRetentionDeleted,
  AuditAction.auditCheckpoint,
  AuditAction.auditWriteRecovered,
]);
