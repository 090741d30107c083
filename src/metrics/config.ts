import { BlockList, isIP } from 'node:net';
import { z } from 'zod';

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** True for `localhost`, 127.0.0.0/8 and `::1` (any spelling): a host only this machine can reach. */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  const family = isIP(host);
  if (family === 4) return LOOPBACK.check(host, 'ipv4');
  if (family === 6) {
    // An IPv4-mapped loopback (`::ffff:127.0.0.1`) is loopback too; BlockList does not map it across families.
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(host);
    if (mapped) return LOOPBACK.check(mapped[1] as string, 'ipv4');
    return LOOPBACK.check(host, 'ipv6');
  }
  return false;
}

export const metricsConfigSchema = z
  .strictObject({
    enabled: z
      .boolean()
      .default(false)
      .describe('Serve Prometheus metrics over HTTP. Off by default: metrics reveal client counts and denial rates.'),
    host: z
      .string()
      .min(1)
      .default('127.0.0.1')
      .describe(
        'Address the metrics endpoint binds. Anything but loopback (`127.0.0.1`, `::1`, `localhost`) needs `bearer_token_file`.',
      ),
    port: z
      .number()
      .int()
      .min(0)
      .max(65535)
      .default(9464)
      .describe('TCP port of the metrics endpoint (9464, the OpenTelemetry Prometheus exporter port); 0 picks one.'),
    path: z
      .string()
      .startsWith('/')
      .max(256)
      .refine((p) => !/[?#\s]/.test(p), 'a path without query, fragment or whitespace')
      .default('/metrics')
      .describe('The only HTTP path that answers; anything else is 404.'),
    bearer_token_file: z
      .string()
      .min(1)
      .optional()
      .describe(
        'File holding the token scrapers must send as `Authorization: Bearer <token>` (trailing newline ignored; 16 to 4096 visible ASCII characters; readable by the owner only). Read at start.',
      ),
  })
  .superRefine((metrics, ctx) => {
    // Metrics tell who is failing to connect and whether the audit log works: not for the network unauthenticated.
    if (metrics.enabled && metrics.bearer_token_file === undefined && !isLoopbackHost(metrics.host)) {
      ctx.addIssue({
        code: 'custom',
        path: ['host'],
        message: `metrics on ${metrics.host} (not loopback) need bearer_token_file: unauthenticated metrics are served on loopback only`,
      });
    }
  });

export type MetricsConfig = z.infer<typeof metricsConfigSchema>;
