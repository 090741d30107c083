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
    mqtt: { client_id: 'sensor-17', listener: 'mqtts', protocol_version: 5, reason_code: 0, username: 'sensor-17' },
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
      reason: 'wrong password',
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
          detail: 'wrong password',
        },
      ],
    },
  },
  {
    event: { action: 'authn.reauth_allowed', outcome: 'success', code: 'success' },
    client: { ip: '10.0.4.20', port: 50211 },
    user: { name: 'svc-billing', groups: [] },
    mqtt: { client_id: 'billing-1', listener: 'mqtts', protocol_version: 5, reason_code: 0 },
    authn: {
      by: 'scram',
      method: 'SCRAM-SHA-256',
      steps: [{ id: 'scram', type: 'scram', answer: 'allow', duration_ms: 4.2 }],
    },
  },
  {
    event: {
      action: 'authn.reauth_denied',
      outcome: 'failure',
      reason: 'proof does not verify',
      code: 'notAuthorized',
    },
    client: { ip: '10.0.4.20', port: 50211 },
    user: { name: 'svc-billing', groups: [] },
    mqtt: { client_id: 'billing-1', listener: 'mqtts', protocol_version: 5, reason_code: 135 },
    authn: {
      by: 'scram',
      method: 'SCRAM-SHA-256',
      steps: [{ id: 'scram', type: 'scram', answer: 'deny', duration_ms: 3.9, detail: 'proof does not verify' }],
    },
  },
  {
    event: { action: 'client.disconnected', outcome: 'success', reason: 'keep alive timeout' },
    client: { ip: '10.0.4.17', port: 53122 },
    user: { name: 'sensor-17' },
    mqtt: { client_id: 'sensor-17', listener: 'mqtts', protocol_version: 5, username: 'sensor-17' },
  },
  backendBreakerEvent('postgres://bulwark@db.internal:5432/iot', 'open'),
  backendBreakerEvent('postgres://bulwark@db.internal:5432/iot', 'closed'),
  {
    event: {
      action: 'authz.publish_denied',
      outcome: 'failure',
      reason: 'denied by rule "sensors-read-only" (policies/site.yaml:42)',
      code: 'notAuthorized',
    },
    client: { ip: '10.0.4.17', port: 53122 },
    user: { name: 'sensor-17' },
    mqtt: {
      client_id: 'sensor-17',
      listener: 'mqtts',
      protocol_version: 5,
      topic: 'plant/line1/cmd/stop',
      qos: 1,
      retain: false,
      reason_code: 135,
      username: 'sensor-17',
    },
    authz: { rule: 'policies/site.yaml:42', rule_name: 'sensors-read-only', source: 'file', action: 'publish' },
  },
  {
    event: {
      action: 'authz.subscribe_denied',
      outcome: 'failure',
      reason: 'no rule matched (default deny)',
      code: 'notAuthorized',
    },
    client: { ip: '10.0.4.31', port: 51200 },
    user: { name: 'dashboard' },
    mqtt: {
      client_id: 'dash-2',
      listener: 'mqtt',
      protocol_version: 5,
      topic: 'plant/#',
      qos: 0,
      reason_code: 135,
      username: 'dashboard',
    },
    authz: { rule: 'default-deny', rule_name: 'default-deny', action: 'subscribe' },
  },
  {
    event: {
      action: 'authz.will_denied',
      outcome: 'failure',
      reason: 'denied by rule "no-retained-alarms" (policies/site.yaml:51)',
      code: 'notAuthorized',
    },
    client: { ip: '10.0.4.17', port: 53130 },
    user: { name: 'sensor-17' },
    mqtt: {
      client_id: 'sensor-17',
      listener: 'mqtts',
      protocol_version: 5,
      topic: 'plant/alarms',
      qos: 1,
      retain: true,
      reason_code: 135,
      username: 'sensor-17',
    },
    authz: { rule: 'policies/site.yaml:51', rule_name: 'no-retained-alarms', source: 'file', action: 'publish' },
  },
  {
    event: {
      action: 'authz.receive_denied',
      outcome: 'failure',
      reason: 'denied by rule "dashboards-never-see-commands" (policies/site.yaml:60)',
      code: 'notAuthorized',
    },
    client: { ip: '10.0.4.31', port: 51200 },
    user: { name: 'dashboard' },
    mqtt: {
      client_id: 'dash-2',
      listener: 'mqtt',
      protocol_version: 5,
      topic: 'plant/line1/cmd/stop',
      qos: 1,
      retain: false,
      username: 'dashboard',
    },
    authz: {
      rule: 'policies/site.yaml:60',
      rule_name: 'dashboards-never-see-commands',
      source: 'file',
      action: 'receive',
    },
  },
  {
    event: {
      action: 'authz.publish_allowed',
      outcome: 'success',
      reason: 'allowed by rule "sensors-publish-own-line" (policies/site.yaml:12)',
    },
    client: { ip: '10.0.4.17', port: 53122 },
    user: { name: 'sensor-17' },
    mqtt: {
      client_id: 'sensor-17',
      listener: 'mqtts',
      protocol_version: 5,
      topic: 'plant/line1/temp',
      qos: 0,
      retain: false,
      username: 'sensor-17',
    },
    authz: { rule: 'policies/site.yaml:12', rule_name: 'sensors-publish-own-line', source: 'file', action: 'publish' },
  },
  {
    event: {
      action: 'authz.subscribe_allowed',
      outcome: 'success',
      reason: 'allowed by rule "dashboards-read-temperatures" (policies/site.yaml:20)',
    },
    client: { ip: '10.0.4.31', port: 51200 },
    user: { name: 'dashboard' },
    mqtt: {
      client_id: 'dash-2',
      listener: 'mqtt',
      protocol_version: 5,
      topic: 'plant/+/temp',
      qos: 0,
      username: 'dashboard',
    },
    authz: {
      rule: 'policies/site.yaml:20',
      rule_name: 'dashboards-read-temperatures',
      source: 'file',
      action: 'subscribe',
    },
  },
  {
    event: { action: 'guard.banned', outcome: 'success', reason: 'password spraying, ticket 4411', code: 'banned' },
    guard: { key: '203.0.113.0/24', dimension: 'cidr', until: '2026-11-25T11:00:14.000Z' },
    actor: 'cli:0@unix-socket',
    labels: {
      by: 'cli:0@unix-socket',
      created: '2026-11-25T10:00:14.000Z',
      until: '2026-11-25T11:00:14.000Z',
    },
  },
  {
    event: { action: 'guard.unbanned', outcome: 'success', reason: 'cidr unbanned' },
    guard: { key: '203.0.113.0/24', dimension: 'cidr' },
    actor: 'cli:0@unix-socket',
    labels: {
      by: 'cli:0@unix-socket',
      created: '2026-11-25T10:00:14.000Z',
      until: '2026-11-25T11:00:14.000Z',
    },
  },
  {
    event: { action: 'guard.ban_expired', outcome: 'success', reason: 'client_id ban expired' },
    guard: { key: 'probe-1', dimension: 'client_id', until: '2026-11-25T10:00:00.000Z' },
    actor: 'broker',
    labels: { by: 'guard:flapping', created: '2026-11-25T09:55:00.000Z' },
  },
  {
    event: {
      action: 'guard.flapping_detected',
      outcome: 'success',
      reason: '16 connection attempts in 1m; banning client_id for 5m (offence 1)',
    },
    client: { ip: '10.0.9.3', port: 41022 },
    mqtt: { client_id: 'flappy', listener: 'mqtt' },
    guard: {
      key: 'flappy',
      dimension: 'client_id',
      count: 16,
      window_ms: 60000,
      until: '2026-11-25T10:05:16.000Z',
      dry_run: false,
    },
    actor: 'guard:flapping',
    labels: { offence: '1' },
  },
  {
    event: {
      action: 'guard.throttled',
      outcome: 'success',
      reason: '20 failed authentications in 5m; ip locked out (lockout 1)',
      code: 'connectionRateExceeded',
    },
    client: { ip: '198.51.100.4', port: 40610 },
    mqtt: { client_id: 'probe-7', listener: 'mqtt', username: 'admin' },
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
    event: {
      action: 'metrics.scrape_refused',
      outcome: 'failure',
      reason: 'scrape with a bearer token that does not match',
      code: 'wrong_token',
    },
    client: { ip: '10.0.4.17', port: 51022 },
  },
  {
    event: { action: 'policy.reloaded', outcome: 'success', reason: 'policy reloaded (cli)' },
    policy: {
      file: '/etc/bulwark/site.policy.yaml',
      old_hash: '9b7e41c2d3a85f60e1b4c7d29a0f3e6b58c1d2a4f7e90b3c6d5a8f1e2b4c7d90',
      new_hash: '0f4d11aa6c2e9b7d3f58a1c4e0b2d7f96a3c5e8b1d4f7a2c9e6b0d3f5a8c1e47',
    },
    actor: 'cli:0@unix-socket',
    labels: { trigger: 'cli' },
  },
  {
    event: {
      action: 'policy.reload_failed',
      outcome: 'failure',
      reason:
        '/etc/bulwark/site.policy.yaml:18:5: error: rule 4: unknown key "alow" ' +
        '(allowed keys: name, allow, deny, subjects, topics, when, why)',
    },
    policy: {
      file: '/etc/bulwark/site.policy.yaml',
      old_hash: '0f4d11aa6c2e9b7d3f58a1c4e0b2d7f96a3c5e8b1d4f7a2c9e6b0d3f5a8c1e47',
      new_hash: '77c2e9d0b5a3f1c8e6d4b2a09f7e5c3d1b8a6f4e2c0d9b7a5f3e1c8d6b4a2f09',
      error:
        '/etc/bulwark/site.policy.yaml:18:5: error: rule 4: unknown key "alow" ' +
        '(allowed keys: name, allow, deny, subjects, topics, when, why)',
    },
    actor: 'signal:SIGHUP',
    labels: { trigger: 'sighup' },
  },
  {
    event: { action: 'credentials.reloaded', outcome: 'success', reason: '42 users' },
    policy: {
      file: '/etc/bulwark/passwd.yaml',
      old_hash: '3a1f6e0c9b2d4a7f8e5c1b3d6a9f0e2c4b7d8a1f5e3c6b9d2a4f7e0c8b1d3a5f',
      new_hash: 'c9e8b4a2f0d6c3e1b7a5f9d2c4e8b0a6f3d1c7e5b9a2f4d8c0e6b3a1f7d5c9e2',
    },
    actor: 'broker',
    labels: { authenticator: 'password-file' },
  },
  {
    event: { action: 'credentials.reload_failed', outcome: 'failure', reason: 'previous users kept' },
    policy: {
      file: '/etc/bulwark/passwd.yaml',
      old_hash: 'c9e8b4a2f0d6c3e1b7a5f9d2c4e8b0a6f3d1c7e5b9a2f4d8c0e6b3a1f7d5c9e2',
      error:
        '/etc/bulwark/passwd.yaml:7:11: users.gw-7.hash: hash must be an argon2 PHC string, a mosquitto_passwd ' +
        '$6$/$7$ hash or a bcrypt $2b$ hash (see docs/authentication.md#password-file for the format)',
    },
    actor: 'broker',
    labels: { authenticator: 'password-file' },
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
    event: { action: 'tls.reloaded', outcome: 'success', reason: 'TLS certificate, key, CA or CRL files changed' },
    policy: { file: '/etc/bulwark/certs/server.pem' },
    tls: { subject: 'CN=broker.example.net', fingerprint: '4F:2A:…:9C' },
    mqtt: { listener: 'mqtts' },
    actor: 'broker',
    labels: { serial: '5A3C91E07B2D4F16', not_after: '2027-11-25T00:00:00.000Z' },
  },
  {
    event: {
      action: 'tls.reload_failed',
      outcome: 'failure',
      reason: 'private key does not match the certificate; the previous certificate keeps serving',
    },
    policy: { file: '/etc/bulwark/certs/server.key', error: 'private key does not match the certificate' },
    mqtt: { listener: 'mqtts' },
    actor: 'broker',
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
    event: {
      action: 'tls.handshake_refused',
      outcome: 'failure',
      reason: 'client certificate has expired (CERT_HAS_EXPIRED)',
      code: 'expired',
    },
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
    event: { action: 'admin.command', outcome: 'success' },
    actor: 'cli:0@unix-socket',
    labels: { channel: 'unix-socket', command: 'ban.add', kind: 'cidr', request_id: '1', value: '203.0.113.0/24' },
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
