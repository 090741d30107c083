import { z } from 'zod';

const hex64 = z.string().regex(/^[0-9a-f]{64}$/);

/**
 * One stored audit record, as zod: the single source of `audit/schema.json` (a test keeps them equal) and what the
 * tests check every written record against. Unknown members are refused so a new field cannot go undocumented.
 */
export const auditRecordSchema = z
  .object({
    '@timestamp': z.iso.datetime().describe('When the broker recorded the event (UTC, millisecond precision).'),
    seq: z.number().int().min(1).describe('Position in the chain: 1 for the first record ever, +1 per record.'),
    prev_hash: hex64.describe('`hash` of the record with `seq - 1`; 64 zeros for seq 1.'),
    hash: hex64.describe(
      'SHA-256 (hex) of `prev_hash`, a newline, and the canonical JSON (RFC 8785) of this record without `hash`.',
    ),
    event: z
      .object({
        action: z.string().describe('Stable dotted id of what happened, e.g. `authn.denied`. See the action list.'),
        outcome: z.enum(['success', 'failure', 'unknown']).describe('ECS event.outcome.'),
        reason: z.string().optional().describe('Human-readable reason for the outcome.'),
        code: z.string().optional().describe('MQTT 5 reason name sent on the wire, e.g. `notAuthorized`.'),
      })
      .strict(),
    client: z
      .object({
        ip: z.string().optional().describe('Peer address as the broker saw it (after PROXY protocol, if enabled).'),
        port: z.number().int().optional().describe('Peer port.'),
      })
      .strict()
      .optional(),
    user: z
      .object({
        name: z
          .string()
          .optional()
          .describe(
            'User name of the verified identity (a user name a password was checked for, certificate CN, JWT ' +
              'sub…); absent for anonymous clients and refused CONNECTs. Never an unverified CONNECT username.',
          ),
        groups: z.array(z.string()).optional().describe('Groups of the identity, as policies see them.'),
      })
      .strict()
      .optional(),
    mqtt: z
      .object({
        client_id: z.string().optional().describe('MQTT client identifier.'),
        listener: z.string().optional().describe('Name of the listener the client came in on.'),
        protocol_version: z.number().int().optional().describe('3 (3.1), 4 (3.1.1) or 5.'),
        topic: z.string().optional().describe('Topic name, or topic filter for subscriptions.'),
        qos: z.number().int().optional().describe('Requested QoS.'),
        retain: z.boolean().optional().describe('Retain flag of the PUBLISH or will.'),
        reason_code: z.number().int().optional().describe('Numeric MQTT reason code sent (0x87 → 135).'),
        payload: z.string().optional().describe('base64 payload; only with `audit.include_payload: true`.'),
        username: z
          .string()
          .optional()
          .describe('The username field of the CONNECT, as sent; not verified (the identity is `user.name`).'),
      })
      .strict()
      .optional(),
    authn: z
      .object({
        by: z
          .string()
          .optional()
          .describe(
            'Id of the chain step that decided, e.g. `password-file`; `anonymous` for a client admitted as anonymous, ' +
              '`chain` when no step decided, `broker` when the broker refused before any step ran or after the chain allowed.',
          ),
        steps: z
          .array(
            z
              .object({
                id: z.string().describe('Chain step id.'),
                type: z.string().describe('Authenticator type.'),
                answer: z.string().describe('allow, deny, ignore, continue, error or timeout.'),
                duration_ms: z.number().describe('Time the step took.'),
                detail: z.string().optional().describe('Why, without secrets.'),
              })
              .strict(),
          )
          .optional()
          .describe('Every authenticator consulted, in order, with its answer.'),
        method: z.string().optional().describe('MQTT 5 enhanced authentication method, e.g. `SCRAM-SHA-256`.'),
      })
      .strict()
      .optional(),
    authz: z
      .object({
        rule: z
          .string()
          .optional()
          .describe(
            'The deciding rule as `file:line`, `default-deny`, a broker rule (`sys-topics-are-read-only`, ' +
              '`restored-will-without-identity`), a JWT claim rule as `<source id>:aclRules:<n>`, a SQL row as ' +
              '`<source id>:<n>`, or a pseudo-rule ' +
              '(`superuser`, `source-error`, `source-timeout`, `identity-not-representable`).',
          ),
        rule_name: z.string().optional().describe('The rule’s name, when it has one.'),
        source: z
          .string()
          .optional()
          .describe('Authorization source id (by default its type: `file`, `jwt`, `postgres`, `mysql`), or `broker`.'),
        action: z
          .string()
          .optional()
          .describe(
            'The access asked for: connect, publish, subscribe or receive (a will is asked as publish, a retained ' +
              'message sent on subscribe as receive).',
          ),
        explanation: z.string().optional().describe('How the decision was reached.'),
      })
      .strict()
      .optional(),
    guard: z
      .object({
        key: z.string().optional().describe('What was banned or throttled: an address, client id or user name.'),
        dimension: z
          .string()
          .optional()
          .describe(
            'What the key is: ip, cidr, network, client_id, username, client_id_regex, username_regex, ' +
              'fingerprint or jwt_sub.',
          ),
        count: z.number().optional().describe('Events counted in the window.'),
        window_ms: z.number().optional().describe('Length of the counting window.'),
        until: z.string().optional().describe('End of the ban (ISO 8601).'),
        dry_run: z.boolean().optional().describe('True when the guard only reports.'),
      })
      .strict()
      .optional(),
    tls: z
      .object({
        error: z.string().optional().describe('OpenSSL reason a handshake or certificate was refused.'),
        subject: z.string().optional().describe('Certificate subject DN.'),
        fingerprint: z.string().optional().describe('Certificate SHA-256 fingerprint.'),
        source: z
          .literal('proxy')
          .optional()
          .describe(
            'On authn records: the client certificate was verified by a trusted TLS-terminating proxy, which ' +
              'reported only its CN (PROXY v2 SSL TLV, `use_ssl_tlv_cn`); `subject` is then `CN=<cn>`.',
          ),
      })
      .strict()
      .optional(),
    policy: z
      .object({
        file: z.string().optional().describe('Policy, credential, certificate or configuration file.'),
        old_hash: z.string().optional().describe('SHA-256 of the content that was live before.'),
        new_hash: z.string().optional().describe('SHA-256 of the content now live (or refused).'),
        error: z.string().optional().describe('Why a reload was refused (`file:line:column: message`).'),
      })
      .strict()
      .optional(),
    config: z
      .object({
        changed: z
          .array(z.string())
          .optional()
          .describe('Configuration keys whose value changed (`log_level`, `audit.fsync`, `listeners`), never values.'),
        applied: z.array(z.string()).optional().describe('Of those, the keys the running broker applied at once.'),
        restart_required: z
          .array(z.string())
          .optional()
          .describe('Of those, the keys that keep their old value until the broker is restarted.'),
      })
      .strict()
      .optional()
      .describe('`config.changed`: what a configuration reload changed, by key path.'),
    actor: z.string().optional().describe('Who performed an administrative action: `cli:root@unix-socket`, `broker`…'),
    audit: z
      .object({
        file: z.string().optional().describe('An audit file this record is about.'),
        first_seq: z.number().int().optional().describe('First seq of a file deleted by retention.'),
        last_seq: z.number().int().optional().describe('Last seq of a file deleted by retention.'),
        last_hash: hex64.optional().describe('Hash of the last record of a file deleted by retention.'),
        records: z.number().int().optional().describe('Records in a deleted file, when known.'),
        offset: z.number().int().optional().describe('Byte offset of a sealed torn tail.'),
        length: z.number().int().optional().describe('Length in bytes of a sealed torn tail.'),
        sha256: hex64.optional().describe('SHA-256 of the sealed torn bytes.'),
        dropped: z.number().int().optional().describe('Events dropped while the log could not be written.'),
        failures: z.number().int().optional().describe('Failed write attempts during the outage.'),
        reason: z
          .string()
          .optional()
          .describe(
            'Retention: max_files or max_age; checkpoint: interval, rotation or shutdown; refusals suppressed: ' +
              'window_end or shutdown.',
          ),
        action: z
          .string()
          .optional()
          .describe('Refusals suppressed: the action of the refusals counted, e.g. `tls.handshake_refused`.'),
        suppressed: z
          .number()
          .int()
          .min(1)
          .optional()
          .describe('Refusals suppressed: refusals of the key in the interval that have no record of their own.'),
        recorded: z
          .number()
          .int()
          .min(0)
          .optional()
          .describe('Refusals suppressed: refusals of the key in the interval that were recorded one by one.'),
        window_start: z.iso
          .datetime()
          .optional()
          .describe('Refusals suppressed: start of the interval the counts cover (inclusive).'),
        window_end: z.iso
          .datetime()
          .optional()
          .describe('Refusals suppressed: end of the interval the counts cover (exclusive).'),
        overflow: z
          .boolean()
          .optional()
          .describe('Refusals suppressed: true for the key counting refusals beyond `audit.refusals.max_keys`.'),
        checkpoint: z
          .object({
            seq: z.number().int().min(0).describe('seq of the record the checkpoint signs (the one before it).'),
            hash: hex64.describe('hash of that record.'),
            key_id: z.string().describe('base64url SHA-256 of the signing key’s SPKI DER.'),
            public_key: z.string().describe('The signing key’s SPKI DER, base64.'),
            signature: z
              .string()
              .describe(
                'Ed25519 signature, base64, over `bulwark-audit-checkpoint-v2\\n<seq>\\n<hash>\\n<audit.reason>` ' +
                  '(checkpoints of older versions: `bulwark-audit-checkpoint\\n<seq>\\n<hash>`).',
              ),
          })
          .strict()
          .optional(),
      })
      .strict()
      .optional()
      .describe('The audit log’s own bookkeeping records (`audit.*` actions).'),
    labels: z.record(z.string(), z.string()).optional().describe('Anything else, flat string values only.'),
  })
  .strict()
  .describe('One line of a Bulwark audit log file');

/** The JSON Schema (draft 2020-12) written to audit/schema.json. */
export function auditRecordJsonSchema(): unknown {
  return {
    $id: 'https://bulwark.invalid/audit/record.schema.json',
    title: 'Bulwark audit record',
    ...z.toJSONSchema(auditRecordSchema, { target: 'draft-2020-12' }),
  };
}
