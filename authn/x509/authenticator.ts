import type { AuthnOutcome, Authenticator, ConnectAttempt, Identity, PeerCertificate } from '../types.js';
import { classifyRefusal } from '../../src/transport/peer-certificate.js';

/** Which part of the certificate names the client. */
export type IdentitySource = 'cn' | 'dn' | 'san_dns' | 'san_uri' | 'san_email' | 'fingerprint';

export interface X509AuthenticatorOptions {
  id: string;
  identitySource: IdentitySource;
  /** For SAN sources: only entries starting with this prefix count (e.g. `spiffe://example.org/`). */
  sanPrefix?: string;
  /** The mapped identity becomes the username (replacing any the client sent). */
  useAsUsername: boolean;
  /** The MQTT client id must equal the mapped identity. */
  requireClientIdMatch: boolean;
  /** The MQTT username the client sent must equal the mapped identity. */
  requireUsernameMatch: boolean;
  /** Each OU becomes a group of the identity. */
  groupsFromOu: boolean;
}

type Mapping = { ok: true; value: string } | { ok: false; detail: string };

function firstSan(values: readonly string[], kind: string, prefix: string | undefined): Mapping {
  const value = prefix === undefined ? values[0] : values.find((v) => v.startsWith(prefix));
  if (value !== undefined) return { ok: true, value };
  const what = prefix === undefined ? `${kind} SAN` : `${kind} SAN starting with ${JSON.stringify(prefix)}`;
  return { ok: false, detail: `client certificate has no ${what}` };
}

export function mapIdentity(cert: PeerCertificate, source: IdentitySource, sanPrefix?: string): Mapping {
  switch (source) {
    case 'cn':
      return cert.subjectCn !== undefined && cert.subjectCn.length > 0
        ? { ok: true, value: cert.subjectCn }
        : { ok: false, detail: 'client certificate has no subject CN' };
    case 'dn':
      return cert.subjectDn.length > 0
        ? { ok: true, value: cert.subjectDn }
        : { ok: false, detail: 'client certificate has an empty subject' };
    case 'san_dns':
      return firstSan(cert.sanDns, 'DNS', sanPrefix);
    case 'san_uri':
      return firstSan(cert.sanUri, 'URI', sanPrefix);
    case 'san_email':
      return firstSan(cert.sanEmail, 'email', sanPrefix);
    case 'fingerprint':
      return { ok: true, value: cert.fingerprint256 };
  }
}

/** Identity attributes for policies. Multi-valued fields are joined with `,` (values are listed in certificate order). */
export function certificateAttributes(
  cert: PeerCertificate,
  mapped: string,
  source: IdentitySource,
): Record<string, string> {
  const attributes: Record<string, string> = {
    'cert.identity': mapped,
    'cert.identity_source': source,
    'cert.dn': cert.subjectDn,
    'cert.issuer_dn': cert.issuerDn,
    'cert.serial': cert.serialNumber,
    'cert.fingerprint': cert.fingerprint256,
    'cert.not_after': cert.validTo,
  };
  if (cert.subjectCn !== undefined) attributes['cert.cn'] = cert.subjectCn;
  const lists: Array<[string, readonly string[]]> = [
    ['cert.ou', cert.organizationalUnits],
    ['cert.san_dns', cert.sanDns],
    ['cert.san_uri', cert.sanUri],
    ['cert.san_email', cert.sanEmail],
    ['cert.san_ip', cert.sanIp],
  ];
  for (const [key, values] of lists) if (values.length > 0) attributes[key] = values.join(',');
  return attributes;
}

/**
 * Attributes of a certificate a trusted proxy verified and reported only by its CN (`TlsPeerInfo.source: proxy`):
 * `cert.source` says so, and the facts it did not report (DN, issuer, serial, fingerprint, validity, OUs, SANs) are
 * absent, so no policy condition on them can match.
 */
function proxyCertificateAttributes(cn: string): Record<string, string> {
  return { 'cert.cn': cn, 'cert.identity': cn, 'cert.identity_source': 'cn', 'cert.source': 'proxy' };
}

/**
 * Authenticates a client by the certificate it presented in the TLS handshake (mTLS), or by the CN of the one a
 * trusted TLS-terminating proxy verified (`TlsPeerInfo.source: proxy`).
 *
 * Contract: ignores connections without a client certificate (so a password step can follow); denies a
 * certificate the TLS layer did not verify, with OpenSSL's reason; otherwise maps the certificate to an
 * identity by the configured source, enforces the optional client-id/username binding and allows. A certificate
 * the proxy reported has only a CN: `identity_source` other than `cn` and `groups_from_ou` need facts it did not
 * report, so they deny. Pure and synchronous underneath: safe to run concurrently for any number of clients.
 */
export class X509Authenticator implements Authenticator {
  readonly type = 'x509';
  readonly id: string;
  readonly #options: X509AuthenticatorOptions;

  constructor(options: X509AuthenticatorOptions) {
    this.id = options.id;
    this.#options = options;
  }

  async authenticate(attempt: ConnectAttempt, _signal: AbortSignal): Promise<AuthnOutcome> {
    return this.decide(attempt);
  }

  decide(attempt: ConnectAttempt): AuthnOutcome {
    const tls = attempt.tls;
    if (tls === undefined) return { kind: 'ignore', detail: 'not a TLS connection' };
    const cert = tls.certificate;
    if (cert === undefined) return { kind: 'ignore', detail: 'no client certificate presented' };
    if (!tls.authorized) {
      const refusal = classifyRefusal(tls);
      return {
        kind: 'deny',
        reason: 'notAuthorized',
        detail: refusal?.message ?? 'client certificate was not verified',
      };
    }
    const o = this.#options;
    const fromProxy = tls.source === 'proxy';
    if (fromProxy && o.identitySource !== 'cn') {
      return {
        kind: 'deny',
        reason: 'notAuthorized',
        detail: `identity_source ${o.identitySource} needs the certificate itself; the proxy reported only its CN`,
      };
    }
    if (fromProxy && o.groupsFromOu) {
      return {
        kind: 'deny',
        reason: 'notAuthorized',
        detail: "groups_from_ou needs the certificate's OUs; the proxy reported only its CN",
      };
    }
    const mapped = mapIdentity(cert, o.identitySource, o.sanPrefix);
    if (!mapped.ok) return { kind: 'deny', reason: 'notAuthorized', detail: mapped.detail };
    if (o.requireClientIdMatch && attempt.clientId !== mapped.value) {
      return {
        kind: 'deny',
        reason: 'notAuthorized',
        detail: `client id ${JSON.stringify(attempt.clientId)} does not match the certificate ${o.identitySource} ${JSON.stringify(mapped.value)}`,
      };
    }
    if (o.requireUsernameMatch && attempt.username !== mapped.value) {
      const sent = attempt.username === undefined ? 'no username' : `username ${JSON.stringify(attempt.username)}`;
      return {
        kind: 'deny',
        reason: 'notAuthorized',
        detail: `${sent} does not match the certificate ${o.identitySource} ${JSON.stringify(mapped.value)}`,
      };
    }
    const identity: Identity = {
      clientId: attempt.clientId,
      // Only a name the certificate vouches for: the CONNECT User Name alone is whatever the client wrote.
      username: o.useAsUsername || o.requireUsernameMatch ? mapped.value : undefined,
      groups: o.groupsFromOu ? [...cert.organizationalUnits] : [],
      attributes: fromProxy
        ? proxyCertificateAttributes(mapped.value)
        : certificateAttributes(cert, mapped.value, o.identitySource),
      superuser: false,
      anonymous: false,
      authenticator: this.id,
    };
    return { kind: 'allow', identity };
  }
}
