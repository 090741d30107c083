import { z } from 'zod';
import { authorizationConfigSchema } from '../../authz/config.js';
import { authenticationConfigSchema } from '../../authn/config.js';
import { authenticatorRegistry } from '../authentication.js';
import { pskListenerSchema } from '../../authn/psk/index.js';
import { ocspStaplingSchema } from '../transport/ocsp-stapling-config.js';
import { proxyProtocolSchema } from '../transport/proxy-protocol.js';
import { tlsSettingsSchema } from '../transport/tls-context.js';
import { auditConfigSchema } from '../../audit/config.js';
import { guardConfigSchema } from '../guard/config.js';
import { metricsConfigSchema } from '../metrics/config.js';
import { portCollision } from './port-collision.js';

const port = z.number().int().min(0).max(65535);

/** `warmup_connects`' upper bound; the warm-up's own flapping bounds are raised to it (src/warmup/warmup.ts). */
export const MAX_WARMUP_CONNECTS = 20_000;

export const limitsSchema = z
  .object({
    max_packet_size: z
      .number()
      .int()
      .min(64)
      .max(268_435_455)
      .default(1_048_576)
      .describe(
        'Largest MQTT packet accepted from a client, in bytes. Larger packets are refused (v5: DISCONNECT 0x95).',
      ),
    max_client_id_length: z
      .number()
      .int()
      .min(1)
      .max(65_535)
      .default(256)
      .describe('Longest client identifier accepted, in characters.'),
    max_topic_length: z
      .number()
      .int()
      .min(1)
      .max(65_535)
      .default(65_535)
      .describe('Longest topic name or filter accepted, in characters.'),
    max_topic_levels: z
      .number()
      .int()
      .min(1)
      .max(1024)
      .default(128)
      .describe('Most `/`-separated levels in a topic or filter.'),
    receive_maximum: z
      .number()
      .int()
      .min(1)
      .max(65_535)
      .default(32)
      .describe(
        'QoS 1/2 PUBLISH a client may have unacknowledged towards the broker (v5 Receive Maximum); a client exceeding it gets DISCONNECT 0x93.',
      ),
    max_inflight: z
      .number()
      .int()
      .min(1)
      .max(65_535)
      .default(32)
      .describe(
        "QoS 1/2 messages the broker has in flight to one client at once; capped further by the client's own Receive Maximum.",
      ),
    max_queued_messages: z
      .number()
      .int()
      .min(0)
      .max(10_000_000)
      .default(1000)
      .describe('Messages kept per session while its client is offline or its window is full.'),
    queue_overflow: z
      .enum(['drop-new', 'drop-oldest'])
      .default('drop-new')
      .describe(
        'What happens when the queue is full: drop the arriving message (Mosquitto) or the oldest queued one (EMQX). Both are counted in $SYS and logged.',
      ),
    queue_qos0_messages: z
      .boolean()
      .default(false)
      .describe("Queue QoS 0 messages for offline persistent sessions, as Mosquitto's queue_qos0_messages."),
    max_subscriptions: z
      .number()
      .int()
      .min(1)
      .max(1_000_000)
      .default(1000)
      .describe('Subscriptions one session may hold; more are refused with SUBACK 0x97.'),
    topic_alias_maximum: z
      .number()
      .int()
      .min(0)
      .max(65_535)
      .default(64)
      .describe('Topic aliases a v5 client may use towards the broker.'),
    max_keepalive: z
      .number()
      .int()
      .min(1)
      .max(65_535)
      .default(65_535)
      .describe(
        'Largest keep alive a client may ask for, in seconds. v5 clients are told the lower value (Server Keep Alive); 3.1.1 clients asking for more are refused, as Mosquitto does.',
      ),
    connect_timeout_ms: z
      .number()
      .int()
      .min(100)
      .max(600_000)
      .default(10_000)
      .describe(
        'Time a new connection has to send CONNECT (and finish authentication) before it is closed; on ws/wss listeners also the time it has to complete its WebSocket upgrade.',
      ),
    max_output_buffer_bytes: z
      .number()
      .int()
      .min(4096)
      .default(4 * 1_048_576)
      .describe('Unsent bytes buffered for a client that does not read; past this the client is disconnected.'),
    max_session_expiry_interval: z
      .number()
      .int()
      .min(0)
      .max(0xffff_ffff)
      .default(0xffff_ffff)
      .describe(
        "Upper bound on a session's expiry interval, in seconds; 4294967295 means sessions may never expire. Applies to 3.1.1 persistent sessions too.",
      ),
    max_qos: z
      .union([z.literal(0), z.literal(1), z.literal(2)])
      .default(2)
      .describe('Highest QoS the broker accepts (v5 Maximum QoS).'),
    retain_available: z.boolean().default(true).describe('Whether clients may publish retained messages.'),
  })
  .strict();

export const persistenceSchema = z
  .object({
    durability: z
      .enum(['sync', 'periodic', 'none'])
      .default('sync')
      .describe(
        'sync: PUBACK/PUBREC is sent only once the message is on disk for every persistent session that must receive it (group commit). ' +
          'periodic: written at once, flushed to disk every flush_interval_ms; a power loss can lose that window, a broker crash loses nothing written. ' +
          'none: memory only; a restart loses every session and retained message.',
      ),
    flush_interval_ms: z
      .number()
      .int()
      .min(10)
      .max(60_000)
      .default(1000)
      .describe('periodic: how often the journal is flushed to disk.'),
    max_batch_delay_ms: z
      .number()
      .int()
      .min(0)
      .max(100)
      .default(0)
      .describe('Longest a change waits to share a write with others; 0 writes on the next turn of the event loop.'),
    compact_min_bytes: z
      .number()
      .int()
      .min(1024)
      .default(64 * 1_048_576)
      .describe('The journal is compacted once it exceeds this size and four times the last compacted size.'),
  })
  .strict();

export const listenerSchema = z
  .object({
    name: z
      .string()
      .min(1)
      .optional()
      .describe('Listener name used in logs, audit records and policy subjects; defaults to `transport:port`.'),
    transport: z.enum(['tcp', 'tls', 'ws', 'wss']).default('tcp').describe('Transport of the listener.'),
    host: z.string().default('127.0.0.1').describe('Address to bind: `0.0.0.0`, `::`, `127.0.0.1`, `::1`, ...'),
    port: port.describe('TCP port; 0 picks a free port (tests).'),
    authentication: authenticatorRegistry
      .chainSchema()
      .optional()
      .describe(
        "This listener's own authentication chain (`anonymous`, `steps`); without it the global `authentication` chain applies. See docs/authentication.md.",
      ),
    tls: tlsSettingsSchema
      .optional()
      .describe('tls/wss: certificate, key, client CA, CRL, versions and ciphers. See docs/tls.md.'),
    psk: pskListenerSchema.optional().describe('tls: TLS-PSK identities and keys for this listener. See docs/tls.md.'),
    ocsp_stapling: ocspStaplingSchema
      .optional()
      .describe('tls/wss: staple an OCSP response for the server certificate.'),
    proxy_protocol: proxyProtocolSchema
      .optional()
      .describe('tcp/tls: expect a PROXY protocol v1/v2 header from trusted load balancers.'),
    socket_layer: z
      .enum(['direct', 'net'])
      .optional()
      .describe(
        "tcp: how sockets are driven. `direct` (the default for tcp listeners without PROXY protocol) drives Node's TCP handles without `net.Socket` streams, which saves about 70 µs of CPU per accepted connection and about 0.35 KiB per idle one. `net` uses Node's `net` module. Both behave the same to clients. When the running Node does not offer the handles (or runs with `--pending-deprecation`), `direct` falls back to `net` and logs `socket_layer direct is unavailable: using net` with the reason. See docs/performance.md.",
      ),
    websocket_path: z
      .string()
      .startsWith('/')
      .default('/mqtt')
      .describe('ws/wss: the HTTP path that accepts MQTT over WebSocket upgrades.'),
    v3_publish_denied: z
      .enum(['disconnect', 'drop'])
      .default('disconnect')
      .describe(
        'What a 3.1.1 client gets when a PUBLISH is denied: disconnected (default, so it notices) or the message silently dropped.',
      ),
  })
  .strict()
  .superRefine((listener, ctx) => {
    if ((listener.transport === 'tls' || listener.transport === 'wss') && !listener.tls) {
      ctx.addIssue({
        code: 'custom',
        path: ['tls'],
        message: `a ${listener.transport} listener needs a tls section (cert_file, key_file)`,
      });
    }
    // A tls section on a plaintext listener would read as protection (require_certificate!) it does not give.
    if (listener.tls && (listener.transport === 'tcp' || listener.transport === 'ws')) {
      ctx.addIssue({
        code: 'custom',
        path: ['tls'],
        message: `a ${listener.transport} listener does not use tls; set transport: ${listener.transport === 'tcp' ? 'tls' : 'wss'}`,
      });
    }
    if (listener.psk && listener.transport !== 'tls') {
      ctx.addIssue({ code: 'custom', path: ['psk'], message: 'psk needs transport: tls' });
    }
    if (listener.proxy_protocol?.enabled && (listener.transport === 'ws' || listener.transport === 'wss')) {
      ctx.addIssue({
        code: 'custom',
        path: ['proxy_protocol'],
        message: 'PROXY protocol is supported on tcp and tls listeners',
      });
    }
    // The CN a proxy reports is worth something only from a trusted proxy that terminated TLS itself.
    if (listener.proxy_protocol?.use_ssl_tlv_cn) {
      if (!listener.proxy_protocol.enabled) {
        ctx.addIssue({
          code: 'custom',
          path: ['proxy_protocol', 'use_ssl_tlv_cn'],
          message: 'use_ssl_tlv_cn needs proxy_protocol.enabled: true (and trusted_proxies)',
        });
      } else if (listener.transport === 'tls') {
        ctx.addIssue({
          code: 'custom',
          path: ['proxy_protocol', 'use_ssl_tlv_cn'],
          message:
            'use_ssl_tlv_cn is for tcp listeners behind a proxy that terminates TLS; on a tls listener the broker verifies the client certificate itself: remove use_ssl_tlv_cn',
        });
      }
    }
    if (listener.socket_layer !== undefined && listener.transport !== 'tcp') {
      ctx.addIssue({ code: 'custom', path: ['socket_layer'], message: 'socket_layer applies to tcp listeners' });
    }
    if (listener.socket_layer === 'direct' && listener.proxy_protocol?.enabled) {
      ctx.addIssue({
        code: 'custom',
        path: ['socket_layer'],
        message: 'a listener with PROXY protocol reads its sockets through net: use socket_layer: net or leave it out',
      });
    }
  });

export const configSchema = z
  .object({
    data_dir: z
      .string()
      .default('./data')
      .describe('Where sessions, retained messages, bans and the audit log are kept.'),
    log_level: z
      .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
      .default('info')
      .describe('Structured log level.'),
    listeners: z
      .array(listenerSchema)
      .min(1)
      .describe(
        'Where the broker listens. Each listener has its own transport, chain and limits. Two listeners, or a listener and the metrics endpoint, on one port of overlapping addresses (as Linux has them: the same address, `::`, or `0.0.0.0` and an IPv4 address; host names as written) are refused at the second one, also when `bulwark start -p` makes them collide.',
      ),
    limits: limitsSchema.default(limitsSchema.parse({})).describe('Protocol limits, the same for every listener.'),
    authentication: authenticationConfigSchema(authenticatorRegistry)
      .prefault({})
      .describe(
        'The global authentication chain (`anonymous`, `steps`, in order) and the shared verification bounds. See docs/authentication.md.',
      ),
    authorization: authorizationConfigSchema
      .prefault({})
      .describe('Policy sources, decision cache and reload. See docs/policy.md.'),
    check_receive_on_delivery: z
      .boolean()
      .default(true)
      .describe(
        'Check `receive` rules on every delivery, live and queued, not only on retained messages sent at subscribe time. A subscription whose whole filter the policy files let its client receive skips the per-delivery check (worked out once per subscription and policy version); others cost one policy check per delivery. `false` makes deliveries follow the subscription alone.',
      ),
    audit: auditConfigSchema.prefault({}).describe('The tamper-evident audit log. See docs/audit.md.'),
    guard: guardConfigSchema
      .prefault({})
      .describe(
        'Abuse protection: block list, flapping detection, brute-force throttling. See docs/abuse-protection.md.',
      ),
    persistence: persistenceSchema
      .default(persistenceSchema.parse({}))
      .describe('Durability of sessions and retained messages. See docs/persistence.md.'),
    metrics: metricsConfigSchema
      .prefault({})
      .describe(
        'Prometheus metrics over HTTP: off by default, loopback unless a bearer token protects it. See docs/metrics.md.',
      ),
    sys_interval_seconds: z
      .number()
      .int()
      .min(0)
      .max(3600)
      .default(10)
      .describe('How often `$SYS/broker/...` topics are refreshed; 0 turns them off.'),
    warmup_connects: z
      .number()
      .int()
      .min(0)
      .max(MAX_WARMUP_CONNECTS)
      .default(4000)
      .describe(
        '`bulwark start` only: MQTT connects run against throwaway brokers (two at a time, three in all) on private loopback ports, from the loopback addresses 127.0.0.2–127.0.0.17, before the listeners open, so that the reconnect wave after a restart meets compiled code (measured: the first 10,000 connects after a start at 0.50–0.65× Mosquitto\'s rate with it, 0.41–0.50× without). About a second per 4,000 here; stops after 10 s. Nothing of the real broker sees them: not the audit log, the guard, sessions, metrics or any configured authenticator, and the memory they used is returned before the start. 0 opens the listeners at once. See docs/performance.md, "Start-up warm-up".',
      ),
  })
  .strict()
  .superRefine((config, ctx) => {
    // Said here, so that config check says it too, at the line of the second socket.
    const collision = portCollision(config);
    if (collision) ctx.addIssue({ code: 'custom', path: collision.path, message: collision.message });
  });

export type BrokerConfig = z.infer<typeof configSchema>;
export type ListenerConfig = z.infer<typeof listenerSchema>;
export type Limits = z.infer<typeof limitsSchema>;
