import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Registry } from 'prom-client';
import type { Secret } from '../../authn/secret.js';
import { BulwarkError } from '../errors.js';
import type { Logger } from '../log.js';
import { peerOf } from '../transport/tcp.js';
import { bearerMatches } from './bearer-token.js';

/**
 * Scrapers are one or two Prometheus servers: a handful of sockets is plenty, and a flood cannot pile up. A socket
 * beyond the cap closes the oldest one that is not being answered, not itself: otherwise whoever keeps this many
 * idle sockets open (no token needed to connect) would leave every scrape refused.
 */
export const MAX_CONNECTIONS = 8;
/** A scrape takes milliseconds; a client that has not sent its headers (or read its answer) by then is dropped. */
export const HEADERS_TIMEOUT_MS = 5_000;
export const REQUEST_TIMEOUT_MS = 10_000;
/** Request line and headers together; a bearer token of the longest accepted size still fits. */
export const MAX_HEADER_BYTES = 8_192;

export interface MetricsEndpointOptions {
  host: string;
  port: number;
  path: string;
  /** When set, every scrape must send `Authorization: Bearer <token>`. */
  token: Secret | undefined;
  registry: Registry;
  log: Logger;
  /**
   * A scrape refused for its bearer token: `missing_token` (no `Authorization: Bearer` header) or `wrong_token`.
   * Called before the answer is sent; must not throw. The header's value is never passed.
   */
  onRefused?: (peer: { address: string; port: number }, code: MetricsRefusal) => void;
}

export type MetricsRefusal = 'missing_token' | 'wrong_token';

/**
 * The HTTP endpoint Prometheus scrapes: `GET`/`HEAD` on one path, one request per connection, the request body
 * never read, a small cap on sockets and short timeouts, so a slow or hostile client cannot hold it.
 */
export class MetricsEndpoint {
  private constructor(
    private readonly server: Server,
    readonly address: { host: string; port: number },
  ) {}

  static async start(options: MetricsEndpointOptions): Promise<MetricsEndpoint> {
    const server = createServer(
      {
        maxHeaderSize: MAX_HEADER_BYTES,
        headersTimeout: HEADERS_TIMEOUT_MS,
        requestTimeout: REQUEST_TIMEOUT_MS,
        // How often Node enforces the two timeouts above (30 s by default would let a slow client stay that long).
        connectionsCheckingInterval: 1_000,
      },
      (request, response) => handle(options, request, response),
    );
    capConnections(server);
    server.maxRequestsPerSocket = 1;
    // Without a 'timeout' listener an idle socket is destroyed: one that connects and never sends is let go.
    server.setTimeout(REQUEST_TIMEOUT_MS);
    const address = await new Promise<{ host: string; port: number }>((resolve, reject) => {
      server.once('error', (error: NodeJS.ErrnoException) => reject(listenError(error, options)));
      server.listen({ host: options.host, port: options.port }, () => {
        const bound = server.address();
        resolve(
          bound !== null && typeof bound === 'object'
            ? { host: bound.address, port: bound.port }
            : { host: options.host, port: options.port },
        );
      });
    });
    server.on('error', (error) => options.log.error({ err: error }, 'metrics endpoint error'));
    options.log.info(
      { host: address.host, port: address.port, path: options.path, auth: options.token ? 'bearer' : 'none' },
      'metrics endpoint listening',
    );
    return new MetricsEndpoint(server, address);
  }

  /** Stops listening and drops open sockets: a scrape in progress during shutdown is not waited for. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

/**
 * Holds at most MAX_CONNECTIONS sockets. Node's own `maxConnections` refuses the newest, which hands the endpoint
 * to the first to fill it; here the newest stays and the oldest idle socket (connected but with no answer being
 * written: silent, trickling its headers, or done and not closing) makes room. A scraper sends its request as it
 * connects, so to push it out an attacker has to open the whole cap's worth in that instant, every scrape.
 */
function capConnections(server: Server): void {
  const open = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    if (open.size <= MAX_CONNECTIONS) return;
    // Set order is connection order: the first idle one found is the oldest.
    for (const other of open) {
      if (other !== socket && !answering.has(other)) {
        other.destroy();
        return;
      }
    }
    // Every other socket is being answered: those finish in milliseconds, this one is refused.
    socket.destroy();
  });
}

/** Sockets whose request is being answered, so never closed to make room. */
const answering = new WeakSet<Socket>();

function listenError(error: NodeJS.ErrnoException, options: MetricsEndpointOptions): Error {
  const where = `${options.host}:${options.port}`;
  if (error.code === 'EADDRINUSE')
    return new BulwarkError(
      'BULWARK_ERR_LISTEN',
      `metrics.port: ${where} is already in use`,
      undefined,
      'choose another metrics.port, or stop what listens there',
    );
  return new BulwarkError(
    'BULWARK_ERR_LISTEN',
    `metrics endpoint cannot listen on ${where} (metrics.host, metrics.port): ${error.code ?? error.message}`,
  );
}

function handle(options: MetricsEndpointOptions, request: IncomingMessage, response: ServerResponse): void {
  const socket = request.socket;
  answering.add(socket);
  response.once('close', () => answering.delete(socket));
  response.setHeader('Connection', 'close');
  response.setHeader('Cache-Control', 'no-store');
  const url = request.url ?? '';
  const query = url.indexOf('?');
  if ((query === -1 ? url : url.slice(0, query)) !== options.path) return plain(response, 404, 'not found');
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    response.setHeader('Allow', 'GET, HEAD');
    return plain(response, 405, 'method not allowed');
  }
  // The header's value is never logged: it is the credential, or a guess at it.
  const authorization = request.headers.authorization;
  if (options.token && !bearerMatches(authorization, options.token)) {
    const code = authorization !== undefined && /^Bearer\s/i.test(authorization) ? 'wrong_token' : 'missing_token';
    options.onRefused?.(peerOf(socket), code);
    response.setHeader('WWW-Authenticate', 'Bearer realm="bulwark"');
    return plain(response, 401, 'unauthorized');
  }
  options.registry.metrics().then(
    (body) => {
      response.writeHead(200, {
        'Content-Type': options.registry.contentType,
        'Content-Length': Buffer.byteLength(body),
      });
      response.end(request.method === 'HEAD' ? undefined : body);
    },
    (error: unknown) => {
      options.log.error({ err: error }, 'collecting metrics failed');
      plain(response, 500, 'collecting metrics failed');
    },
  );
}

function plain(response: ServerResponse, status: number, text: string): void {
  const body = `${text}\n`;
  response.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
  });
  response.end(body);
}
