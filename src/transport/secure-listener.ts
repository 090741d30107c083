import { readFileSync } from 'node:fs';
import https from 'node:https';
import type net from 'node:net';
import { isAbsolute, resolve } from 'node:path';
import tls, { type TLSSocket } from 'node:tls';
import type { AuditEvent } from '../../audit/events.js';
import type { TlsPeerInfo } from '../../authn/types.js';
import {
  createPskServerHooks,
  PSK_CIPHERS,
  PskStore,
  pskSafeCiphers,
  type PskListenerSettings,
  type PskServerHooks,
} from '../../authn/psk/index.js';
import type { Broker } from '../broker.js';
import type { ListenerRuntime } from '../listener.js';
import type { OcspStapler } from './ocsp-stapling.js';
import type { OcspStaplingSettings } from './ocsp-stapling-config.js';
import { classifyRefusal, tlsPeerInfo } from './peer-certificate.js';
import {
  createTlsContextManager,
  tlsContextOptionsFrom,
  tlsEventToAudit,
  type TlsContextManager,
  type TlsSettings,
} from './tls-context.js';
import { createWebSocketServer } from './websocket.js';
import { peerOf } from './tcp.js';

export interface SecureListenerSettings {
  tls: TlsSettings;
  psk: PskListenerSettings | undefined;
  ocsp: OcspStaplingSettings | undefined;
}

/**
 * Handshakes one listener keeps open at once. A handshake holds a socket and OpenSSL state before the client has
 * proved anything, so past this bound new connections are closed at once instead of piling up (docs/tls.md).
 */
export const MAX_PENDING_HANDSHAKES = 1024;

/** Addresses learned from a PROXY header, keyed by the raw socket the TLS socket wraps. */
export const proxiedPeers = new WeakMap<net.Socket, { address: string; port: number }>();

/**
 * Addresses of raw sockets, taken when they connect: a socket that has been destroyed (a failed handshake) no
 * longer reports its `remoteAddress`, and the refusal must still name who it was.
 */
const connectedPeers = new WeakMap<net.Socket, { address: string; port: number }>();

function peerOfTls(socket: TLSSocket): { address: string; port: number } {
  const parent = (socket as unknown as { _parent?: net.Socket })._parent;
  return (parent && (proxiedPeers.get(parent) ?? connectedPeers.get(parent))) ?? peerOf(socket);
}

/**
 * Everything a `tls` or `wss` listener owns: the hot-reloading context, the PSK store and the OCSP stapler.
 * A refused client certificate is recorded with OpenSSL's reason before the socket is closed: under TLS 1.3 a
 * handshake-level refusal would only show up as ECONNRESET, so certificates are verified but not enforced by
 * OpenSSL (`rejectUnauthorized: false`) and enforced here, after recording.
 */
export class SecureListener {
  /** Raw sockets whose handshake has not finished yet. */
  private readonly pending = new Set<net.Socket>();
  /**
   * Raw sockets closed because the bound was reached. Node's TLS layer has wrapped them already and reports the
   * close as a failed handshake (`ECONNRESET`, "socket hang up"), which would blame the client; they are recorded
   * with the bound's own code instead.
   */
  private readonly closedAtBound = new WeakSet<net.Socket>();

  private constructor(
    readonly manager: TlsContextManager,
    readonly psk: { store: PskStore; hooks: PskServerHooks } | undefined,
    readonly stapler: OcspStapler | undefined,
    private readonly settings: SecureListenerSettings,
    readonly maxPendingHandshakes: number,
  ) {}

  /** Handshakes in progress now, at most `maxPendingHandshakes` (diagnostics and tests). */
  get pendingHandshakes(): number {
    return this.pending.size;
  }

  /** `maxPendingHandshakes` is not a setting: only tests lower it, to reach the bound without 1024 sockets. */
  static async create(
    settings: SecureListenerSettings,
    listener: string,
    baseDir: string,
    audit: (e: AuditEvent) => void,
    maxPendingHandshakes = MAX_PENDING_HANDSHAKES,
  ): Promise<SecureListener> {
    const path = (p: string): string => (isAbsolute(p) ? p : resolve(baseDir, p));
    const options = tlsContextOptionsFrom(settings.tls, path);
    let psk: { store: PskStore; hooks: PskServerHooks } | undefined;
    if (settings.psk) {
      const store = new PskStore({
        file: path(settings.psk.file),
        watch: settings.psk.watch,
        debounceMs: settings.psk.reload_debounce_ms,
        onEvent: audit,
      });
      await store.start();
      const hooks = createPskServerHooks(store);
      psk = { store, hooks };
      options.pskCallback = hooks.pskCallback;
      if (settings.psk.identity_hint !== undefined) options.pskIdentityHint = settings.psk.identity_hint;
      // TLS 1.3 is pinned to SHA-256 suites even for an operator's list: see PSK_CIPHERS for the bypass a
      // SHA-384 suite opened.
      if (settings.tls.ciphers === undefined) {
        options.ciphers = PSK_CIPHERS;
        options.honorCipherOrder = true;
      } else {
        options.ciphers = pskSafeCiphers(settings.tls.ciphers);
      }
    }
    let stapler: OcspStapler | undefined;
    const ocsp = settings.ocsp;
    // Read at start (a missing file stops the start) and again with each certificate reload, which is when a
    // new issuer would come with it; an unreadable file then keeps the one already known.
    const issuerFile = ocsp?.enabled && ocsp.issuer_file !== undefined ? path(ocsp.issuer_file) : undefined;
    const readIssuer = (): string | undefined => (issuerFile ? readFileSync(issuerFile, 'utf8') : undefined);
    const issuerPem = readIssuer();
    const manager = await createTlsContextManager(options, (event) => {
      audit(tlsEventToAudit(event, listener, options.certFile));
      if (event.action !== 'tls.reloaded' || !stapler) return;
      let issuer: string | undefined;
      try {
        issuer = readIssuer();
      } catch {
        issuer = undefined;
      }
      void stapler.setCertificate(manager.certificatePem, issuer);
    });
    if (ocsp?.enabled) {
      // Loaded only for a listener that staples: the stapler brings @peculiar/x509 and the ASN.1 modules.
      const { createOcspStapler, ocspEventToAudit } = await import('./ocsp-stapling.js');
      stapler = createOcspStapler(
        {
          certificatePem: manager.certificatePem,
          ...(issuerPem !== undefined ? { issuerPem } : {}),
          source: ocsp.response_file
            ? { kind: 'file', file: path(ocsp.response_file) }
            : ocsp.responder_url
              ? { kind: 'url', url: ocsp.responder_url }
              : { kind: 'aia' },
          fetchTimeoutMs: ocsp.fetch_timeout_ms,
          retryMs: ocsp.retry_ms,
          maxAgeMs: ocsp.max_age_ms,
        },
        (event) => audit(ocspEventToAudit(event, listener)),
      );
      await stapler.start();
    }
    return new SecureListener(manager, psk, stapler, settings, maxPendingHandshakes);
  }

  /** TLS peer facts for the authentication chain; undefined when the handshake must be refused (already recorded). */
  private admit(socket: TLSSocket, broker: Broker, listener: ListenerRuntime): TlsPeerInfo | undefined {
    // identityOf answers only for a session the PSK keyed, so a claimed identity cannot stand in for a certificate.
    const info = tlsPeerInfo(socket, this.psk?.hooks.identityOf(socket));
    if (this.settings.tls.require_certificate && info.pskIdentity === undefined && !info.authorized) {
      const refusal = classifyRefusal(info) ?? {
        refusal: 'invalid',
        code: 'UNKNOWN',
        message: 'certificate not verified',
      };
      const peer = peerOfTls(socket);
      // Bounded (audit.refusals): a client can present a refused certificate in a loop at no cost.
      const recorded = broker.recordRefusal({
        event: { action: 'tls.handshake_refused', outcome: 'failure', reason: refusal.message, code: refusal.refusal },
        client: { ip: peer.address, port: peer.port },
        mqtt: { listener: listener.name },
        tls: {
          error: refusal.code,
          subject: info.certificate?.subjectDn,
          fingerprint: info.certificate?.fingerprint256,
        },
      });
      if (recorded)
        broker.log.info(
          {
            peer: `${peer.address}:${peer.port}`,
            listener: listener.name,
            refusal: refusal.refusal,
            code: refusal.code,
          },
          'TLS client refused',
        );
      socket.destroy();
      return undefined;
    }
    return info;
  }

  /**
   * Bounds what a client that never finishes its handshake can hold: the time (the server's `handshakeTimeout`,
   * set to `limits.connect_timeout_ms`) and the number of such sockets. Connections handed over by the PROXY
   * reader arrive through the same `connection` event, so they are bounded too.
   */
  private boundHandshakes(server: tls.Server | https.Server, broker: Broker, listener: ListenerRuntime): void {
    const pending = this.pending;
    const max = this.maxPendingHandshakes;
    let full = false;
    server.on('connection', (socket: net.Socket) => {
      if (socket.remoteAddress !== undefined)
        connectedPeers.set(socket, { address: socket.remoteAddress, port: socket.remotePort ?? 0 });
      if (pending.size >= max) {
        if (!full) {
          full = true;
          broker.log.warn(
            { listener: listener.name, limit: max },
            'too many pending TLS handshakes: closing new connections',
          );
        }
        this.closedAtBound.add(socket);
        socket.destroy();
        return;
      }
      pending.add(socket);
      socket.once('close', () => {
        pending.delete(socket);
        if (pending.size < max) full = false;
      });
    });
    server.on('secureConnection', (socket: TLSSocket) => {
      const parent = (socket as unknown as { _parent?: net.Socket })._parent;
      if (parent) pending.delete(parent);
      if (pending.size < max) full = false;
    });
  }

  private watchHandshakeErrors(server: tls.Server | https.Server, broker: Broker, listener: ListenerRuntime): void {
    server.on('tlsClientError', (error: Error & { code?: string }, socket: TLSSocket) => {
      const peer = peerOfTls(socket);
      // Unlike https, a tls.Server with a tlsClientError listener leaves the socket open: a timed-out or failed
      // handshake would keep its file descriptor until the client left.
      socket.destroy();
      const parent = (socket as unknown as { _parent?: net.Socket })._parent;
      if (parent !== undefined && this.closedAtBound.has(parent)) {
        // Logged once per episode by the bound itself; bounded in the audit log like every refusal.
        broker.recordRefusal({
          event: {
            action: 'tls.handshake_refused',
            outcome: 'failure',
            reason: `closed before its handshake: ${this.maxPendingHandshakes} handshakes already in progress on this listener`,
            code: 'too_many_pending_handshakes',
          },
          client: { ip: peer.address, port: peer.port },
          mqtt: { listener: listener.name },
          tls: { error: 'too_many_pending_handshakes' },
        });
        return;
      }
      // Bounded (audit.refusals): failed handshakes cost a client nothing, and can come thousands a second.
      const recorded = broker.recordRefusal({
        event: {
          action: 'tls.handshake_refused',
          outcome: 'failure',
          reason: error.message.slice(0, 200),
          code: error.code ?? 'handshake_failed',
        },
        client: { ip: peer.address, port: peer.port },
        mqtt: { listener: listener.name },
        tls: { error: error.code ?? error.message.slice(0, 100) },
      });
      if (recorded)
        broker.log.info(
          { peer: `${peer.address}:${peer.port}`, listener: listener.name, code: error.code },
          'TLS handshake failed',
        );
    });
  }

  createTlsServer(broker: Broker, listener: ListenerRuntime): tls.Server {
    const server = tls.createServer(this.handshakeOptions(broker), (socket) => {
      const info = this.admit(socket, broker, listener);
      if (info) broker.accept(socket, listener, peerOfTls(socket), info);
    });
    this.attach(server, broker, listener);
    return server;
  }

  createWssServer(broker: Broker, listener: ListenerRuntime, path: string): https.Server {
    const httpsServer = https.createServer(this.handshakeOptions(broker));
    this.attach(httpsServer, broker, listener);
    // Refused right after the handshake, before any HTTP is read: a client without a certificate gets no HTTP
    // answer at all (not a 426 or an upgrade refused later), and a plain HTTPS GET is recorded like any other.
    if (this.settings.tls.require_certificate)
      httpsServer.on('secureConnection', (socket: TLSSocket) => void this.admit(socket, broker, listener));
    createWebSocketServer(
      broker,
      listener,
      { path, maxPayload: broker.limits.max_packet_size },
      httpsServer,
      (socket) => {
        const tlsSocket = socket as TLSSocket;
        return this.admit(tlsSocket, broker, listener);
      },
    );
    return httpsServer;
  }

  /** A handshake counts against the time the client has to send CONNECT, as it must finish first. */
  private handshakeOptions(broker: Broker): tls.TlsOptions {
    return { ...this.manager.serverOptions(), handshakeTimeout: broker.limits.connect_timeout_ms };
  }

  private attach(server: tls.Server | https.Server, broker: Broker, listener: ListenerRuntime): void {
    this.manager.attach(server as tls.Server);
    this.stapler?.attach(server as tls.Server);
    this.boundHandshakes(server, broker, listener);
    this.watchHandshakeErrors(server, broker, listener);
  }

  async close(): Promise<void> {
    this.manager.close();
    this.stapler?.close();
    await this.psk?.store.stop();
  }
}
