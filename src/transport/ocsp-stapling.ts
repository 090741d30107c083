import 'reflect-metadata';
import { X509Certificate as NodeX509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Server } from 'node:tls';
import { AuthorityInfoAccessExtension, X509Certificate } from '@peculiar/x509';
import type { AuditEvent } from '../../audit/events.js';
import { type OcspCertStatus, createOcspRequest, parseOcspResponse } from '../../certs/ocsp.js';
import { decodePemBlocks } from '../../certs/pem.js';

export type OcspSource = { kind: 'aia' } | { kind: 'url'; url: string } | { kind: 'file'; file: string };

export interface OcspStaplerOptions {
  /** The certificate as served: leaf first, then intermediates. */
  certificatePem: string;
  /** The leaf's issuer, when not the second certificate of `certificatePem`. */
  issuerPem?: string;
  source: OcspSource;
  fetchTimeoutMs?: number;
  retryMs?: number;
  maxAgeMs?: number;
  /** Upper bound on a responder's answer; real responses are a few KiB. */
  maxResponseBytes?: number;
  now?: () => number;
  /** Scheduling, injectable so tests need not wait for wall-clock time. */
  timers?: { set(fn: () => void, ms: number): unknown; clear(handle: unknown): void };
}

export interface StapledResponse {
  der: Buffer;
  status: OcspCertStatus;
  thisUpdate: Date;
  nextUpdate: Date | undefined;
  /** When the response stops being stapled: nextUpdate, or thisUpdate + maxAgeMs. */
  expiresAt: number;
}

export type OcspEvent =
  | {
      action: 'tls.ocsp_refreshed';
      status: OcspCertStatus;
      thisUpdate: Date;
      nextUpdate: Date | undefined;
      source: string;
    }
  | { action: 'tls.ocsp_failed'; reason: string; source: string; stapling: boolean };

export type OcspRefreshResult = { kind: 'ok'; response: StapledResponse } | { kind: 'failed'; reason: string };

export interface OcspStapler {
  /** First fetch; never throws (a failure is reported and retried, and handshakes go unstapled meanwhile). */
  start(): Promise<OcspRefreshResult>;
  refresh(): Promise<OcspRefreshResult>;
  /** After the TLS certificate was reloaded: forget the old response and fetch one for the new certificate. */
  setCertificate(certificatePem: string, issuerPem?: string): Promise<OcspRefreshResult>;
  /** The `OCSPRequest` listener for a `tls.Server`. */
  handleOcspRequest(
    certificate: Buffer,
    issuer: Buffer | null,
    callback: (error: Error | null, response?: Buffer) => void,
  ): void;
  attach(server: Server): void;
  current(): StapledResponse | undefined;
  /** Epoch ms of the next scheduled refresh, if any. */
  readonly nextRefreshAt: number | undefined;
  close(): void;
}

const HOUR_MS = 3_600_000;
/** Never refresh more often than this, whatever a short-lived response says. */
const MIN_REFRESH_MS = 60_000;

/** The OCSP responder URL from the certificate's Authority Information Access extension (RFC 5280 §4.2.2.1). */
export function ocspUrlOf(certificatePem: string): string | undefined {
  const cert = new X509Certificate(certificatePem);
  const aia = cert.getExtension(AuthorityInfoAccessExtension);
  return aia?.ocsp.find((name) => name.type === 'url' && /^https?:\/\//i.test(name.value))?.value;
}

function pickIssuer(chainPem: string, issuerPem: string | undefined): Buffer | undefined {
  const chain = decodePemBlocks(chainPem, 'CERTIFICATE');
  const leaf = chain[0];
  if (leaf === undefined) return undefined;
  const candidates = [...chain.slice(1), ...(issuerPem ? decodePemBlocks(issuerPem, 'CERTIFICATE') : [])];
  const leafNode = new NodeX509Certificate(leaf);
  return candidates.find((c) => leafNode.checkIssued(new NodeX509Certificate(c)));
}

/**
 * Keeps a fresh, verified OCSP response for the broker's own certificate and staples it (RFC 6066 §8).
 * Responses are verified against the issuer before use, never stapled past nextUpdate, and refreshed at the
 * midpoint of their validity; a failed refresh keeps the previous response while it is still valid.
 */
export function createOcspStapler(options: OcspStaplerOptions, onEvent: (event: OcspEvent) => void): OcspStapler {
  const now = options.now ?? Date.now;
  const timers = options.timers ?? {
    set: (fn: () => void, ms: number) => {
      const t = setTimeout(fn, Math.min(ms, 2 ** 31 - 1));
      t.unref();
      return t;
    },
    clear: (h: unknown) => clearTimeout(h as NodeJS.Timeout),
  };
  const retryBase = options.retryMs ?? 60_000;
  const maxAge = options.maxAgeMs ?? 86_400_000;
  const maxBytes = options.maxResponseBytes ?? 64 * 1024;
  let certificatePem = options.certificatePem;
  let issuerPem = options.issuerPem;
  let cached: StapledResponse | undefined;
  let leafDer: Buffer | undefined;
  let timer: unknown;
  let nextRefreshAt: number | undefined;
  let failures = 0;
  let closed = false;
  let inFlight: Promise<OcspRefreshResult> | undefined;

  const sourceName = (): string => {
    if (options.source.kind === 'file') return `file:${options.source.file}`;
    if (options.source.kind === 'url') return options.source.url;
    return ocspUrlOf(certificatePem) ?? 'aia';
  };

  const schedule = (at: number): void => {
    if (closed) return;
    if (timer !== undefined) timers.clear(timer);
    nextRefreshAt = at;
    timer = timers.set(() => void stapler.refresh(), Math.max(0, at - now()));
  };

  const obtain = async (leaf: Buffer, issuer: Buffer): Promise<Buffer> => {
    if (options.source.kind === 'file') return readFile(options.source.file);
    const url = options.source.kind === 'url' ? options.source.url : ocspUrlOf(certificatePem);
    if (url === undefined)
      throw new Error('the certificate has no OCSP responder URL (Authority Information Access); set responder_url');
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/ocsp-request', accept: 'application/ocsp-response' },
      body: createOcspRequest(leaf, issuer),
      signal: AbortSignal.timeout(options.fetchTimeoutMs ?? 5_000),
      redirect: 'error',
    });
    if (!response.ok) throw new Error(`responder answered HTTP ${response.status}`);
    const declared = Number(response.headers.get('content-length') ?? '0');
    if (declared > maxBytes) throw new Error(`response larger than ${maxBytes} bytes`);
    const body = Buffer.from(await response.arrayBuffer());
    if (body.length > maxBytes) throw new Error(`response larger than ${maxBytes} bytes`);
    return body;
  };

  const doRefresh = async (): Promise<OcspRefreshResult> => {
    const source = sourceName();
    const fail = (reason: string): OcspRefreshResult => {
      failures += 1;
      if (cached && cached.expiresAt <= now()) cached = undefined;
      onEvent({ action: 'tls.ocsp_failed', reason, source, stapling: cached !== undefined });
      const retryAt = now() + Math.min(retryBase * 2 ** (failures - 1), HOUR_MS);
      schedule(cached ? Math.min(retryAt, cached.expiresAt) : retryAt);
      return { kind: 'failed', reason };
    };
    const leaf = decodePemBlocks(certificatePem, 'CERTIFICATE')[0];
    const issuer = pickIssuer(certificatePem, issuerPem);
    if (leaf === undefined) return fail('no certificate to staple for');
    if (issuer === undefined)
      return fail('the issuer certificate is unknown; put it after the leaf in cert_file or set issuer_file');
    leafDer = leaf;
    let der: Buffer;
    try {
      der = await obtain(leaf, issuer);
    } catch (error) {
      return fail(error instanceof Error ? error.message : String(error));
    }
    const parsed = parseOcspResponse(der, leaf, issuer);
    if (!parsed.ok) return fail(parsed.error);
    const { status, thisUpdate, nextUpdate } = parsed.response;
    const t = now();
    const expiresAt = nextUpdate?.getTime() ?? thisUpdate.getTime() + maxAge;
    if (expiresAt <= t) return fail(`the response expired at ${new Date(expiresAt).toISOString()}`);
    if (thisUpdate.getTime() > t + 5 * 60_000)
      return fail(`the response is dated in the future (${thisUpdate.toISOString()})`);
    cached = { der, status, thisUpdate, nextUpdate, expiresAt };
    failures = 0;
    onEvent({ action: 'tls.ocsp_refreshed', status, thisUpdate, nextUpdate, source });
    // Refresh at the midpoint of the validity window, so a responder outage has half the window to heal.
    const midpoint = thisUpdate.getTime() + (expiresAt - thisUpdate.getTime()) / 2;
    schedule(Math.max(midpoint, t + Math.min(MIN_REFRESH_MS, (expiresAt - t) / 2)));
    return { kind: 'ok', response: cached };
  };

  const stapler: OcspStapler = {
    start: () => stapler.refresh(),
    refresh: () => {
      inFlight ??= doRefresh().finally(() => {
        inFlight = undefined;
      });
      return inFlight;
    },
    setCertificate: async (pem, issuer) => {
      if (inFlight) await inFlight.catch(() => undefined);
      certificatePem = pem;
      if (issuer !== undefined) issuerPem = issuer;
      cached = undefined;
      failures = 0;
      return stapler.refresh();
    },
    handleOcspRequest: (certificate, _issuer, callback) => {
      const response = cached;
      // Only staple a response about the certificate this handshake actually serves, and only while valid.
      if (
        response === undefined ||
        leafDer === undefined ||
        !certificate.equals(leafDer) ||
        response.expiresAt <= now()
      ) {
        callback(null);
        return;
      }
      callback(null, response.der);
    },
    attach: (server) => void server.on('OCSPRequest', stapler.handleOcspRequest),
    current: () => (cached && cached.expiresAt > now() ? cached : undefined),
    get nextRefreshAt() {
      return nextRefreshAt;
    },
    close: () => {
      closed = true;
      if (timer !== undefined) timers.clear(timer);
      timer = undefined;
      nextRefreshAt = undefined;
    },
  };
  return stapler;
}

/** The audit record for a stapling event. */
export function ocspEventToAudit(event: OcspEvent, listener: string): AuditEvent {
  if (event.action === 'tls.ocsp_failed') {
    return {
      event: {
        action: 'tls.ocsp_failed',
        outcome: 'failure',
        reason: `${event.reason}${event.stapling ? '; the previous response is still stapled' : '; handshakes are not stapled'}`,
      },
      mqtt: { listener },
      tls: { error: event.reason },
      actor: 'broker',
      labels: { source: event.source },
    };
  }
  const labels: Record<string, string> = {
    source: event.source,
    status: event.status,
    this_update: event.thisUpdate.toISOString(),
  };
  if (event.nextUpdate) labels.next_update = event.nextUpdate.toISOString();
  return {
    event: {
      action: 'tls.ocsp_refreshed',
      outcome: event.status === 'good' ? 'success' : 'failure',
      reason: `OCSP status ${event.status}`,
    },
    mqtt: { listener },
    actor: 'broker',
    labels,
  };
}
