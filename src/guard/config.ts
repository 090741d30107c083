import { z } from 'zod';
import { parseDuration } from '../config/duration.js';
import { parseCidr } from './ip.js';

/** A duration string (`90s`, `5m`, `1h30m`, `7d`) parsed to milliseconds. */
export function durationSchema(defaultValue: string, description: string) {
  return z
    .string()
    .transform((text, ctx) => {
      const ms = parseDuration(text);
      if (ms === undefined) {
        ctx.addIssue({ code: 'custom', message: `expected a duration such as 30s, 5m, 2h or 7d, got "${text}"` });
        return z.NEVER;
      }
      return ms;
    })
    .prefault(defaultValue)
    .describe(`${description} Duration such as 30s, 5m, 2h, 7d. Default ${defaultValue}.`);
}

const flappingDimension = (maxAttempts: number, enabled: boolean, what: string) =>
  z
    .strictObject({
      enabled: z.boolean().default(enabled).describe(`Count connection attempts per ${what}. Default ${enabled}.`),
      max_attempts: z
        .number()
        .int()
        .min(1)
        .max(10_000)
        .default(maxAttempts)
        .describe(`Attempts allowed per ${what} within the window; one more bans the ${what}. Default ${maxAttempts}.`),
      window: durationSchema('1m', `Sliding window over which attempts per ${what} are counted.`),
    })
    .prefault({});

export const flappingConfigSchema = z
  .strictObject({
    enabled: z.boolean().default(true).describe('Detect clients that connect in a loop and ban them. Default true.'),
    dry_run: z
      .boolean()
      .default(false)
      .describe('Record a guard.flapping_detected event for what would be banned, but ban nothing. Default false.'),
    client_id: flappingDimension(15, true, 'client id'),
    username: flappingDimension(15, true, 'username'),
    address: flappingDimension(15, true, 'source address'),
    network: flappingDimension(60, true, 'source network'),
    ipv4_prefix: z
      .number()
      .int()
      .min(8)
      .max(32)
      .default(24)
      .describe('IPv4 prefix length that groups addresses into one network for the network dimension. Default 24.'),
    ipv6_prefix: z
      .number()
      .int()
      .min(16)
      .max(128)
      .default(64)
      .describe('IPv6 prefix length that groups addresses into one network for the network dimension. Default 64.'),
    ban_duration: durationSchema('5m', 'Ban length for a first offence.'),
    escalation_factor: z
      .number()
      .min(1)
      .max(100)
      .default(2)
      .describe('Each repeat offence within offence_memory multiplies the ban length by this. Default 2.'),
    max_ban_duration: durationSchema('24h', 'Upper bound of an escalated ban.'),
    offence_memory: durationSchema('24h', 'How long a past offence counts towards escalation.'),
    max_tracked_keys: z
      .number()
      .int()
      .min(100)
      .max(10_000_000)
      .default(100_000)
      .describe('Keys tracked per dimension; the least recently seen key is forgotten beyond this. Default 100000.'),
  })
  .prefault({});

const throttleDimension = (maxFailures: number, what: string) =>
  z
    .strictObject({
      enabled: z.boolean().default(true).describe(`Count failed authentications per ${what}. Default true.`),
      max_failures: z
        .number()
        .int()
        .min(1)
        .max(10_000)
        .default(maxFailures)
        .describe(`Failures per ${what} within the window that lock it out. Default ${maxFailures}.`),
      window: durationSchema('5m', `Sliding window over which failures per ${what} are counted.`),
    })
    .prefault({});

export const throttleConfigSchema = z
  .strictObject({
    enabled: z
      .boolean()
      .default(true)
      .describe('Refuse attempts from usernames and addresses with repeated authentication failures. Default true.'),
    username: throttleDimension(5, 'username'),
    address: throttleDimension(20, 'source address'),
    lockout: durationSchema('1m', 'First lockout; attempts are refused with 0x9F connectionRateExceeded.'),
    escalation_factor: z
      .number()
      .min(1)
      .max(100)
      .default(2)
      .describe('Each further lockout within offence_memory multiplies its length by this. Default 2.'),
    max_lockout: durationSchema('30m', 'Upper bound of an escalated lockout.'),
    ban_after_lockouts: z
      .number()
      .int()
      .min(1)
      .max(1000)
      .default(3)
      .describe('The lockout that reaches this count becomes a ban: refused with 0x8A banned. Default 3.'),
    ban_duration: durationSchema('1h', 'Length of a ban that a throttled key escalates to.'),
    offence_memory: durationSchema('24h', 'How long a past lockout counts towards escalation.'),
    spare_known_clients: z
      .boolean()
      .default(true)
      .describe(
        'While a username or an address is locked out, a client (username, or client id without one) that ' +
          'authenticated successfully from the same address within known_client_ttl is still let through to ' +
          'authentication; a failure revokes this. Set false to refuse every attempt of a locked-out key. Default true.',
      ),
    known_client_ttl: durationSchema('24h', 'How long a successful login from an address marks its client as known.'),
    max_tracked_keys: z
      .number()
      .int()
      .min(100)
      .max(10_000_000)
      .default(100_000)
      .describe('Keys tracked per dimension; the least recently seen key is forgotten beyond this. Default 100000.'),
  })
  .prefault({});

export const blocklistConfigSchema = z
  .strictObject({
    file: z
      .string()
      .min(1)
      .default('blocklist.json')
      .describe('Block list file, relative to the data directory. Default blocklist.json.'),
    purge_interval: durationSchema('1m', 'How often expired entries are removed (and guard.ban_expired recorded).'),
    max_entries: z
      .number()
      .int()
      .min(1)
      .max(10_000_000)
      .default(100_000)
      .describe(
        'Upper bound of the block list. Automatic bans make room by evicting the automatic ban ending soonest.',
      ),
    max_regex_entries: z
      .number()
      .int()
      .min(0)
      .max(1000)
      .default(64)
      .describe('Upper bound of regular-expression entries, each of which runs on every CONNECT. Default 64.'),
    max_regex_length: z
      .number()
      .int()
      .min(1)
      .max(4096)
      .default(256)
      .describe('Longest accepted regular-expression pattern, in characters. Default 256.'),
  })
  .prefault({});

export const guardConfigSchema = z
  .strictObject({
    flapping: flappingConfigSchema,
    throttle: throttleConfigSchema,
    blocklist: blocklistConfigSchema,
    exempt_networks: z
      .array(
        z
          .string()
          .refine(
            (text) =>
              parseCidr(text) !== undefined ||
              parseCidr(`${text}/128`) !== undefined ||
              parseCidr(`${text}/32`) !== undefined,
            {
              message: 'expected an address or CIDR such as 10.0.0.0/8 or 2001:db8::/32',
            },
          ),
      )
      .default([])
      .describe(
        'Addresses or CIDRs never counted by flapping detection or throttling (load balancer health checks). ' +
          'The block list still applies to them. Default none.',
      ),
  })
  .prefault({})
  .describe(
    'Abuse protection: block list, flapping detection and brute-force throttling. See docs/abuse-protection.md.',
  );

export type GuardConfigInput = z.input<typeof guardConfigSchema>;
export type GuardConfig = z.output<typeof guardConfigSchema>;
export type FlappingConfig = GuardConfig['flapping'];
export type ThrottleConfig = GuardConfig['throttle'];
export type BlocklistConfig = GuardConfig['blocklist'];

/** The defaults, for tests and for tools that run without a configuration file. */
export function defaultGuardConfig(): GuardConfig {
  return guardConfigSchema.parse(undefined);
}
