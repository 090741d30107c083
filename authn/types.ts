import type { ReasonName } from '../src/protocol/reason-codes.js';
import { escapeDnValue } from '../src/transport/peer-certificate.js';
import type { Secret } from './secret.js';

/** What the TLS layer learned about the peer, when the listener is TLS. */
export interface TlsPeerInfo {
  /** True when the certificate chain verified against the listener's CA bundle (and CRLs). */
  authorized: boolean;
  /** OpenSSL's reason when `authorized` is false, e.g. `CERT_HAS_EXPIRED`. */
  authorizationError?: string;
  certificate?: PeerCertificate;
  /** The TLS-PSK identity the client presented, for PSK listeners. */
  pskIdentity?: string;
  protocol?: string;
  cipher?: string;
  /**
   * Where these facts come from. Absent: this broker's own TLS handshake. `proxy`: a trusted load balancer that
   * terminated TLS and reported, in a PROXY v2 SSL TLV, that it verified the client certificate, with the subject
   * CN (`proxy_protocol.use_ssl_tlv_cn`). Nothing else about the certificate was reported: `certificate` then holds
   * `subjectCn` and `subjectDn` (`CN=<cn>`), and its other members are empty, never to be read as facts.
   */
  source?: 'proxy';
}

export interface PeerCertificate {
  subjectCn?: string;
  /** RFC 4514 style distinguished name, e.g. `CN=dev1,OU=sensors,O=Acme`. */
  subjectDn: string;
  issuerDn: string;
  serialNumber: string;
  /** SHA-256 fingerprint, colon-separated upper-case hex as Node prints it. */
  fingerprint256: string;
  organizationalUnits: string[];
  sanDns: string[];
  sanUri: string[];
  sanEmail: string[];
  sanIp: string[];
  validFrom: string;
  validTo: string;
}

/**
 * TLS facts for a client certificate a trusted proxy verified and named by `cn` (see `TlsPeerInfo.source`): the
 * only facts it reported. Empty strings and lists stand for what it did not report.
 */
export function proxyReportedTls(cn: string): TlsPeerInfo {
  return {
    authorized: true,
    source: 'proxy',
    certificate: {
      subjectCn: cn,
      subjectDn: `CN=${escapeDnValue(cn)}`,
      issuerDn: '',
      serialNumber: '',
      fingerprint256: '',
      organizationalUnits: [],
      sanDns: [],
      sanUri: [],
      sanEmail: [],
      sanIp: [],
      validFrom: '',
      validTo: '',
    },
  };
}

/** The client certificate's SHA-256 fingerprint, when this broker saw the certificate (never for `source: proxy`). */
export function certificateFingerprint(tls: TlsPeerInfo | undefined): string | undefined {
  return tls === undefined || tls.source === 'proxy' ? undefined : tls.certificate?.fingerprint256;
}

/**
 * One CONNECT as the authentication chain sees it. Built once per connection attempt by the broker;
 * authenticators must treat it as read-only.
 */
export interface ConnectAttempt {
  listener: string;
  clientId: string;
  username: string | undefined;
  password: Secret | undefined;
  protocolVersion: 3 | 4 | 5;
  peer: { address: string; port: number };
  tls: TlsPeerInfo | undefined;
  /** MQTT 5 enhanced authentication: CONNECT's Authentication Method and Data. */
  authMethod: string | undefined;
  authData: Buffer | undefined;
  /**
   * The User Name carries a credential on this listener (a JWT step with `token_from: username`): it is read by
   * the authenticators and never recorded, logged or used as a guard key (`recordableUsername`).
   */
  usernameIsCredential?: boolean;
}

/** The CONNECT User Name as audit records, log lines and guard keys may show it: never when it is a credential. */
export function recordableUsername(attempt: ConnectAttempt): string | undefined {
  return attempt.usernameIsCredential === true ? undefined : attempt.username;
}

/** Shared, frozen empties for identities without groups or attributes: one object instead of one per connection. */
export const NO_GROUPS: readonly string[] = Object.freeze([]);
export const NO_ATTRIBUTES: Readonly<Record<string, string>> = Object.freeze({});

/**
 * Who a client is once the chain allowed it. Policies (authz) read every field; the audit log records all of
 * them except attributes marked secret by their authenticator (none are today).
 */
export interface Identity {
  clientId: string;
  username: string | undefined;
  groups: readonly string[];
  /** Free-form attributes for policies: `cert.cn`, `cert.ou`, `cert.fingerprint`, `jwt.sub`, `ldap.dn`, ... */
  attributes: Readonly<Record<string, string>>;
  superuser: boolean;
  anonymous: boolean;
  /** Id of the chain step that allowed the client, e.g. `password-file`, or `anonymous`. */
  authenticator: string;
  /** Epoch milliseconds after which the credential is no longer valid (JWT `exp`); the broker disconnects then. */
  expiresAt?: number;
  /** ACL entries carried by the credential itself (a JWT claim), in the policy-file grammar. */
  aclRules?: unknown;
}

export type AuthnOutcome =
  | {
      kind: 'allow';
      identity: Identity;
      /** What the audit record's step should say about how it allowed (never a secret). */
      detail?: string;
      /**
       * MQTT 5 enhanced authentication: final data for the client (SCRAM's server-final `v=...`), sent as
       * CONNACK's Authentication Data, or in the AUTH 0x00 that ends a re-authentication.
       */
      authData?: Buffer;
    }
  | {
      kind: 'deny';
      reason: ReasonName;
      /** Why, for the audit record and the log. Never sent to the client. */
      detail: string;
      /** What the client may be told (MQTT 5 Reason String); see `ClientDetail`. */
      clientDetail?: ClientDetail;
      /** See `AttemptedUsername`. */
      attemptedUsername?: string;
    }
  /** MQTT 5 enhanced authentication: send `data` in AUTH 0x18 and call `step()` again with the client's reply. */
  | { kind: 'continue'; data: Buffer; state: unknown; /** See `AttemptedUsername`. */ attemptedUsername?: string }
  /** Not mine: ask the next authenticator. `detail` explains why (e.g. "no password presented"). */
  | { kind: 'ignore'; detail?: string };

/**
 * An authentication step.
 *
 * Contract: `authenticate` is called once per CONNECT that reaches this step, concurrently for many clients.
 * Its outcome is final for the chain unless it is `ignore`. Throwing, or not settling before `signal` aborts,
 * is a backend failure: the chain turns it into `deny serverUnavailable` unless the step is configured with
 * `on_error: next`. Outcomes are values; expected refusals are never thrown.
 */
export interface Authenticator {
  /** Unique within the chain, kebab-case; appears in audit records as `authn.steps[].id`. */
  readonly id: string;
  /** The authenticator kind: `password-file`, `jwt`, `postgres`, `mysql`, `x509`, `psk`, `ldap`, `scram`. */
  readonly type: string;
  authenticate(attempt: ConnectAttempt, signal: AbortSignal): Promise<AuthnOutcome>;
  /**
   * The answer when it is known without waiting (a verification cached moments ago), or undefined to run
   * `authenticate`. It must give the answer `authenticate` would, and must not throw. The chain then skips the
   * step's timer, abort signal and promises: most of what a known client's reconnect costs.
   */
  quickAnswer?(attempt: ConnectAttempt): AuthnOutcome | undefined;
  /** True when this step reads its credential from the CONNECT User Name (see `ConnectAttempt.usernameIsCredential`). */
  readonly usernameIsCredential?: boolean;
  start?(): Promise<void>;
  stop?(): Promise<void>;
  /**
   * Reads and checks the files `start` would read (a password, PSK or SCRAM credential file), keeping nothing,
   * watching nothing and contacting nothing: `bulwark config check`. Steps without such files leave it out.
   */
  checkFiles?(): Promise<void>;
}

/** One round of an MQTT 5 enhanced authentication exchange. */
export interface AuthExchange {
  attempt: ConnectAttempt;
  method: string;
  /** Authentication Data of the client's AUTH packet. */
  data: Buffer | undefined;
  /** What this authenticator returned in its previous `continue` outcome. */
  state: unknown;
  /** True for re-authentication (AUTH 0x19) of a connected client. */
  reauthentication: boolean;
}

/**
 * An authenticator that implements MQTT 5 enhanced authentication methods (SCRAM). The chain routes a
 * CONNECT carrying an Authentication Method to the first enhanced authenticator that lists it; `authenticate`
 * receives the first message, `step` every later one.
 */
export interface EnhancedAuthenticator extends Authenticator {
  readonly methods: readonly string[];
  step(exchange: AuthExchange, signal: AbortSignal): Promise<AuthnOutcome>;
}

export function isEnhanced(a: Authenticator): a is EnhancedAuthenticator {
  return Array.isArray((a as Partial<EnhancedAuthenticator>).methods);
}

/** How one step answered, for the audit record. */
export interface StepRecord {
  id: string;
  type: string;
  answer: 'allow' | 'deny' | 'ignore' | 'continue' | 'error' | 'timeout' | 'skipped';
  durationMs: number;
  detail?: string;
}

/**
 * `attemptedUsername` on a `deny` or `continue`: the user name whose credential the step checked (or is checking),
 * when the step read it from somewhere other than the CONNECT User Name, e.g. SCRAM's `n=` in the client-first
 * message. Abuse protection counts a failure against the name that was tried, and can refuse a locked-out or
 * banned name as soon as it is known, before its proof is verified. It is never an identity: only `allow` says who
 * the client is. Undefined means the CONNECT User Name is the name tried.
 */
export type AttemptedUsername = string | undefined;

/**
 * A refusal's text meant for the client itself, as a CONNACK Reason String. Only what helps a legitimate client and
 * reveals nothing of the broker's side: the failed check of the client's own token, say, never backend error
 * text, whether a user exists, or how a stored credential looks. Absent, the client gets the generic text for the
 * reason code (`clientReasonString`).
 */
export type ClientDetail = string;

/** The chain's verdict on one CONNECT (or one AUTH round). */
export type ChainResult =
  | { kind: 'allow'; identity: Identity; steps: StepRecord[]; /** See the `allow` AuthnOutcome. */ authData?: Buffer }
  | {
      kind: 'deny';
      reason: ReasonName;
      detail: string;
      /** See `ClientDetail`. */
      clientDetail?: ClientDetail;
      decidedBy: string;
      steps: StepRecord[];
      attemptedUsername?: AttemptedUsername;
    }
  | {
      kind: 'continue';
      data: Buffer;
      method: string;
      state: ChainExchangeState;
      steps: StepRecord[];
      attemptedUsername?: AttemptedUsername;
    };

/** Opaque to the broker: which step is mid-exchange and its own state. */
export interface ChainExchangeState {
  stepId: string;
  method: string;
  state: unknown;
  /** The name the exchange is about, once a round reported it: a later deny that does not say is counted against it. */
  attemptedUsername?: AttemptedUsername;
}

/**
 * What the broker calls. One instance per listener (listeners without their own chain share the global one).
 */
export interface ConnectAuthenticator {
  /** A value when the answer needs no waiting (a chain without steps), a promise otherwise. */
  authenticate(attempt: ConnectAttempt): ChainResult | Promise<ChainResult>;
  /** Continue an enhanced authentication exchange with the client's AUTH packet. */
  continueExchange(
    exchange: ChainExchangeState,
    attempt: ConnectAttempt,
    data: Buffer | undefined,
    reauthentication: boolean,
  ): Promise<ChainResult>;
  /** True when some step implements this MQTT 5 authentication method. */
  supportsMethod(method: string): boolean;
  /** True when some step reads its credential from the CONNECT User Name. */
  readonly usernameIsCredential?: boolean;
}
