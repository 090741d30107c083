import { readFileSync } from 'node:fs';
import { type AddressInfo, type Socket, connect as netConnect, createServer as netCreateServer } from 'node:net';
import { type TLSSocket, connect as tlsConnect, createServer as tlsCreateServer } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ProxyAcceptResult,
  ProxyHeaderReader,
  V2_SIGNATURE,
  crc32c,
  ipToBytes,
  parseCidrList,
  parseProxyHeader,
  readProxyHeader,
  verifiedSslCommonName,
} from '../../../src/transport/proxy-protocol.js';
import { type TestPki, mintTestPki } from '../../helpers/certs.js';

const MQTT_CONNECT = Buffer.from([0x10, 0x0c, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00]);

function tlv(type: number, value: Buffer): Buffer {
  const head = Buffer.alloc(3);
  head[0] = type;
  head.writeUInt16BE(value.length, 1);
  return Buffer.concat([head, value]);
}

/** Builds a v2 header by hand (spec §2.2); proxy-protocol-js is deliberately not a dependency. */
function v2(
  opts: { verCmd?: number; famProto?: number; address?: Buffer; tlvs?: Buffer[]; lengthOverride?: number } = {},
): Buffer {
  const address =
    opts.address ??
    Buffer.concat([
      Buffer.from([203, 0, 113, 7]),
      Buffer.from([10, 0, 0, 1]),
      Buffer.from([0xc3, 0x50]),
      Buffer.from([0x07, 0x5b]),
    ]);
  const body = Buffer.concat([address, ...(opts.tlvs ?? [])]);
  const fixed = Buffer.alloc(4);
  fixed[0] = opts.verCmd ?? 0x21;
  fixed[1] = opts.famProto ?? 0x11;
  fixed.writeUInt16BE(opts.lengthOverride ?? body.length, 2);
  return Buffer.concat([V2_SIGNATURE, fixed, body]);
}

function ipv6Address(src: string, dst: string, sport: number, dport: number): Buffer {
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(sport, 0);
  ports.writeUInt16BE(dport, 2);
  return Buffer.concat([Buffer.from(ipToBytes(src) as Uint8Array), Buffer.from(ipToBytes(dst) as Uint8Array), ports]);
}

describe('PROXY v1', () => {
  it.each([
    [
      'PROXY TCP4 203.0.113.7 10.0.0.1 50000 1883\r\n',
      'ipv4',
      { address: '203.0.113.7', port: 50000 },
      { address: '10.0.0.1', port: 1883 },
    ],
    [
      'PROXY TCP6 2001:db8::7 2001:db8::1 65535 8883\r\n',
      'ipv6',
      { address: '2001:db8::7', port: 65535 },
      { address: '2001:db8::1', port: 8883 },
    ],
    [
      'PROXY TCP6 ::ffff:192.0.2.1 ::1 0 1883\r\n',
      'ipv6',
      { address: '::ffff:192.0.2.1', port: 0 },
      { address: '::1', port: 1883 },
    ],
  ])('parses %j and returns the bytes after it', (line, family, source, destination) => {
    const result = parseProxyHeader(Buffer.concat([Buffer.from(line, 'latin1'), MQTT_CONNECT]));
    expect(result.kind).toBe('header');
    if (result.kind !== 'header') return;
    expect(result.header).toMatchObject({
      version: 1,
      command: 'proxy',
      family,
      source,
      destination,
      length: line.length,
    });
    expect(result.rest.equals(MQTT_CONNECT)).toBe(true);
  });

  it('accepts UNKNOWN and ignores whatever follows it on the line', () => {
    const result = parseProxyHeader(Buffer.from('PROXY UNKNOWN ffff:f...f:ffff 1.2.3.4 1 2\r\nX'));
    expect(result.kind === 'header' && result.header).toMatchObject({ family: 'unknown', command: 'proxy' });
    expect(result.kind === 'header' && result.header.source).toBeUndefined();
  });

  it('accepts the longest legal header (107 bytes) and refuses one byte more', () => {
    const longest = `PROXY TCP6 ${'ffff:'.repeat(7)}ffff ${'ffff:'.repeat(7)}ffff 65535 65535\r\n`;
    expect(longest.length).toBe(104);
    const unknown107 = `PROXY UNKNOWN ${'x'.repeat(107 - 'PROXY UNKNOWN '.length - 2)}\r\n`;
    expect(unknown107.length).toBe(107);
    expect(parseProxyHeader(Buffer.from(longest)).kind).toBe('header');
    expect(parseProxyHeader(Buffer.from(unknown107)).kind).toBe('header');
    const tooLong = `PROXY UNKNOWN ${'x'.repeat(108 - 'PROXY UNKNOWN '.length - 2)}\r\n`;
    expect(parseProxyHeader(Buffer.from(tooLong))).toEqual({
      kind: 'invalid',
      reason: 'v1 header longer than 107 bytes',
    });
  });

  it.each([
    ['PROXY TCP4 999.1.1.1 10.0.0.1 1 2\r\n', 'v1 source address "999.1.1.1" is not a valid IPv4 address'],
    ['PROXY TCP4 1.2.3.4 10.0.0.256 1 2\r\n', 'v1 destination address "10.0.0.256" is not a valid IPv4 address'],
    ['PROXY TCP4 01.2.3.4 10.0.0.1 1 2\r\n', 'v1 source address "01.2.3.4" is not a valid IPv4 address'],
    ['PROXY TCP4 ::1 10.0.0.1 1 2\r\n', 'v1 source address "::1" is not a valid IPv4 address'],
    ['PROXY TCP6 1.2.3.4 ::1 1 2\r\n', 'v1 source address "1.2.3.4" is not a valid IPv6 address'],
    ['PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n', 'v1 source address "fe80::1%eth0" is not a valid IPv6 address'],
    ['PROXY TCP4 1.2.3.4 10.0.0.1 65536 2\r\n', 'v1 source port "65536" is not a port number'],
    ['PROXY TCP4 1.2.3.4 10.0.0.1 1 0883\r\n', 'v1 destination port "0883" is not a port number'],
    ['PROXY TCP4 1.2.3.4 10.0.0.1 -1 2\r\n', 'v1 source port "-1" is not a port number'],
    [
      'PROXY TCP4  1.2.3.4 10.0.0.1 1 2\r\n',
      'v1 header must have exactly four fields after the protocol, separated by single spaces',
    ],
    [
      'PROXY TCP4 1.2.3.4 10.0.0.1 1\r\n',
      'v1 header must have exactly four fields after the protocol, separated by single spaces',
    ],
    [
      'PROXY TCP4 1.2.3.4 10.0.0.1 1 2 3\r\n',
      'v1 header must have exactly four fields after the protocol, separated by single spaces',
    ],
    ['PROXY UDP4 1.2.3.4 10.0.0.1 1 2\r\n', 'v1 protocol "UDP4" is not TCP4, TCP6 or UNKNOWN'],
    ['PROXY tcp4 1.2.3.4 10.0.0.1 1 2\r\n', 'v1 protocol "tcp4" is not TCP4, TCP6 or UNKNOWN'],
    ['PROXY TCP4 1.2.3.4 10.0.0.1 1 2\n', 'v1 header contains a control or non-ASCII byte'],
    ['PROXY TCP4 1.2.3.4 10.0.0.1 1 2\rX', 'v1 header has a CR without LF'],
    ['PROXY TCP4 1.2.3.4\t10.0.0.1 1 2\r\n', 'v1 header contains a control or non-ASCII byte'],
    ['PROXY TCP4 1.2.3.4 10.0.0.1 1 2\u00e9\r\n', 'v1 header contains a control or non-ASCII byte'],
    ['proxy TCP4 1.2.3.4 10.0.0.1 1 2\r\n', 'not a PROXY protocol header'],
    ['GET / HTTP/1.1\r\n', 'not a PROXY protocol header'],
  ])('refuses %j: %s', (line, reason) => {
    expect(parseProxyHeader(Buffer.from(line, 'utf8'))).toEqual({ kind: 'invalid', reason });
  });

  it('waits for more bytes on a truncated header and refuses a line that never ends', () => {
    for (const partial of ['P', 'PROXY', 'PROXY TCP4 1.2.3.4 10.0.0.1 1 2', 'PROXY TCP4 1.2.3.4 10.0.0.1 1 2\r']) {
      expect(parseProxyHeader(Buffer.from(partial))).toEqual({ kind: 'incomplete' });
    }
    expect(parseProxyHeader(Buffer.from(`PROXY UNKNOWN ${'x'.repeat(200)}`)).kind).toBe('invalid');
  });

  it('refuses v1 when the listener accepts only v2', () => {
    expect(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n'), { versions: [2] })).toEqual({
      kind: 'invalid',
      reason: 'PROXY protocol v1 is not accepted on this listener',
    });
  });
});

describe('PROXY v2', () => {
  it('parses a TCP over IPv4 header and returns the bytes after it', () => {
    const result = parseProxyHeader(Buffer.concat([v2(), MQTT_CONNECT]));
    expect(result.kind === 'header' && result.header).toEqual({
      version: 2,
      command: 'proxy',
      family: 'ipv4',
      source: { address: '203.0.113.7', port: 50000 },
      destination: { address: '10.0.0.1', port: 1883 },
      tlvs: [],
      length: 28,
    });
    expect(result.kind === 'header' && result.rest.equals(MQTT_CONNECT)).toBe(true);
  });

  it('parses a TCP over IPv6 header with canonical addresses', () => {
    const result = parseProxyHeader(
      v2({ famProto: 0x21, address: ipv6Address('2001:db8:0:0:1:0:0:7', '::1', 4242, 8883) }),
    );
    expect(result.kind === 'header' && result.header).toMatchObject({
      family: 'ipv6',
      source: { address: '2001:db8::1:0:0:7', port: 4242 },
      destination: { address: '::1', port: 8883 },
    });
  });

  it('parses ALPN, AUTHORITY, UNIQUE_ID and the SSL TLV with the client certificate CN', () => {
    const ssl = Buffer.concat([
      Buffer.from([0x07, 0, 0, 0, 0]),
      tlv(0x21, Buffer.from('TLSv1.3')),
      tlv(0x22, Buffer.from('sensor-1')),
      tlv(0x23, Buffer.from('TLS_AES_128_GCM_SHA256')),
    ]);
    const header = v2({
      tlvs: [
        tlv(0x01, Buffer.from('mqtt')),
        tlv(0x02, Buffer.from('broker.example')),
        tlv(0x05, Buffer.from('abc')),
        tlv(0x04, Buffer.alloc(3)),
        tlv(0x20, ssl),
        tlv(0xe0, Buffer.from('custom')),
      ],
    });
    const result = parseProxyHeader(header);
    expect(result.kind).toBe('header');
    if (result.kind !== 'header') return;
    expect(result.header.alpn).toBe('mqtt');
    expect(result.header.authority).toBe('broker.example');
    expect(result.header.uniqueId?.toString()).toBe('abc');
    expect(result.header.ssl).toEqual({
      ssl: true,
      certificatePresented: true,
      verified: true,
      version: 'TLSv1.3',
      cn: 'sensor-1',
      cipher: 'TLS_AES_128_GCM_SHA256',
    });
    expect(result.header.tlvs.map((t) => t.type)).toEqual([0x01, 0x02, 0x05, 0x04, 0x20, 0xe0]);
  });

  it('reports an unverified client certificate in the SSL TLV', () => {
    const ssl = Buffer.concat([Buffer.from([0x05, 0, 0, 0, 1]), tlv(0x22, Buffer.from('mallory'))]);
    const result = parseProxyHeader(v2({ tlvs: [tlv(0x20, ssl)] }));
    expect(result.kind === 'header' && result.header.ssl).toMatchObject({ verified: false, cn: 'mallory' });
    expect(result.kind === 'header' && verifiedSslCommonName(result.header)).toBeUndefined();
    const verified = parseProxyHeader(
      v2({ tlvs: [tlv(0x20, Buffer.concat([Buffer.from([0x05, 0, 0, 0, 0]), tlv(0x22, Buffer.from('alice'))]))] }),
    );
    expect(verified.kind === 'header' && verifiedSslCommonName(verified.header)).toBe('alice');
  });

  it('gives no certificate CN from a LOCAL header (a health check from the proxy itself): its TLVs are dropped', () => {
    const ssl = tlv(0x20, Buffer.concat([Buffer.from([0x05, 0, 0, 0, 0]), tlv(0x22, Buffer.from('alice'))]));
    const local = parseProxyHeader(v2({ verCmd: 0x20, tlvs: [ssl] }));
    expect(local.kind === 'header' && local.header.command).toBe('local');
    expect(local.kind === 'header' && verifiedSslCommonName(local.header)).toBeUndefined();
  });

  it('checks a CRC32C TLV and refuses a header whose checksum does not match', () => {
    const withCrc = v2({ tlvs: [tlv(0x03, Buffer.alloc(4))] });
    withCrc.writeUInt32BE(crc32c(withCrc), withCrc.length - 4);
    expect(parseProxyHeader(withCrc).kind).toBe('header');
    withCrc[18] = (withCrc[18] as number) ^ 1;
    expect(parseProxyHeader(withCrc)).toEqual({ kind: 'invalid', reason: 'v2 header CRC32C checksum does not match' });
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
  });

  it('accepts LOCAL (proxy health checks) and discards its address block', () => {
    const result = parseProxyHeader(v2({ verCmd: 0x20, famProto: 0x00, address: Buffer.alloc(0) }));
    expect(result.kind === 'header' && result.header).toMatchObject({
      command: 'local',
      family: 'unknown',
      length: 16,
    });
  });

  it('accepts AF_UNSPEC and AF_UNIX without addresses', () => {
    expect(parseProxyHeader(v2({ famProto: 0x00, address: Buffer.alloc(0) })).kind).toBe('header');
    const unix = parseProxyHeader(v2({ famProto: 0x31, address: Buffer.alloc(216) }));
    expect(unix.kind === 'header' && unix.header.family).toBe('unknown');
  });

  it.each([
    ['version 1 in a v2 signature', v2({ verCmd: 0x11 }), 'unsupported PROXY protocol version 1 in a v2 signature'],
    ['version 3', v2({ verCmd: 0x31 }), 'unsupported PROXY protocol version 3 in a v2 signature'],
    ['an unknown command', v2({ verCmd: 0x22 }), 'unknown v2 command 0x2'],
    ['an unknown family', v2({ famProto: 0x41 }), 'unknown v2 address family 0x4'],
    ['an unknown transport', v2({ famProto: 0x13 }), 'unknown v2 transport protocol 0x3'],
    ['UDP', v2({ famProto: 0x12 }), 'v2 header announces a datagram (UDP) connection on a stream listener'],
    [
      'an IP family with unspecified transport',
      v2({ famProto: 0x10 }),
      'v2 header announces an unspecified transport for an IP connection',
    ],
    [
      'a length shorter than the IPv4 block',
      v2({ address: Buffer.alloc(8) }),
      'v2 header length 8 is shorter than the 12-byte address block',
    ],
    [
      'a length shorter than the IPv6 block',
      v2({ famProto: 0x21, address: Buffer.alloc(12) }),
      'v2 header length 12 is shorter than the 36-byte address block',
    ],
    ['a length above the limit', v2({ lengthOverride: 2049 }), 'v2 header length 2049 exceeds the limit of 2048 bytes'],
    ['a truncated TLV header', v2({ tlvs: [Buffer.from([0x01, 0x00])] }), 'truncated v2 TLV header'],
    [
      'a TLV running past the header',
      v2({ tlvs: [Buffer.from([0x01, 0x00, 0x09, 0x41])] }),
      'v2 TLV 0x01 runs past the header',
    ],
    ['a short SSL TLV', v2({ tlvs: [tlv(0x20, Buffer.from([1, 0]))] }), 'SSL TLV shorter than its 5-byte fixed part'],
    [
      'a truncated SSL sub-TLV',
      v2({ tlvs: [tlv(0x20, Buffer.concat([Buffer.from([1, 0, 0, 0, 0]), Buffer.from([0x22, 0x00, 0x05, 0x41])]))] }),
      'SSL sub- TLV 0x22 runs past the header',
    ],
    [
      'a CN that is not UTF-8',
      v2({ tlvs: [tlv(0x20, Buffer.concat([Buffer.from([1, 0, 0, 0, 0]), tlv(0x22, Buffer.from([0xff, 0xfe]))]))] }),
      'SSL cn TLV is not valid UTF-8',
    ],
    [
      'a CN holding U+0000 (read as a shorter name by C string code)',
      v2({ tlvs: [tlv(0x20, Buffer.concat([Buffer.from([5, 0, 0, 0, 0]), tlv(0x22, Buffer.from('ali\u0000ce'))]))] }),
      'SSL cn TLV contains a control character',
    ],
    [
      'two SSL TLVs (an unverified one, then a verified one)',
      v2({
        tlvs: [
          tlv(0x20, Buffer.concat([Buffer.from([5, 0, 0, 0, 1]), tlv(0x22, Buffer.from('alice1'))])),
          tlv(0x20, Buffer.concat([Buffer.from([5, 0, 0, 0, 0]), tlv(0x22, Buffer.from('alice2'))])),
        ],
      }),
      'v2 TLV 0x20 appears more than once',
    ],
    [
      'two CNs in one SSL TLV',
      v2({
        tlvs: [
          tlv(
            0x20,
            Buffer.concat([
              Buffer.from([5, 0, 0, 0, 0]),
              tlv(0x22, Buffer.from('alice4')),
              tlv(0x22, Buffer.from('root')),
            ]),
          ),
        ],
      }),
      'SSL sub- TLV 0x22 appears more than once',
    ],
    ['a UNIQUE_ID over 128 bytes', v2({ tlvs: [tlv(0x05, Buffer.alloc(129))] }), 'UNIQUE_ID TLV longer than 128 bytes'],
    ['a CRC32C TLV of the wrong size', v2({ tlvs: [tlv(0x03, Buffer.alloc(2))] }), 'CRC32C TLV must be 4 bytes'],
    [
      'a damaged signature',
      Buffer.concat([
        Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0b]),
        Buffer.alloc(16),
      ]),
      'not a PROXY protocol header',
    ],
  ])('refuses %s', (_name, header, reason) => {
    expect(parseProxyHeader(header)).toEqual({ kind: 'invalid', reason });
  });

  it('honours a configured length bound', () => {
    expect(parseProxyHeader(v2({ tlvs: [tlv(0x04, Buffer.alloc(300))] }), { maxV2Length: 216 }).kind).toBe('invalid');
  });

  it('reports a header truncated at every byte as incomplete, never as parsed', () => {
    const full = v2({ tlvs: [tlv(0x01, Buffer.from('mqtt'))] });
    for (let n = 1; n < full.length; n++) expect(parseProxyHeader(full.subarray(0, n))).toEqual({ kind: 'incomplete' });
  });

  it('parses a header fed one byte at a time through the streaming reader', () => {
    const input = Buffer.concat([
      v2({ famProto: 0x21, address: ipv6Address('2001:db8::7', '::1', 1, 2) }),
      MQTT_CONNECT,
    ]);
    const reader = new ProxyHeaderReader();
    let result = reader.push(input.subarray(0, 1));
    let i = 1;
    while (result.kind === 'incomplete' && i < input.length) result = reader.push(input.subarray(i, ++i));
    expect(result.kind === 'header' && result.header.source).toEqual({ address: '2001:db8::7', port: 1 });
    expect(i).toBe(52);
  });
});

describe('trusted proxy CIDRs', () => {
  const list = parseCidrList(['10.0.0.0/8', '192.0.2.7', '2001:db8::/32', '::ffff:198.51.100.0/120', 'fe80::/10']);
  const matcher = list.ok ? list.matcher : undefined;

  it.each([
    ['10.1.2.3', true],
    ['11.0.0.1', false],
    ['192.0.2.7', true],
    ['192.0.2.8', false],
    ['::ffff:10.9.9.9', true],
    ['::ffff:11.0.0.1', false],
    ['198.51.100.42', true],
    ['2001:db8:1::1', true],
    ['2001:db9::1', false],
    ['fe80::1%eth0', true],
    ['::1', false],
    ['not-an-ip', false],
    ['999.1.1.1', false],
  ])('%s is trusted: %s', (address, expected) => {
    expect(matcher?.matches(address)).toBe(expected);
  });

  it('refuses malformed entries and CIDRs with host bits set', () => {
    expect(parseCidrList(['10.0.0.1/8', '10.0.0.0/33', '999.0.0.0/8', '10.0.0.0/08', '1.2.3.4/8/1', '::/129'])).toEqual(
      {
        ok: false,
        errors: [
          '"10.0.0.1/8" has host bits set; the network is 10.0.0.0/8',
          '"10.0.0.0/33" has a prefix length outside 0..32',
          '"999.0.0.0/8" is not an IP address or CIDR',
          '"10.0.0.0/08" has an invalid prefix length',
          '"1.2.3.4/8/1" is not an IP address or CIDR',
          '"::/129" has a prefix length outside 0..128',
        ],
      },
    );
  });
});

describe('readProxyHeader on real sockets', () => {
  let pki: TestPki;
  beforeAll(async () => {
    pki = await mintTestPki();
  });
  afterAll(() => pki.cleanup());

  /** A raw TCP listener that reads the header with the given trust list and reports the result. */
  async function listen(
    host: string,
    trusted: string[],
    timeoutMs = 2_000,
    onAccepted?: (socket: Socket, result: ProxyAcceptResult) => void,
  ) {
    const list = parseCidrList(trusted);
    if (!list.ok) throw new Error(list.errors.join());
    const results: Array<Promise<ProxyAcceptResult>> = [];
    const server = netCreateServer((socket) => {
      const result = readProxyHeader(socket, { trusted: list.matcher, timeoutMs });
      results.push(result);
      void result.then((r) => {
        if (r.kind === 'rejected') socket.destroy();
        else onAccepted?.(socket, r);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, host, resolve));
    const port = (server.address() as AddressInfo).port;
    const next = async (): Promise<ProxyAcceptResult> => {
      while (results.length === 0) await new Promise((r) => setImmediate(r));
      return results.shift() as Promise<ProxyAcceptResult>;
    };
    return { port, next, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
  }

  function send(host: string, port: number, data: Buffer): Socket {
    const socket = netConnect({ host, port }, () => socket.write(data));
    socket.on('error', () => undefined);
    return socket;
  }

  it.each(['127.0.0.1', '::1'])(
    'accepts a v1 header from a trusted proxy on %s and hands back the MQTT bytes',
    async (host) => {
      const received: Buffer[] = [];
      const listener = await listen(host, ['127.0.0.0/8', '::1'], 2_000, (socket) => {
        socket.on('data', (d: Buffer) => received.push(d));
        socket.resume();
      });
      const client = send(
        host,
        listener.port,
        Buffer.concat([Buffer.from('PROXY TCP4 198.51.100.9 10.0.0.1 40000 1883\r\n'), MQTT_CONNECT]),
      );
      const result = await listener.next();
      expect(result).toMatchObject({
        kind: 'accepted',
        client: { address: '198.51.100.9', port: 40000 },
        proxy: { address: host },
      });
      while (Buffer.concat(received).length < MQTT_CONNECT.length) await new Promise((r) => setImmediate(r));
      expect(Buffer.concat(received).equals(MQTT_CONNECT)).toBe(true);
      client.destroy();
      await listener.close();
    },
  );

  it('refuses a connection from an address outside the trusted list before reading anything', async () => {
    const listener = await listen('127.0.0.1', ['10.0.0.0/8']);
    const client = send('127.0.0.1', listener.port, Buffer.from('PROXY TCP4 198.51.100.9 10.0.0.1 40000 1883\r\n'));
    expect(await listener.next()).toEqual({
      kind: 'rejected',
      reason: 'untrusted_proxy',
      detail: '127.0.0.1 is not a trusted proxy',
      proxy: expect.objectContaining({ address: '127.0.0.1' }),
    });
    client.destroy();
    await listener.close();
  });

  it('refuses a malformed header and a header that never completes', async () => {
    const listener = await listen('127.0.0.1', ['127.0.0.1'], 150);
    const bad = send('127.0.0.1', listener.port, Buffer.from('PROXY TCP4 999.1.1.1 10.0.0.1 1 2\r\n'));
    expect(await listener.next()).toMatchObject({
      kind: 'rejected',
      reason: 'invalid_header',
      detail: 'v1 source address "999.1.1.1" is not a valid IPv4 address',
    });
    const slow = send('127.0.0.1', listener.port, Buffer.from('PROXY TCP4 1.2.3.4'));
    expect(await listener.next()).toMatchObject({
      kind: 'rejected',
      reason: 'timeout',
      detail: 'no complete PROXY header within 150 ms',
    });
    bad.destroy();
    slow.destroy();
    await listener.close();
  });

  it('serves TLS after a v2 header sent in the same packet as the ClientHello', async () => {
    const tlsServer = tlsCreateServer({
      cert: readFileSync(pki.server.certFile),
      key: readFileSync(pki.server.keyFile),
    });
    const served: string[] = [];
    tlsServer.on('secureConnection', (s: TLSSocket) => {
      s.on('data', (d: Buffer) => {
        served.push(d.toString());
        s.end('pong');
      });
    });
    const listener = await listen('::1', ['::1/128'], 2_000, (socket) => tlsServer.emit('connection', socket));
    // A client whose first bytes on the wire are the PROXY v2 header, immediately followed by TLS.
    const raw = netConnect({ host: '::1', port: listener.port });
    raw.write(v2({ famProto: 0x21, address: ipv6Address('2001:db8::42', '::1', 5555, 8883) }));
    const tls = tlsConnect({ socket: raw, servername: 'localhost', ca: readFileSync(pki.caFile) });
    const reply = await new Promise<string>((resolve, reject) => {
      tls.once('secureConnect', () => tls.write('ping'));
      tls.on('data', (d: Buffer) => resolve(d.toString()));
      tls.once('error', reject);
    });
    expect(reply).toBe('pong');
    expect(served).toEqual(['ping']);
    expect(await listener.next()).toMatchObject({ kind: 'accepted', client: { address: '2001:db8::42', port: 5555 } });
    tls.destroy();
    await listener.close();
    await new Promise<void>((resolve) => tlsServer.close(() => resolve()));
  });
});
