import net from 'node:net';
import type { Broker } from '../broker.js';
import type { ListenerRuntime } from '../listener.js';
import { proxyReportedTls } from '../../authn/types.js';
import { parseCidrList, readProxyHeader, verifiedSslCommonName, type ProxyProtocolSettings } from './proxy-protocol.js';
import { proxiedPeers } from './secure-listener.js';

/**
 * A listener behind a load balancer: the PROXY header is read (from trusted proxies only, strictly, with a
 * timeout) before anything else, and the real client address is what authentication, policies, bans and the
 * audit log see. `inner` is the TLS server for `tls` listeners; plain TCP sockets go straight to the broker.
 */
export function createProxiedServer(
  broker: Broker,
  listener: ListenerRuntime,
  settings: ProxyProtocolSettings,
  inner: net.Server | undefined,
): net.Server {
  const parsed = parseCidrList(settings.trusted_proxies);
  if (!parsed.ok)
    throw new Error(`listener ${listener.name}: proxy_protocol.trusted_proxies: ${parsed.errors.join('; ')}`);
  const trusted = parsed.matcher;
  return net.createServer({ noDelay: true }, (socket) => {
    socket.on('error', () => undefined);
    void readProxyHeader(socket, {
      trusted,
      timeoutMs: settings.timeout_ms,
      maxV2Length: settings.max_v2_length,
      versions: settings.versions,
    }).then((result) => {
      if (result.kind === 'rejected') {
        // Bounded (audit.refusals): any address can open a connection without a valid header, in a loop.
        const recorded = broker.recordRefusal({
          event: { action: 'proxy.header_refused', outcome: 'failure', reason: result.detail, code: result.reason },
          client: { ip: result.proxy.address, port: result.proxy.port },
          mqtt: { listener: listener.name },
        });
        if (recorded)
          broker.log.info(
            {
              proxy: `${result.proxy.address}:${result.proxy.port}`,
              listener: listener.name,
              reason: result.reason,
              detail: result.detail,
            },
            'PROXY header refused',
          );
        socket.destroy();
        return;
      }
      const client = { address: result.client.address, port: result.client.port };
      if (inner) {
        proxiedPeers.set(socket, client);
        inner.emit('connection', socket);
        return;
      }
      // use_ssl_tlv_cn (tcp listeners only): the certificate the proxy verified is the client's only TLS fact.
      const cn = settings.use_ssl_tlv_cn ? verifiedSslCommonName(result.header) : undefined;
      socket.resume();
      broker.accept(socket, listener, client, cn === undefined ? undefined : proxyReportedTls(cn));
    });
  });
}
