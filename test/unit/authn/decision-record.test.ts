import { describe, expect, it } from 'vitest';
import { canonicalJsonWith } from '../../../audit/canonical.js';
import { WRITE_RECORD_BODY, type AuditEvent } from '../../../audit/events.js';
import { encodeRecord, splitLine } from '../../../audit/record.js';
import { authnDecisionEvent } from '../../../authn/decision-event.js';
import { proxyReportedTls, type ChainResult, type ConnectAttempt, type StepRecord } from '../../../authn/types.js';
import { ReasonCode, type ReasonName } from '../../../src/protocol/reason-codes.js';
import { seededInts } from '../../helpers/seeded.js';

/** What the generic canonical writer makes of the event: the reference the event's own writer must equal. */
function genericBody(event: AuditEvent, timestamp: string, seq: number, prevHash: string): string {
  return canonicalJsonWith(event as unknown as Record<string, unknown>, {
    '@timestamp': timestamp,
    seq,
    prev_hash: prevHash,
  });
}

describe('the authentication decision record', () => {
  it('is written by its own writer byte for byte as the canonical writer writes it, over every variant', () => {
    const next = seededInts(7);
    // Client ids, user names and details come from clients: quotes, escapes, controls, non-ASCII, lone surrogates.
    const pieces = [
      'a',
      'Z',
      '9',
      '"',
      '\\',
      '\n',
      '\u0000',
      '\u001f',
      '\u007f',
      'é',
      '中',
      '\u{1f600}',
      '\ud800',
      '/',
    ];
    const text = (): string => Array.from({ length: next(12) }, () => pieces[next(pieces.length)]).join('');
    const numbers = [0, 1, 0.25, 184.274, 1e21, 1e-7, -0, Number.NaN, Number.POSITIVE_INFINITY, 65535];
    const answers: StepRecord['answer'][] = ['allow', 'deny', 'ignore', 'error', 'timeout', 'skipped'];
    const reasons = Object.keys(ReasonCode) as ReasonName[];
    const variants = new Set<string>();
    for (let i = 0; i < 4000; i++) {
      const steps: StepRecord[] = Array.from({ length: next(4) }, () => {
        const step: StepRecord = {
          id: text(),
          type: text(),
          answer: answers[next(answers.length)] as StepRecord['answer'],
          durationMs: numbers[next(numbers.length)] as number,
        };
        if (next(2) === 0) step.detail = text();
        return step;
      });
      const attempt: ConnectAttempt = {
        listener: text(),
        clientId: text(),
        username: next(2) === 0 ? undefined : text(),
        password: undefined,
        protocolVersion: ([3, 4, 5] as const)[next(3)] as 3 | 4 | 5,
        peer: { address: text(), port: numbers[next(numbers.length)] as number },
        // A certificate a trusted proxy reported is recorded with its source (tls.source: proxy).
        tls: next(2) === 0 ? undefined : proxyReportedTls(text()),
        authMethod: next(3) === 0 ? text() : undefined,
        authData: undefined,
      };
      const groups = Array.from({ length: next(3) }, text);
      const result: Exclude<ChainResult, { kind: 'continue' }> =
        next(2) === 0
          ? {
              kind: 'allow',
              steps,
              identity: {
                clientId: attempt.clientId,
                username: next(2) === 0 ? undefined : text(),
                groups,
                attributes: {},
                superuser: false,
                anonymous: false,
                authenticator: text(),
              },
            }
          : {
              kind: 'deny',
              reason: reasons[next(reasons.length)] as ReasonName,
              detail: text(),
              decidedBy: text(),
              steps,
            };
      // A refused re-authentication names the identity the connection already holds, when there is one.
      const connected =
        next(2) === 0
          ? undefined
          : {
              ...anonymousIdentity(attempt.clientId),
              anonymous: false,
              username: text(),
              groups,
              authenticator: text(),
            };
      const event = authnDecisionEvent(attempt, result, next(4) === 0, connected);
      const seq = next(1_000_000);
      const timestamp = new Date(next(2_000_000_000) * 1000).toISOString();
      const prevHash = text();
      const own = event[WRITE_RECORD_BODY]?.call(event, timestamp, seq, prevHash);
      expect(own).toBe(genericBody(event, timestamp, seq, prevHash));
      variants.add(
        [
          result.kind,
          event.user?.name !== undefined,
          event.mqtt?.username !== undefined,
          event.authn?.method !== undefined,
          steps.length,
          steps.some((s) => s.detail !== undefined),
          event.tls?.source === 'proxy',
        ].join(),
      );
    }
    // Every combination was met: allow/deny × user name × CONNECT username × method × (no steps, or 1–3 steps
    // with or without a detail) × certificate reported by a proxy.
    expect(variants.size).toBe(2 * 2 * 2 * 2 * (1 + 3 * 2) * 2);
  });

  it('is what the audit writer puts in the line, and the line verifies', () => {
    const event = authnDecisionEvent(
      {
        listener: 'tcp',
        clientId: 'sensor-1',
        username: undefined,
        password: undefined,
        protocolVersion: 5,
        peer: { address: '192.0.2.7', port: 50001 },
        tls: undefined,
        authMethod: undefined,
        authData: undefined,
      },
      { kind: 'allow', steps: [], identity: anonymousIdentity('sensor-1') },
    );
    const prevHash = '0'.repeat(64);
    const { line, hash } = encodeRecord(event, '2026-11-26T00:00:00.000Z', 42, prevHash);
    const split = splitLine(line.trimEnd());
    expect(split?.hash).toBe(hash);
    expect(split?.body).toBe(genericBody(event, '2026-11-26T00:00:00.000Z', 42, prevHash));
    // The writer consults the event's own writer: a different body from it lands in the line.
    const marked: AuditEvent = { ...event, [WRITE_RECORD_BODY]: () => '{"marker":true}' };
    expect(encodeRecord(marked, 't', 1, prevHash).line).toContain('"marker":true');
  });
});

describe('the reason code an authentication decision records', () => {
  const attempt = (protocolVersion: 3 | 4 | 5): ConnectAttempt => ({
    listener: 'tcp',
    clientId: 'c-1',
    username: 'alice',
    password: undefined,
    protocolVersion,
    peer: { address: '192.0.2.7', port: 50001 },
    tls: undefined,
    authMethod: undefined,
    authData: undefined,
  });
  const deny = (reason: ReasonName): Exclude<ChainResult, { kind: 'continue' }> => ({
    kind: 'deny',
    reason,
    detail: 'refused',
    decidedBy: 'users',
    steps: [],
  });

  // MQTT 3.1.1 section 3.2.2.3: the CONNACK return code is what a 3.1 or 3.1.1 client was sent.
  it.each([
    ['badUserNameOrPassword', 4, 4, 0x86],
    ['clientIdentifierNotValid', 3, 2, 0x85],
    ['notAuthorized', 4, 5, 0x87],
    ['banned', 4, 5, 0x8a],
    ['serverUnavailable', 3, 3, 0x88],
    ['connectionRateExceeded', 4, 3, 0x9f],
  ] as const)('for %s is the return code sent on 3.1 and 3.1.1, the reason code on 5', (reason, v3, sent, v5) => {
    const denied = authnDecisionEvent(attempt(v3), deny(reason));
    expect(denied.mqtt?.reason_code).toBe(sent);
    // The canonical fast writer writes the same number.
    expect(denied[WRITE_RECORD_BODY]?.call(denied, 't', 1, 'p')).toContain(`"reason_code":${sent}`);
    expect(authnDecisionEvent(attempt(5), deny(reason)).mqtt?.reason_code).toBe(v5);
  });

  it('for an accepted CONNECT is 0 on every version', () => {
    for (const version of [3, 4, 5] as const) {
      const e = authnDecisionEvent(attempt(version), { kind: 'allow', steps: [], identity: anonymousIdentity('c-1') });
      expect(e.mqtt?.reason_code).toBe(0);
    }
  });
});

describe('the user an authentication decision names', () => {
  const attempt = (username: string | undefined): ConnectAttempt => ({
    listener: 'tcp',
    clientId: 'c-1',
    username,
    password: undefined,
    protocolVersion: 4,
    peer: { address: '192.0.2.7', port: 50001 },
    tls: undefined,
    authMethod: undefined,
    authData: undefined,
  });
  const deny: Exclude<ChainResult, { kind: 'continue' }> = {
    kind: 'deny',
    reason: 'badUserNameOrPassword',
    detail: 'password does not match',
    decidedBy: 'users',
    steps: [],
  };

  it('is never the username an anonymous client sent: that is only mqtt.username', () => {
    const e = authnDecisionEvent(attempt('admin'), { kind: 'allow', steps: [], identity: anonymousIdentity('c-1') });
    expect(e.user?.name).toBeUndefined();
    expect(e.mqtt?.username).toBe('admin');
  });

  it('is absent from a refused CONNECT, which keeps the claimed username for brute-force forensics', () => {
    const e = authnDecisionEvent(attempt('alice'), deny);
    expect(e.user).toBeUndefined();
    expect(e.mqtt?.username).toBe('alice');
  });

  it('is the verified identity when a certificate or token names another user than the CONNECT', () => {
    const identity = { ...anonymousIdentity('c-1'), anonymous: false, username: 'device-7', authenticator: 'x509' };
    const e = authnDecisionEvent(attempt('spoofed'), { kind: 'allow', steps: [], identity });
    expect(e.user?.name).toBe('device-7');
    expect(e.mqtt?.username).toBe('spoofed');
  });

  it('is the identity the connection holds when its re-authentication is refused', () => {
    const identity = { ...anonymousIdentity('c-1'), anonymous: false, username: 'svc', authenticator: 'scram' };
    const e = authnDecisionEvent(attempt('svc'), deny, true, identity);
    expect(e.event.action).toBe('authn.reauth_denied');
    expect(e.user?.name).toBe('svc');
  });
});

function anonymousIdentity(clientId: string) {
  return {
    clientId,
    username: undefined,
    groups: [],
    attributes: {},
    superuser: false,
    anonymous: true,
    authenticator: 'anonymous',
  };
}
