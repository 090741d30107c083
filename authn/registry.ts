import { z } from 'zod';
import type { AuditEvent } from '../audit/events.js';
import { BulwarkError } from '../src/errors.js';
import type { Logger } from '../src/log.js';
import { AuthenticationChain, type ChainStep, type Precondition } from './chain.js';
import type { Authenticator } from './types.js';
import type { VerificationServices } from './verify/services.js';

/** What the broker hands every authenticator factory. */
export interface AuthenticatorContext {
  /** Shared pools, cache and circuit breakers (one instance per broker). */
  verification: VerificationServices;
  /**
   * Security-relevant happenings outside a CONNECT (`credentials.reloaded`, `credentials.reload_failed`,
   * `credentials.rehashed`, `credentials.rehash_failed`). The broker records them in the audit log;
   * authenticators never write it themselves. (Backend breaker transitions come from `VerificationServices`.)
   */
  onEvent: (event: AuditEvent) => void;
  logger: Logger;
  /** Relative file paths in the configuration resolve against this directory. */
  baseDir: string;
  /** The broker's data directory, for state an authenticator keeps across restarts; absent when embedded without. */
  dataDir?: string;
}

/**
 * One authenticator type. `settings` is a zod object of the type's own snake_case keys (without `type`,
 * `id`, `on_error`, `timeout_ms`, `when`, which the registry adds to every member of the union).
 */
export interface AuthenticatorTypeDefinition<S extends z.ZodObject = z.ZodObject> {
  type: string;
  settings: S;
  create(settings: z.output<S>, id: string, context: AuthenticatorContext): Authenticator;
}

/** Keeps the settings type of `create` tied to its schema while letting the registry store mixed types. */
export function defineAuthenticatorType<S extends z.ZodObject>(
  definition: AuthenticatorTypeDefinition<S>,
): AuthenticatorTypeDefinition {
  return definition as unknown as AuthenticatorTypeDefinition;
}

const KEBAB = /^[a-z0-9][a-z0-9-]{0,62}$/;

export const preconditionSchema = z
  .object({
    listeners: z
      .array(z.string().min(1))
      .min(1)
      .optional()
      .describe('Consult this step only for CONNECTs arriving on one of these listener names.'),
    username_pattern: z
      .string()
      .refine(isValidRegex, 'not a valid regular expression')
      .optional()
      .describe('Consult this step only when the username matches this regular expression (anchor it with ^…$).'),
    requires: z
      .array(z.enum(['certificate', 'password', 'jwt', 'username']))
      .optional()
      .describe(
        'Consult this step only when every listed credential is present; `jwt` means the password has the shape of a compact JWS.',
      ),
  })
  .strict()
  .describe('Preconditions; a step whose preconditions do not hold is skipped (recorded as `skipped`).');

export const stepCommonShape = {
  id: z
    .string()
    .regex(KEBAB, 'kebab-case, at most 63 characters')
    .optional()
    .describe('Step id in audit records; defaults to the type. Must be unique within a chain.'),
  on_error: z
    .enum(['deny', 'next'])
    .default('deny')
    .describe(
      'When the step throws, times out or its backend is unreachable: `deny` answers serverUnavailable (fail closed, the default); `next` treats it as "ignore" and asks the next step.',
    ),
  timeout_ms: z
    .number()
    .int()
    .min(1)
    .max(60_000)
    .default(5_000)
    .describe('Deadline for this step per CONNECT (and per AUTH round); exceeding it counts as an error.'),
  when: preconditionSchema.optional(),
};

/** A circuit breaker's settings, shared by authentication backends and SQL policy sources (authz/config.ts). */
export const breakerFailureThreshold = z.number().int().min(1).max(1_000).default(5);
export const breakerResetMs = z.number().int().min(1).max(3_600_000).default(10_000);

export const verificationConfigSchema = z
  .object({
    hash_concurrency: z
      .number()
      .int()
      .min(1)
      .max(64)
      .default(2)
      .describe('Password hashes (argon2, bcrypt, PBKDF2) computed at once.'),
    hash_queue: z
      .number()
      .int()
      .min(0)
      .max(100_000)
      .default(1_000)
      .describe('Hash verifications allowed to wait; beyond it a CONNECT is answered serverUnavailable at once.'),
    sql_concurrency: z
      .number()
      .int()
      .min(1)
      .max(1_024)
      .default(16)
      .describe('SQL authentication queries in flight at once, over all SQL steps.'),
    sql_queue: z.number().int().min(0).max(100_000).default(1_000).describe('SQL queries allowed to wait for a slot.'),
    cache_max_entries: z
      .number()
      .int()
      .min(0)
      .max(10_000_000)
      .default(10_000)
      .describe('Successful verifications remembered (0 disables the cache).'),
    cache_ttl_ms: z
      .number()
      .int()
      .min(0)
      .max(86_400_000)
      .default(300_000)
      .describe('How long a successful verification is remembered.'),
    breaker_failure_threshold: breakerFailureThreshold.describe(
      'Consecutive backend failures that open a circuit breaker.',
    ),
    breaker_reset_ms: breakerResetMs.describe('How long an open breaker fails fast before letting one probe through.'),
  })
  .strict()
  .prefault({})
  .describe('Bounds on expensive verification work, shared by every chain of the broker.');

export interface ChainConfig {
  anonymous: boolean;
  steps: ReadonlyArray<
    {
      type: string;
      id?: string | undefined;
      on_error: 'deny' | 'next';
      timeout_ms: number;
      when?: z.output<typeof preconditionSchema> | undefined;
    } & Record<string, unknown>
  >;
}

/**
 * Authenticator types by name. The built-in types are in `createBuiltinRegistry()`; other folders export an
 * `AuthenticatorTypeDefinition` and the broker adds it with `register()` before building the config schema.
 */
export class AuthenticatorRegistry {
  readonly #types = new Map<string, AuthenticatorTypeDefinition>();

  register(definition: AuthenticatorTypeDefinition): this {
    if (!KEBAB.test(definition.type)) throw new Error(`authenticator type "${definition.type}" is not kebab-case`);
    if (this.#types.has(definition.type)) throw new Error(`authenticator type "${definition.type}" registered twice`);
    this.#types.set(definition.type, definition);
    return this;
  }

  /** The same as `register(defineAuthenticatorType({ type, settings, create }))`. */
  registerAuthenticatorType<S extends z.ZodObject>(
    type: string,
    settings: S,
    create: AuthenticatorTypeDefinition<S>['create'],
  ): this {
    return this.register(defineAuthenticatorType({ type, settings, create }));
  }

  get types(): string[] {
    return [...this.#types.keys()];
  }

  /** One discriminated-union member per registered type, each with the common step keys. */
  stepSchema(): z.ZodType {
    const members = [...this.#types.values()].map((d) =>
      d.settings.extend({ type: z.literal(d.type).describe('Authenticator type.'), ...stepCommonShape }),
    );
    if (members.length === 0) throw new Error('no authenticator types registered');
    const [first, ...rest] = members;
    return z.discriminatedUnion('type', [first as (typeof members)[number], ...rest]);
  }

  /** `anonymous` + `steps`: the global `authentication` section and each listener's own chain. */
  chainSchema(): z.ZodType<ChainConfig> {
    return z
      .object({
        anonymous: z
          .boolean()
          .default(false)
          .describe('Allow clients that no step accepted, as anonymous identities. Off by default.'),
        steps: z
          .array(this.stepSchema())
          // buildChain refuses this too; here it is also what `bulwark config check` reports, with the line.
          .superRefine((steps, ctx) => {
            const seen = new Set<string>();
            // Each member of the union has `type` and the common `id` (stepCommonShape).
            (steps as ChainConfig['steps']).forEach((step, index) => {
              const id = step.id ?? step.type;
              if (seen.has(id))
                ctx.addIssue({
                  code: 'custom',
                  path: step.id === undefined ? [index] : [index, 'id'],
                  message: `duplicate id "${id}" (give each step of the same type its own \`id\`)`,
                });
              seen.add(id);
            });
          })
          .prefault([])
          .describe('Authenticators, consulted in this order.'),
      })
      .strict() as unknown as z.ZodType<ChainConfig>;
  }

  /** Validates raw configuration (e.g. from YAML) and builds the chain. */
  parseAndBuild(raw: unknown, context: AuthenticatorContext): AuthenticationChain {
    const parsed = this.chainSchema().safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue ? issue.path.join('.') : '';
      throw new BulwarkError('BULWARK_ERR_CONFIG_INVALID', `authentication.${where}: ${issue?.message ?? 'invalid'}`);
    }
    return this.buildChain(parsed.data, context);
  }

  /** Builds a chain from configuration already parsed with `chainSchema()`. Throws `BulwarkError` for configuration mistakes. */
  buildChain(config: ChainConfig, context: AuthenticatorContext): AuthenticationChain {
    const seen = new Set<string>();
    const steps: ChainStep[] = config.steps.map((raw, index) => {
      const definition = this.#types.get(raw.type);
      if (!definition) {
        throw new BulwarkError(
          'BULWARK_ERR_CONFIG_INVALID',
          `authentication step ${index}: unknown type "${raw.type}"`,
        );
      }
      const id = raw.id ?? raw.type;
      if (seen.has(id)) {
        throw new BulwarkError(
          'BULWARK_ERR_CONFIG_INVALID',
          `authentication step ${index}: duplicate id "${id}"`,
          undefined,
          'give each step of the same type its own `id`',
        );
      }
      seen.add(id);
      // `raw` is the output of `chainSchema()`, so the settings were validated (and transformed) already.
      const { type: _type, id: _id, on_error: _onError, timeout_ms: _timeout, when: _when, ...settings } = raw;
      const step: ChainStep = {
        authenticator: definition.create(settings, id, context),
        onError: raw.on_error,
        timeoutMs: raw.timeout_ms,
      };
      if (raw.when) step.when = compilePrecondition(raw.when);
      return step;
    });
    return new AuthenticationChain({ steps, anonymous: config.anonymous });
  }
}

export function compilePrecondition(when: z.output<typeof preconditionSchema>): Precondition {
  const p: Precondition = {};
  if (when.listeners) p.listeners = when.listeners;
  if (when.username_pattern !== undefined) p.usernamePattern = new RegExp(when.username_pattern, 'u');
  if (when.requires) p.requires = when.requires;
  return p;
}

function isValidRegex(source: string): boolean {
  try {
    new RegExp(source, 'u');
    return true;
  } catch {
    return false;
  }
}
