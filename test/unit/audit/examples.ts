import type { AuditEvent } from '../../../audit/events.js';
import { backendBreakerEvent } from '../../../authn/config.js';
import { sourceAvailabilityEvent } from '../../../authz/sources/sql.js';
import { ocspEventToAudit } from '../../../src/transport/ocsp-stapling.js';

/** One realistic event per action the broker records: docs/audit.md shows each as the writer stores it. */
export const BROKER_EXAMPLES: readonly AuditEvent[] = [
  {
    event: { action: 'broker.started', outcome: 'success', reason: 'listening on 2 listeners' },
    actor: 'broker',
    labels: { version: '0.1.0', config_hash: '5f1c0a9e…', listeners: 'mqtt:1883,mqtts:8883' },
  },
  {
    event: { action: 'authn.allowed', outcome: 'success', code: 'success' },
    client: { ip: '10.0.4.17', port: 53122 },
    user: { name: 'sensor-17', groups: ['sensors'] },
    mqtt: { client_id: 'sensor-17', listener: 'mqtts', protocol_version: 5, username: 'sensor-17' },
    authn: {
      by: 'password-file',
      steps: [
        { id: 'jwt', type: 'jwt', answer: 'ignore', duration_ms: 0.1, detail: 'no token presented' },
        { id: 'password-file', type: 'password-file', answer: 'allow', duration_ms: 31.2 },
      ],
    },
  },
  {
    event: {
      action: 'authn.denied',
      outcome: 'failure',
      reason: 'password does not match',
      code: 'badUserNameOrPassword',
    },
    client: { ip: '203.0.113.9', port: 40112 },
    mqtt: { client_id: 'probe-1', listener: 'mqtt', protocol_version: 4, reason_code: 4, username: 'admin' },
    authn: {
      by: 'password-file',
      steps: [
        {
          id: 'password-file',
          type: 'password-file',
          answer: 'deny',
          duration_ms: 28.9,
          detail: 'password does not match',
        },
      ],
    },
  },
  {
    event: { action: 'authn.reauth_allowed', outcome: 'success', code: 'success' },
    client: { ip: '10.0.4.20', port: 50211 },
    user: { name: 'svc-billing' },
    mqtt: { client_id: 'billing-1', listener: 'mqtts', protocol_version: 5 },
    authn: { by: 'scram', method: 'SCRAM-SHA-256' },
  },
  {
    event: {
      action: 'authn.reauth_denied',
      outcome: 'failure',
      reason: 'proof does not verify',
      code: 'notAuthorized',
    },
    client: { ip: '10.0.4.20', port: 50211 },
    user: { name: 'svc-billing' },
    mqtt: { client_id: 'billing-1', listener: 'mqtts', protocol_version: 5, reason_code: 135 },
    authn: { by: 'scram', method: 'SCRAM-SHA-256' },
  },
  backendBreakerEvent('postgres://bulwark@db.internal:5432/iot', 'open'),
  backendBreakerEvent('postgres://bulwark@db.internal:5432/iot', 'closed'),
  {
    event: {
      action: 'client.disconnected',
      outcome: 'success',
      reason: 'keep alive timeout',
      code: 'keepAliveTimeout',
    },
    client: { ip: '10.0.4.17', port: 53122 },
    user: { name: 'sensor-17' },
    mqtt: { client_id: 'sensor-17', listener: 'mqtts', protocol_version: 5, reason_code: 141 },
  },
  {
    event: { action: 'authz.publish_denied', outcome: 'failure', reason: 'deny rule matched', code: 'notAuthorized' },
    client: { ip: '10.0.4.17' },
    user: { name: 'sensor-17' },
    mqtt: { client_id: 'sensor-17', topic: 'plant/line1/cmd/stop', qos: 1, retain: false, reason_code: 135 },
    authz: { rule: 'policies/site.yaml:42', rule_name: 'sensors-read-only', source: 'file', action: 'publish' },
  },
  {
    event: { action: 'authz.subscribe_denied', outcome: 'failure', reason: 'no rule matched', code: 'notAuthorized' },
    client: { ip: '10.0.4.31' },
    user: { name: 'dashboard' },
    mqtt: { client_id: 'dash-2', topic: 'plant/#', qos: 0, reason_code: 135 },
    authz: { rule: 'default-deny', rule_name: 'default-deny', action: 'subscribe' },
  },
  {
    event: { action: 'authz.will_denied', outcome: 'failure', reason: 'will topic not allowed', code: 'notAuthorized' },
    client: { ip: '10.0.4.17' },
    user: { name: 'sensor-17' },
    mqtt: { client_id: 'sensor-17', topic: 'plant/alarms', qos: 1, retain: true, reason_code: 135 },
    authz: { rule: 'policies/site.yaml:51', source: 'file', action: 'publish' },
  },
  {
    event: { action: 'authz.receive_denied', outcome: 'failure', reason: 'subscriber may not read this topic' },
    client: { ip: '10.0.4.31' },
    user: { name: 'dashboard' },
    mqtt: { client_id: 'dash-2', topic: 'plant/line1/cmd/stop', qos: 1, retain: false },
    authz: { rule: 'policies/site.yaml:60', source: 'file', action: 'receive' },
  },
  {
    event: { action: 'authz.publish_allowed', outcome: 'success' },
    client: { ip: '10.0.4.17' },
    user: { name: 'sensor-17' },
    mqtt: { client_id: 'sensor-17', topic: 'plant/line1/temp', qos: 0, retain: false },
    authz: { rule: 'policies/site.yaml:12', source: 'file', action: 'publish' },
    labels: { sampled: '1/100' },
  },
  {
    event: { action: 'authz.subscribe_allowed', outcome: 'success' },
    client: { ip: '10.0.4.31' },
    user: { name: 'dashboard' },
    mqtt: { client_id: 'dash-2', topic: 'plant/+/temp', qos: 0 },
    authz: { rule: 'policies/site.yaml:20', source: 'file', action: 'subscribe' },
  },
  {
    event: { action: 'guard.banned', outcome: 'success', reason: '20 failed logins in 60s' },
    client: { ip: '203.0.113.9' },
    guard: { key: '203.0.113.9', dimension: 'ip', count: 20, window_ms: 60000, until: '2026-11-25T10:15:00.000Z' },
    actor: 'broker',
  },
  {
    event: { action: 'guard.unbanned', outcome: 'success', reason: 'removed by operator' },
    guard: { key: '203.0.113.9', dimension: 'ip' },
    actor: 'cli:root@unix-socket',
  },
  {
    event: { action: 'guard.ban_expired', outcome: 'success' },
    guard: { key: 'probe-1', dimension: 'client_id' },
    actor: 'broker',
  },
  {
    event: { action: 'guard.flapping_detected', outcome: 'success', reason: '15 connects in 60s' },
    client: { ip: '10.0.9.3' },
    mqtt: { client_id: 'flappy' },
    guard: { key: 'flappy', dimension: 'client_id', count: 15, window_ms: 60000, dry_run: false },
  },
  {
    event: {
      action: 'guard.throttled',
      outcome: 'success',
      reason: '20 failed authentications in 5m; ip locked out (lockout 1)',
      code: 'connectionRateExceeded',
    },
    client: { ip: '198.51.100.4' },
    mqtt: { client_id: 'probe-7', username: 'admin' },
    guard: {
      key: '198.51.100.4',
      dimension: 'ip',
      count: 20,
      window_ms: 300000,
      until: '2026-11-25T10:02:05.000Z',
    },
    actor: 'guard:throttle',
    labels: { offence: '1', scope: 'throttle' },
  },
  {
    event: {
      action: 'guard.blocked',
      outcome: 'failure',
      reason: 'block list: client_id (stolen device)',
      code: 'banned',
    },
    client: { ip: '198.51.100.7', port: 50412 },
    mqtt: { client_id: 'device-042', listener: 'mqtts' },
    guard: { key: 'device-042', dimension: 'client_id', until: '2026-11-26T10:00:00.000Z' },
    labels: { by: 'cli:root@unix-socket' },
  },
  {
    event: {
      action: 'guard.throttle_refused',
      outcome: 'failure',
      reason: 'username throttled after failed authentications',
      code: 'banned',
    },
    client: { ip: '203.0.113.9', port: 40111 },
    mqtt: { client_id: 'dash-1', listener: 'mqtt', username: 'alice' },
    guard: { key: 'alice', dimension: 'username', until: '2026-11-25T10:05:00.000Z' },
  },
  {
    event: {
      action: 'proxy.header_refused',
      outcome: 'failure',
      reason: '192.0.2.50 is not a trusted proxy',
      code: 'untrusted_proxy',
    },
    client: { ip: '192.0.2.50', port: 33000 },
    mqtt: { listener: 'mqtt-behind-lb' },
  },
  {
    event: { action: 'policy.reloaded', outcome: 'success' },
    policy: { file: 'policies/site.yaml', old_hash: 'sha256:9b7e41c2…', new_hash: 'sha256:0f4d11aa…' },
    actor: 'cli:root@unix-socket',
  },
  {
    event: { action: 'policy.reload_failed', outcome: 'failure', reason: 'the old rules stay live' },
    policy: {
      file: 'policies/site.yaml',
      old_hash: 'sha256:0f4d11aa…',
      new_hash: 'sha256:77c2e9d0…',
      error: 'policies/site.yaml:18:9: unknown key "alow" (did you mean "allow"?)',
    },
    actor: 'signal:SIGHUP',
  },
  {
    event: { action: 'credentials.reloaded', outcome: 'success' },
    policy: { file: 'passwd', old_hash: 'sha256:3a1f…', new_hash: 'sha256:c9e8…' },
    actor: 'file-watch',
    labels: { entries: '42' },
  },
  {
    event: { action: 'credentials.reload_failed', outcome: 'failure', reason: 'the old credentials stay live' },
    policy: { file: 'passwd', error: 'passwd:7:1: not a PHC string' },
    actor: 'file-watch',
  },
  {
    event: {
      action: 'credentials.rehashed',
      outcome: 'success',
      reason: 'hash upgraded to current argon2id parameters',
    },
    user: { name: 'gw-7' },
    policy: { file: 'passwd' },
    actor: 'broker',
    labels: { authenticator: 'password-file' },
  },
  {
    event: { action: 'credentials.rehash_failed', outcome: 'failure', reason: 'Error' },
    user: { name: 'gw-7' },
    policy: { file: 'passwd' },
    actor: 'broker',
    labels: { authenticator: 'password-file' },
  },
  {
    event: { action: 'tls.reloaded', outcome: 'success' },
    policy: { file: 'certs/server.pem', old_hash: 'sha256:aa01…', new_hash: 'sha256:bb02…' },
    tls: { subject: 'CN=broker.example.net', fingerprint: '4F:2A:…:9C' },
    mqtt: { listener: 'mqtts' },
  },
  {
    event: { action: 'tls.reload_failed', outcome: 'failure', reason: 'the old certificate keeps serving' },
    policy: { file: 'certs/server.pem', error: 'key does not match certificate' },
    mqtt: { listener: 'mqtts' },
  },
  ocspEventToAudit(
    {
      action: 'tls.ocsp_refreshed',
      status: 'good',
      thisUpdate: new Date('2026-11-25T09:00:00.000Z'),
      nextUpdate: new Date('2026-11-26T09:00:00.000Z'),
      source: 'http://ocsp.example.net',
    },
    'mqtts',
  ),
  ocspEventToAudit(
    {
      action: 'tls.ocsp_failed',
      reason: 'responder answered HTTP 503',
      source: 'http://ocsp.example.net',
      stapling: true,
    },
    'mqtts',
  ),
  {
    event: { action: 'tls.handshake_refused', outcome: 'failure', reason: 'client certificate refused' },
    client: { ip: '10.0.7.2', port: 61001 },
    mqtt: { listener: 'mqtts' },
    tls: { error: 'CERT_HAS_EXPIRED', subject: 'CN=old-device,OU=sensors', fingerprint: '1D:77:…:E0' },
  },
  {
    event: {
      action: 'config.changed',
      outcome: 'success',
      reason: 'configuration file re-read: 3 settings changed, 1 applied now, 2 take effect after a restart',
    },
    policy: {
      file: '/etc/bulwark/bulwark.yaml',
      old_hash: '51aa0c3e7d6bb0c1f7e1c0a4a8d45be2a0b3a1f42de1b6c8e1e9c1f0b47a6d21',
      new_hash: '62bb91d04e3f2a7c5b8e9d0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d',
    },
    config: {
      changed: ['audit.fsync', 'limits.max_packet_size', 'log_level'],
      applied: ['log_level'],
      restart_required: ['audit.fsync', 'limits.max_packet_size'],
    },
    actor: 'signal:SIGHUP',
  },
  {
    event: { action: 'admin.command', outcome: 'success', reason: 'ban add 203.0.113.0/24 --for 1h' },
    actor: 'cli:root@unix-socket',
    labels: { command: 'ban.add' },
  },
  {
    event: { action: 'broker.stopped', outcome: 'success', reason: 'SIGTERM' },
    actor: 'broker',
    labels: { uptime_s: '86400' },
  },
  {
    event: {
      action: 'authz.connect_denied',
      outcome: 'failure',
      reason: 'denied by rule "quarantined-certificates-cannot-connect" (policies/site.yaml:6)',
      code: 'notAuthorized',
    },
    client: { ip: '10.0.4.18', port: 53980 },
    user: { name: 'sensor-18' },
    mqtt: { client_id: 'sensor-18', listener: 'mqtts', protocol_version: 5, reason_code: 135 },
    authz: {
      rule: 'policies/site.yaml:6',
      rule_name: 'quarantined-certificates-cannot-connect',
      source: 'file',
      action: 'connect',
    },
  },
  {
    event: {
      action: 'authz.subscription_revoked',
      outcome: 'failure',
      reason: 'no rule matched (default deny)',
      code: 'notAuthorized',
    },
    client: { ip: '10.0.4.31', port: 51200 },
    user: { name: 'dashboard' },
    mqtt: { client_id: 'dash-2', listener: 'mqtt', protocol_version: 5, topic: 'plant/+/setpoints/#', qos: 0 },
    authz: { action: 'subscribe', rule: 'default-deny', rule_name: 'default-deny' },
  },
  {
    event: {
      action: 'authz.connection_revoked',
      outcome: 'failure',
      reason: 'no rule matched (default deny)',
      code: 'notAuthorized',
    },
    client: { ip: '10.0.4.17', port: 53122 },
    user: { name: 'sensor-17' },
    mqtt: { client_id: 'sensor-17', listener: 'mqtts', protocol_version: 5, reason_code: 135 },
    authz: { rule: 'default-deny', rule_name: 'default-deny', action: 'connect' },
  },
  sourceAvailabilityEvent('acl-db', 'open'),
  sourceAvailabilityEvent('acl-db', 'closed'),
  {
    event: {
      action: 'connection.connect_timeout',
      outcome: 'failure',
      reason: 'no CONNECT within the connect timeout',
      code: 'connect_timeout',
    },
    client: { ip: '203.0.113.45', port: 49160 },
    mqtt: { listener: 'mqtt' },
  },
  {
    event: {
      action: 'connection.malformed_connect',
      outcome: 'failure',
      reason: 'unsupported protocol level 6',
      code: 'unsupportedProtocolVersion',
    },
    client: { ip: '203.0.113.44', port: 49152 },
    mqtt: { listener: 'mqtt', reason_code: 132 },
  },
  {
    event: {
      action: 'audit.refusals_suppressed',
      outcome: 'failure',
      reason:
        '2387 tls.handshake_refused refusals from 203.0.113.80 on mqtts (ECONNRESET) not recorded one by one: ' +
        '2397 in the interval, 10 recorded',
      code: 'ECONNRESET',
    },
    client: { ip: '203.0.113.80' },
    mqtt: { listener: 'mqtts' },
    actor: 'broker',
    audit: {
      action: 'tls.handshake_refused',
      suppressed: 2387,
      recorded: 10,
      window_start: '2026-11-25T09:59:00.000Z',
      window_end: '2026-11-25T10:00:00.000Z',
      reason: 'window_end',
    },
  },
  {
    event: {
      action: 'audit.early_events_dropped',
      outcome: 'failure',
      reason: '37 events recorded before the audit log opened were dropped',
    },
    actor: 'broker',
  },
];

/** What the writer records during an outage of its disk (the others it produces itself in the generator). */
export const WRITE_RECOVERED_EXAMPLE: AuditEvent = {
  event: {
    action: 'audit.write_recovered',
    outcome: 'success',
    reason: 'audit log writable again after 7 failed attempts; 0 events dropped',
  },
  actor: 'audit-writer',
  audit: { dropped: 0, failures: 7, reason: 'ENOSPC' },
};
