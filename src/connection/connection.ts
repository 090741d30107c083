import { Buffer } from 'node:buffer';
import { nextTick } from 'node:process';
import type { Socket } from 'node:net';
import mqtt, { type IPublishPacket, type Packet } from 'mqtt-packet';
import type { ChainExchangeState, ConnectAttempt, Identity, TlsPeerInfo } from '../../authn/types.js';
import type { Broker } from '../broker.js';
import type { ByteStream } from './byte-stream.js';
import type { ListenerRuntime } from '../listener.js';
import { ReasonCode, type ReasonName } from '../protocol/reason-codes.js';
import { remainingExpirySeconds } from '../routing/message.js';
import type { Outbound, SessionLink } from '../session/outbound.js';
import type { Session } from '../session/session.js';
import { Framer, frameEnd, isFrameProblem, type FrameProblem } from './framer.js';
import { PACKET_NAMES, parseFrames, shortAckPacket, type PacketSink } from './codec.js';
import { encodeAck, encodeShortPacket } from '../protocol/encode-short-packet.js';
import { encodePublishWithoutProperties } from '../protocol/encode-publish.js';
import { connectTimeoutEvent, malformedConnectEvent } from '../connection-events.js';
import { setTimeoutAt } from '../timeout-at.js';
import { dispatchPacket } from '../handlers/index.js';
import { completeOrRefuse } from '../handlers/acknowledgements.js';
import { expireReauthentication } from '../handlers/auth.js';
import type { ConnectContext } from '../handlers/connect.js';

export type ConnectionState = 'awaiting-connect' | 'authenticating' | 'connected' | 'closed';

/** How long a closing connection may wait for the peer to read our last bytes and close its side. */
export const CLOSE_GRACE_MS = 2_000;

/** Packets held while CONNECT is being authenticated or an asynchronous check runs ([MQTT-3.1.4-7]). */
const MAX_BACKLOG_PACKETS = 1000;

// mqtt-packet's first encode builds a table of 65,536 two-byte buffers for packet ids (about 6 MiB of heap for
// the process's lifetime). The hot packets (PUBLISH, acknowledgements) are encoded by hand, so the rare ones
// mqtt-packet still writes can allocate their two bytes instead.
mqtt.writeToStream.cacheNumbers = false;

/** Up to this many bytes queued in one flush are copied into one buffer; more are written under cork instead. */
const COALESCE_LIMIT_BYTES = 256 * 1024;

/**
 * Connections with bytes queued and not yet written. Most writes answer a read (acknowledgements, the deliveries it
 * routed, a CONNACK): those go out together when the read's handler returns. Writes from anywhere else (timers,
 * an asynchronous authentication's answer) are flushed by one `nextTick`. A tick per read cost a tick object and
 * the tick queue's round trip, and emptying the array with `length = 0` gave up its backing store, which the next
 * read allocated again: together a fifth of what a QoS 1 message allocated at a steady low rate (2.97 KB -> 2.33).
 * Connections are flushed in the order they were queued, so a publisher's acknowledgement follows the deliveries its
 * PUBLISH routed (flushed first, the acknowledgements delayed every delivery by a write: p50 latency +10%).
 */
const toFlush: (Connection | undefined)[] = [];
let flushCount = 0;
/** A read is being handled (`onSocketData`): what it queues is flushed when it returns, without a tick. */
let handlingRead = false;

/** Set while `flushQueued` runs. */
let flushing = false;

function flushQueued(): void {
  // A write that hands its bytes to an in-process stream (a test's, or a bridge's) can make that stream deliver a
  // read at once, whose end calls this again: the loop below already covers what that read queued, and a nested
  // loop would reset the count under it.
  if (flushing) return;
  flushing = true;
  try {
    // A connection queued while this runs (a flush that leads to another write) is appended and flushed here too.
    for (let i = 0; i < flushCount; i++) {
      const connection = toFlush[i];
      toFlush[i] = undefined;
      if (connection === undefined) continue;
      // One connection's failed write must not keep the others' output queued, nor leave the count behind.
      try {
        connection.flush();
      } catch (error) {
        connection.writeFailed(error);
      }
    }
    flushCount = 0;
  } finally {
    flushing = false;
  }
}

function queueFlush(connection: Connection): void {
  toFlush[flushCount++] = connection;
  if (flushCount === 1 && !handlingRead) nextTick(flushQueued);
}

let connectionCounter = 0;

/** `Connection.lastReceived` while a packet has come since the last keep-alive check. */
const PACKET_SINCE_CHECK = -1;

/**
 * Socket events go to three functions shared by every connection, which find their connection on the socket:
 * three closures per connection cost ~200 bytes each idle connection would carry for its lifetime.
 */
const OWNER = Symbol('bulwark.connection');
type OwnedSocket = ByteStream & { [OWNER]: Connection };

function onSocketData(this: ByteStream, chunk: Buffer): void {
  const connection = (this as OwnedSocket)[OWNER];
  if (handlingRead) {
    connection.onData(chunk);
    return;
  }
  handlingRead = true;
  try {
    connection.onData(chunk);
  } finally {
    handlingRead = false;
    if (flushCount > 0) flushQueued();
  }
}

function onSocketError(this: ByteStream, error: Error): void {
  const connection = (this as OwnedSocket)[OWNER];
  connection.closeReason ??= `socket error: ${error.message}`;
}

function onSocketClose(this: ByteStream): void {
  (this as OwnedSocket)[OWNER].onSocketClosed();
}

/**
 * One network connection: owns the framer and codec, the protocol state, keep alive and the output buffer.
 * Packet semantics live in `handlers/`; session state lives in `Session`, which outlives the connection.
 */
export class Connection implements SessionLink, PacketSink {
  readonly id = ++connectionCounter;
  state: ConnectionState = 'awaiting-connect';
  protocolVersion: 3 | 4 | 5 = 4;
  clientId = '';
  username: string | undefined;
  identity: Identity | undefined;
  session: Session | undefined;
  /** The CONNECT as authenticated, kept for re-authentication and policy re-evaluation. */
  attempt: ConnectAttempt | undefined;
  exchange: ChainExchangeState | undefined;
  /** True between AUTH 0x19 and the end of that re-authentication exchange (see `startReauthentication`). */
  reauthenticating = false;
  /** The CONNECT waiting for an enhanced authentication exchange to finish. */
  pendingConnect: ConnectContext | undefined;
  keepalive = 0;
  /** Client's limits (MQTT 5 CONNECT properties). */
  clientReceiveMaximum = 65_535;
  clientMaximumPacketSize = 268_435_460;
  /** Whether a packet over `clientMaximumPacketSize` was already dropped and logged (`dropOversizePacket`). */
  private oversizeLogged = false;
  clientTopicAliasMaximum = 0;
  requestProblemInformation = true;
  /** Topic aliases, created on first use: most clients never use them. */
  inboundAliases: Map<number, string> | undefined;
  outboundAliases: Map<string, number> | undefined;
  /** QoS 1/2 PUBLISH received and not yet acknowledged: bounded by the broker's Receive Maximum. */
  inboundUnacknowledged = 0;
  /** Set by a clean DISCONNECT (0x00): the will is not published. */
  disconnectedCleanly = false;
  /** Counted in `$SYS/broker/clients/connected` (`Broker.onSessionOpened`), so taken off once when it closes. */
  countedAsConnected = false;
  /**
   * The CONNECT asked for a session expiry above 0 (the broker may have capped it to 0): a DISCONNECT may then set
   * one ([MQTT-3.14.2-2] refuses it only after a CONNECT that asked for 0).
   */
  connectAskedSessionExpiry = false;
  closeReason: string | undefined;
  readonly connectedAt = Date.now();

  private readonly framer: Framer;
  private backlog: Packet[] | undefined;
  private deferredAcks: { packet: Packet; seq: number }[] | undefined;
  private awaitingStore = false;
  private busy = false;
  /** The socket's reads are paused while `busy` holds packets back (see `stopReading`). */
  private readingStopped = false;
  /** Bytes written and not yet sent (see `writeBytes`): the first buffer, then all of them once two. */
  private pendingFirst: Buffer | undefined;
  private pendingAll: Buffer[] | undefined;
  private pendingBytes = 0;
  /** See `PacketSink.recentTopic`. */
  recentTopic: string | undefined = undefined;
  /**
   * When the last whole packet arrived, for keep alive; `PACKET_SINCE_CHECK` when one has arrived since the last
   * `checkTimers`, which then stamps it with its own clock. A clock read per read was 1% of the broker's CPU at a
   * steady QoS 1 rate (docs/performance.md, session 23); the stamp is late by at most the check interval.
   */
  private lastReceived = Date.now();
  /**
   * Epoch ms by which CONNECT must have been accepted, or a re-authentication the client started must have ended;
   * 0 when neither is pending. One field for both keeps `checkTimers` to one comparison per connection.
   */
  private authDeadline = 0;
  /** Silence after which the client is disconnected; 0 for keep alive 0. */
  private keepaliveLimitMs = 0;
  private expiryTimer: NodeJS.Timeout | undefined;
  /** Set once the connection is ending: destroys the socket if the peer has not closed within the grace. */
  private closeTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly broker: Broker,
    readonly socket: ByteStream,
    readonly listener: ListenerRuntime,
    readonly peer: { address: string; port: number },
    readonly tls: TlsPeerInfo | undefined,
  ) {
    const limits = broker.limits;
    this.framer = new Framer(limits.max_packet_size);
    (socket as Partial<Socket>).setNoDelay?.(true);
    (socket as OwnedSocket)[OWNER] = this;
    socket.on('data', onSocketData);
    socket.on('error', onSocketError);
    socket.on('close', onSocketClose);
    this.authDeadline = Date.now() + limits.connect_timeout_ms;
  }

  get peerLabel(): string {
    return `${this.peer.address}:${this.peer.port}`;
  }

  get sendQuota(): number {
    return Math.min(this.clientReceiveMaximum, this.broker.limits.max_inflight);
  }

  get isV5(): boolean {
    return this.protocolVersion === 5;
  }

  // --- input -------------------------------------------------------------------------------------------

  /** Called by `onSocketData`, which writes what the read queued once this returns. */
  onData(chunk: Buffer): void {
    this.broker.stats.bytesReceived += chunk.length;
    if (
      this.state === 'awaiting-connect' &&
      this.framer.bufferedBytes === 0 &&
      chunk.length > 0 &&
      chunk[0]! >> 4 !== 1
    ) {
      // [MQTT-3.1.0-1] decided on the first byte: no need to buffer what claims to be a long packet.
      this.rejectFirstPacket();
      return;
    }
    const result = this.framer.push(chunk);
    if (result === undefined) return;
    if (isFrameProblem(result)) {
      this.frameProblem(result, chunk);
      return;
    }
    // Keep alive counts Control Packets [MQTT-3.1.2-22], as Mosquitto does: bytes of one that never completes,
    // trickled in, must not hold a connection (and up to max_packet_size of buffer) open for ever.
    this.lastReceived = PACKET_SINCE_CHECK;
    let frames = result;
    if (this.state === 'awaiting-connect') {
      if (!this.checkFirstPacket(frames)) return;
      // CONNECT decides the protocol version the rest of the stream is parsed with.
      const connectLength = frameEnd(frames, 0);
      parseFrames(4, frames.subarray(0, connectLength), this);
      frames = frames.subarray(connectLength);
      if (frames.length === 0 || (this.state as ConnectionState) === 'closed') return;
    }
    parseFrames(this.protocolVersion, frames, this);
  }

  /** A packet over the size limit, or bytes that are not MQTT framing: the connection ends. */
  private frameProblem(result: FrameProblem, chunk: Buffer): void {
    if (result.kind === 'tooLarge') {
      if (this.state === 'awaiting-connect' && protocolLevelOf(chunk) === 5) {
        // An MQTT 5 client sending an oversize CONNECT is told why: CONNACK 0x95, then close (MQTT 5 section 3.2.2.2).
        this.closeReason = `CONNECT of ${result.size} bytes exceeds the maximum packet size`;
        if (this.recordMalformedConnect('packetTooLarge', this.closeReason, ReasonCode.packetTooLarge, 5))
          this.broker.log.info(
            { peer: this.peerLabel, size: result.size },
            'refusing connection: CONNECT exceeds the maximum packet size',
          );
        this.state = 'closed';
        this.flush();
        this.socket.end(
          mqtt.generate(
            { cmd: 'connack', reasonCode: ReasonCode.packetTooLarge, sessionPresent: false },
            { protocolVersion: 5 },
          ),
        );
        return;
      }
      this.protocolViolation(
        'packetTooLarge',
        `packet of ${result.size} bytes exceeds the maximum of ${this.broker.limits.max_packet_size}`,
      );
      return;
    }
    this.protocolViolation('malformedPacket', `malformed packet: ${result.why}`);
  }

  /** [MQTT-3.1.0-1] the first packet must be CONNECT; an unknown protocol level gets CONNACK 0x84 / rc 1. */
  private checkFirstPacket(frames: Buffer): boolean {
    if (frames[0]! >> 4 !== 1) {
      this.rejectFirstPacket();
      return false;
    }
    const level = protocolLevelOf(frames);
    // Known before the CONNECT is parsed, so that one found malformed can be answered in its own version.
    if (level === 5) this.protocolVersion = 5;
    if (level !== undefined) {
      if (level !== 3 && level !== 4 && level !== 5) {
        // [MQTT-3.1.2-2] respond with 0x84 (v5) / return code 1 (3.1.1), then close.
        const packet =
          level > 5
            ? mqtt.generate(
                { cmd: 'connack', reasonCode: ReasonCode.unsupportedProtocolVersion, sessionPresent: false },
                { protocolVersion: 5 },
              )
            : mqtt.generate({ cmd: 'connack', returnCode: 1, sessionPresent: false }, { protocolVersion: 4 });
        this.closeReason = `unsupported protocol level ${level}`;
        const sent = level > 5 ? ReasonCode.unsupportedProtocolVersion : 1;
        if (this.recordMalformedConnect('unsupportedProtocolVersion', this.closeReason, sent, undefined))
          // Not `level`: that key is the line's severity, which a client must not choose.
          this.broker.log.info(
            { peer: this.peerLabel, protocolLevel: level },
            'refusing connection: unsupported protocol level',
          );
        this.flush();
        this.socket.end(packet);
        this.state = 'closed';
        return false;
      }
    }
    return true;
  }

  private rejectFirstPacket(): void {
    this.closeReason = 'first packet is not CONNECT';
    // [MQTT-3.1.0-1]: a protocol error; nothing is sent, the connection is closed.
    if (this.recordMalformedConnect('protocolError', this.closeReason, undefined, undefined))
      this.broker.log.info({ peer: this.peerLabel }, 'closing connection: first packet is not CONNECT');
    this.destroy();
  }

  /**
   * The connection is its own packet sink: a separate object with two closures cost ~200 bytes per connection.
   * A malformed MQTT 5 CONNECT is answered with CONNACK 0x81 before the close (section 4.13.1 allows it, and the
   * client learns why); one of MQTT 3.1.1, which has no such code, is closed without CONNACK ([MQTT-1.5.3-1]).
   */
  onParseError(error: Error): void {
    const detail = `malformed packet: ${error.message}`;
    if (this.state === 'awaiting-connect' && this.protocolVersion === 5) this.refuseConnect('malformedPacket', detail);
    else this.protocolViolation('malformedPacket', detail);
  }

  /**
   * A packet that parses but breaks a protocol rule the codec checks (a duplicate property, Packet Identifier 0).
   * Before CONNACK it can only be the CONNECT itself, and only an MQTT 5 CONNECT has properties: it is answered
   * with CONNACK 0x82 (MQTT 5 section 4.13.2) rather than a bare close, as a refused CONNECT is.
   */
  onProtocolError(detail: string): void {
    if (this.state !== 'awaiting-connect') this.protocolViolation('protocolError', detail);
    else this.refuseConnect('protocolError', detail);
  }

  /** An MQTT 5 CONNECT the codec refused: CONNACK with the reason, then the connection closes. */
  private refuseConnect(reason: 'malformedPacket' | 'protocolError', detail: string): void {
    if (this.recordMalformedConnect(reason, detail, ReasonCode[reason], 5))
      this.broker.log.info({ peer: this.peerLabel, reason, detail }, 'closing connection: protocol violation');
    this.broker.stats.protocolErrors++;
    this.closeReason = detail;
    this.state = 'closed';
    this.writeBytes(
      mqtt.generate({ cmd: 'connack', reasonCode: ReasonCode[reason], sessionPresent: false }, { protocolVersion: 5 }),
    );
    this.endSocket();
  }

  /**
   * A success PUBACK by its packet id (`PacketSink.onPuback`): completed at once when nothing is held back, which is
   * what `dispatchPacket` would do with it; otherwise it takes the packet path, in order with what is held.
   */
  onPuback(messageId: number): void {
    if (this.state !== 'connected' || this.busy) {
      this.onPacket(shortAckPacket(this.protocolVersion, 4, 0x40, messageId));
      return;
    }
    try {
      completeOrRefuse(this, messageId, 'puback');
    } catch (error) {
      this.internalError(error);
    }
  }

  onPacket(packet: Packet): void {
    if (this.state === 'closed') return;
    // The codec needs the version to parse what follows CONNECT in the same chunk. Only the first CONNECT's: a second
    // one is a protocol violation, and may arrive while the first is still being answered (a session being resumed,
    // an authenticator that waits), whose CONNACK must be encoded in the version that CONNECT asked for.
    if (packet.cmd === 'connect' && this.state === 'awaiting-connect') {
      const version = packet.protocolVersion;
      if (version === 3 || version === 4 || version === 5) {
        this.protocolVersion = version;
      }
    }
    const heldForAuthentication =
      this.state === 'authenticating' && packet.cmd !== 'auth' && packet.cmd !== 'disconnect';
    if (heldForAuthentication && this.attempt?.authMethod !== undefined) {
      // Enhanced authentication waits on the client's AUTH packets; anything else it sends before CONNACK is a
      // protocol error, not something to hold (and buffer) until the exchange ends. Mosquitto refuses it too.
      this.protocolViolation(
        'protocolError',
        `${packet.cmd.toUpperCase()} before CONNACK after an authentication method [MQTT-3.1.2-30]`,
      );
      return;
    }
    if (this.busy || heldForAuthentication) {
      this.backlog ??= [];
      if (this.backlog.length >= MAX_BACKLOG_PACKETS) {
        this.protocolViolation(
          'receiveMaximumExceeded',
          'too many packets sent before the previous ones were processed',
        );
        return;
      }
      this.backlog.push(packet);
      this.stopReading();
      return;
    }
    this.run(packet);
  }

  /**
   * While an asynchronous step (an LDAP, SQL or JWKS authentication, a remote authorization source) holds packets
   * back, the socket is not read: what the client sends next waits in its own TCP window instead of the broker's
   * memory. Without this, a client could follow its CONNECT with up to `MAX_BACKLOG_PACKETS` packets of
   * `max_packet_size` each (1 GiB at the defaults) before it was even authenticated. What is held is at most
   * what the reads before the pause had already brought in. A connection refused while paused is not read again:
   * its close ends with `CLOSE_GRACE_MS` rather than the client's FIN, instead of reading what it sent meanwhile.
   */
  private stopReading(): void {
    if (this.readingStopped || !this.busy) return;
    this.readingStopped = true;
    this.socket.pause();
  }

  private run(packet: Packet): void {
    let pending: Promise<void> | void;
    try {
      pending = dispatchPacket(this, packet);
    } catch (error) {
      this.internalError(error);
      return;
    }
    if (pending) {
      // An asynchronous step (authentication, a remote authorization source): hold later packets so their
      // order is kept, then resume.
      this.busy = true;
      pending.then(
        () => this.resume(),
        (error: unknown) => this.internalError(error),
      );
    }
  }

  /** Processes packets held while an asynchronous step ran. */
  resume(): void {
    this.busy = false;
    while (!this.busy && this.backlog && this.backlog.length > 0 && this.state !== 'closed') {
      if (this.state === 'authenticating' && this.backlog[0]!.cmd !== 'auth' && this.backlog[0]!.cmd !== 'disconnect')
        return;
      const next = this.backlog.shift()!;
      this.run(next);
    }
    if (this.readingStopped && !this.busy && this.state !== 'closed') {
      this.readingStopped = false;
      this.lastReceived = Date.now();
      this.socket.resume();
    }
  }

  // --- lifecycle ---------------------------------------------------------------------------------------

  /** Called when CONNACK 0x00 has been sent. */
  onConnected(): void {
    this.state = 'connected';
    this.authDeadline = 0;
    this.framer.setMaxPacketSize(this.broker.limits.max_packet_size);
    // [MQTT-3.1.2-24] close after one and a half keep alive periods without a packet (checked by `checkTimers`).
    this.keepaliveLimitMs = this.keepalive * 1500;
    this.scheduleCredentialExpiry();
    // The password has done its work; a long-lived connection should not keep a secret in memory for its lifetime.
    if (this.attempt) this.attempt.password = undefined;
  }

  /**
   * Connect timeout (also bounding a re-authentication) and keep alive, checked for every connection by one
   * broker-wide timer rather than a timer per
   * connection (each costs memory on tens of thousands of idle connections).
   */
  checkTimers(now: number): void {
    if (this.state === 'closed') return;
    if (this.lastReceived === PACKET_SINCE_CHECK) this.lastReceived = now;
    if (this.authDeadline > 0 && now >= this.authDeadline) {
      if (this.state === 'connected') {
        expireReauthentication(this);
        return;
      }
      // Bounded like every refusal a client can repeat at no cost (`Broker.recordRefusal`): opening connections
      // that never finish CONNECT is the cheapest way to hold a broker's sockets.
      const exchanging = this.state === 'authenticating';
      this.closeReason = exchanging
        ? 'authentication not finished within the connect timeout'
        : 'no CONNECT within the connect timeout';
      const event = connectTimeoutEvent(
        this.peer,
        this.listener.name,
        exchanging ? { clientId: this.clientId } : undefined,
        this.closeReason,
      );
      if (this.broker.recordRefusal(event))
        this.broker.log.info(
          { peer: this.peerLabel, listener: this.listener.name },
          `closing connection: ${this.closeReason}`,
        );
      this.destroy();
      return;
    }
    // While its reads are paused the broker is the one not listening: a client is not silent for that.
    if (
      this.state === 'connected' &&
      !this.readingStopped &&
      this.keepaliveLimitMs > 0 &&
      now - this.lastReceived > this.keepaliveLimitMs
    ) {
      this.broker.log.info(
        { clientId: this.clientId, peer: this.peerLabel },
        'disconnecting client: keep alive timeout',
      );
      this.close('keepAliveTimeout', 'keep alive timeout');
    }
  }

  /**
   * AUTH 0x19: a re-authentication has the connect timeout to finish, as the CONNECT's exchange had (docs/scram.md);
   * a client that never answers the server-first message must not keep its connection and rights indefinitely. A
   * client restarting the exchange with another AUTH 0x19 does not restart the clock.
   */
  startReauthentication(): void {
    if (this.reauthenticating) return;
    this.reauthenticating = true;
    this.authDeadline = Date.now() + this.broker.limits.connect_timeout_ms;
  }

  /** The re-authentication ended, allowed or refused. */
  endReauthentication(): void {
    this.reauthenticating = false;
    this.authDeadline = 0;
  }

  /** A credential with an expiry (JWT `exp`) disconnects the client when it runs out, however far off. */
  scheduleCredentialExpiry(): void {
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    const expiresAt = this.identity?.expiresAt;
    if (expiresAt === undefined) return;
    setTimeoutAt(
      expiresAt,
      () => {
        this.broker.log.info({ clientId: this.clientId }, 'disconnecting client: credential expired');
        this.close('notAuthorized', 'credential expired');
      },
      (timer) => (this.expiryTimer = timer),
    );
  }

  /**
   * Ends the connection for a reason. MQTT 5 clients are told why with DISCONNECT ([MQTT-4.13.1]); 3.1.1 has no
   * server DISCONNECT, so the network connection is closed.
   */
  close(reason: ReasonName, detail: string): void {
    if (this.state === 'closed') return;
    this.closeReason ??= detail;
    if (this.isV5 && this.state === 'connected') {
      // Reason strings are always allowed on DISCONNECT, whatever Request Problem Information says.
      this.writePacket({ cmd: 'disconnect', reasonCode: ReasonCode[reason], properties: { reasonString: detail } });
    }
    this.state = 'closed';
    this.endSocket();
  }

  /**
   * Sends what was queued, then half-closes, and closes for good after `CLOSE_GRACE_MS`: the half-close waits
   * for the peer's FIN, and a client that never reads, or never closes its side after its own DISCONNECT, would
   * otherwise keep the socket, and the broker's record of its connection, open forever.
   */
  endSocket(): void {
    this.flush();
    this.socket.end();
    this.closeTimer ??= setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS).unref();
  }

  /**
   * After the client's own DISCONNECT the client has nothing more to say, so once what was queued is in the
   * kernel the socket is closed at once (as Mosquitto does) instead of half-closed and kept until the client's FIN;
   * the kernel still delivers those bytes before its own FIN. Streams that cannot tell take `endSocket`'s path.
   */
  endAfterClientDisconnect(): void {
    this.flush();
    if (this.socket.closeIfWritten?.() !== true) this.endSocket();
  }

  /** A protocol violation: v5 clients get DISCONNECT with the reason (when past CONNECT), then close. */
  protocolViolation(reason: ReasonName, detail: string): void {
    if (this.state === 'closed') return;
    this.recordViolation(reason, detail);
    if (this.state === 'connected') this.close(reason, detail);
    else {
      this.closeReason = detail;
      this.destroy();
    }
  }

  /**
   * The transport refused what the client sent and closes the connection itself (a WebSocket message over the size
   * limit, a text frame): recorded and logged as a protocol violation is, the first packet as a malformed CONNECT,
   * but with no DISCONNECT, which can no longer be sent once the transport is closing.
   */
  transportRefused(reason: ReasonName, detail: string): void {
    if (this.state === 'closed') return;
    this.closeReason = detail;
    this.recordViolation(reason, detail);
  }

  /** Logged and counted; before CONNECT, recorded as a malformed CONNECT (bounded, so the log line may be too). */
  private recordViolation(reason: ReasonName, detail: string): void {
    // Before CONNECT was decoded there is no attempt to record the refusal with: the packet was not a CONNECT.
    const logged =
      this.state !== 'awaiting-connect' || this.recordMalformedConnect(reason, detail, undefined, undefined);
    if (logged)
      this.broker.log.info(
        { clientId: this.clientId || undefined, peer: this.peerLabel, reason, detail },
        'closing connection: protocol violation',
      );
    this.broker.stats.protocolErrors++;
  }

  /**
   * The first packet was not a well-formed CONNECT: recorded as `connection.malformed_connect`, bounded like every
   * refusal a client can repeat before proving anything (`Broker.recordRefusal`). `sent` is the CONNACK reason or
   * return code the client is sent, undefined when the connection is only closed. True: log it too.
   */
  private recordMalformedConnect(
    code: ReasonName,
    detail: string,
    sent: number | undefined,
    protocolVersion: number | undefined,
  ): boolean {
    return this.broker.recordRefusal(
      malformedConnectEvent(this.peer, this.listener.name, code, detail, sent, protocolVersion),
    );
  }

  private internalError(error: unknown): void {
    this.broker.log.error({ clientId: this.clientId, err: error }, 'internal error while handling a packet');
    this.close('implementationSpecificError', 'internal error');
  }

  destroy(): void {
    this.state = 'closed';
    this.socket.destroy();
  }

  /** Writing to the socket threw: nothing more can be sent on it, not even a DISCONNECT. */
  writeFailed(error: unknown): void {
    this.broker.log.error({ clientId: this.clientId, err: error }, 'socket write failed: closing the connection');
    this.closeReason ??= 'socket write failed';
    this.destroy();
  }

  onSocketClosed(): void {
    this.state = 'closed';
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    if (this.closeTimer) clearTimeout(this.closeTimer);
    this.backlog = undefined;
    this.broker.onConnectionClosed(this);
  }

  // --- output ------------------------------------------------------------------------------------------

  /** Writes a packet; writes until the next flush are coalesced into one socket write (see `writeBytes`). */
  writePacket(packet: Packet): void {
    const short = encodeShortPacket(packet, this.protocolVersion);
    if (short !== undefined) {
      this.writeBytes(short);
      return;
    }
    const bytes = mqtt.generate(packet, { protocolVersion: this.protocolVersion });
    this.writeBytes(bytes.length > this.clientMaximumPacketSize ? this.withoutReasonString(packet, bytes) : bytes);
  }

  /**
   * A Reason String must not make a packet larger than the client's Maximum Packet Size ([MQTT-3.2.2-19],
   * [MQTT-3.4.2-2], [MQTT-3.14.2-3] and the like for every packet that carries one): it goes, the packet and its
   * reason code stay. A packet still too large is then not sent at all (`writeBytes`). PUBLISH never comes here
   * (`sendPublish` discards one that is too large, [MQTT-3.1.2-25]).
   */
  private withoutReasonString(packet: Packet, bytes: Buffer): Buffer {
    const properties = 'properties' in packet ? packet.properties : undefined;
    if (!properties || !('reasonString' in properties) || properties.reasonString === undefined) return bytes;
    const { reasonString: _dropped, ...rest } = properties;
    const trimmed = { ...packet, properties: Object.keys(rest).length > 0 ? rest : undefined } as Packet;
    return mqtt.generate(trimmed, { protocolVersion: this.protocolVersion });
  }

  /**
   * Queues bytes for the socket; everything queued goes out as one write when the read being handled returns, or
   * on the next tick when queued outside a read (see `queueFlush`). Corking the
   * socket did the same coalescing, but Node's writable buffered an entry per packet and handed them to writev,
   * which was a fifth of the broker's allocations at a steady QoS 1 rate.
   */
  writeBytes(bytes: Buffer): void {
    const socket = this.socket;
    if (socket.destroyed) return;
    if (bytes.length > this.clientMaximumPacketSize) {
      this.dropOversizePacket(bytes);
      return;
    }
    if (socket.writableLength + this.pendingBytes > this.broker.limits.max_output_buffer_bytes) {
      if (this.state !== 'closed') {
        this.broker.log.warn(
          { clientId: this.clientId, peer: this.peerLabel, buffered: socket.writableLength + this.pendingBytes },
          'disconnecting client: it does not read (output buffer full)',
        );
        this.broker.stats.slowClientsDisconnected++;
        this.closeReason = 'output buffer full: client does not read';
        this.destroy();
      }
      return;
    }
    const first = this.pendingFirst;
    if (first === undefined) {
      this.pendingFirst = bytes;
      queueFlush(this);
    } else if (this.pendingAll === undefined) this.pendingAll = [first, bytes];
    else this.pendingAll.push(bytes);
    this.pendingBytes += bytes.length;
    this.broker.stats.bytesSent += bytes.length;
  }

  /**
   * [MQTT-3.1.2-24] nothing larger than the client's Maximum Packet Size is sent, even without its Reason String: a
   * SUBACK for many filters, a CONNACK or AUTH with authentication data. EMQX discards such a packet too; the client
   * set a limit it cannot be answered within, and the log says so.
   */
  private dropOversizePacket(bytes: Buffer): void {
    // Once per connection: a client repeating the SUBSCRIBE must not be able to fill the log.
    if (this.oversizeLogged) return;
    this.oversizeLogged = true;
    const type = bytes[0]! >> 4;
    this.broker.log.warn(
      {
        clientId: this.clientId,
        peer: this.peerLabel,
        packet: PACKET_NAMES[type] ?? type,
        size: bytes.length,
        maximum: this.clientMaximumPacketSize,
      },
      "packet not sent: larger than the client's Maximum Packet Size",
    );
  }

  /** Sends what was queued. Large batches are written buffer by buffer under cork rather than copied. */
  flush(): void {
    const first = this.pendingFirst;
    if (first === undefined) return;
    const all = this.pendingAll;
    const total = this.pendingBytes;
    this.pendingFirst = undefined;
    this.pendingAll = undefined;
    this.pendingBytes = 0;
    const socket = this.socket;
    if (socket.destroyed) return;
    if (all === undefined) socket.write(first);
    else if (total <= COALESCE_LIMIT_BYTES) socket.write(Buffer.concat(all, total));
    else {
      socket.cork();
      for (const bytes of all) socket.write(bytes);
      socket.uncork();
    }
  }

  sendPublish(out: Outbound, dup: boolean): boolean {
    const message = out.message;
    const v5 = this.isV5;
    let topic = message.topic;
    let properties: IPublishPacket['properties'];
    if (v5) {
      const expiry = remainingExpirySeconds(message, Date.now());
      const forwarded = message.properties;
      if (forwarded || expiry !== undefined || out.subscriptionIds || this.clientTopicAliasMaximum > 0) {
        properties = { ...forwarded };
        if (expiry !== undefined) properties.messageExpiryInterval = expiry;
        if (out.subscriptionIds && out.subscriptionIds.length > 0) {
          properties.subscriptionIdentifier =
            out.subscriptionIds.length === 1 ? out.subscriptionIds[0]! : [...out.subscriptionIds];
        }
        if (this.clientTopicAliasMaximum > 0) {
          const aliases = (this.outboundAliases ??= new Map());
          const alias = aliases.get(topic);
          if (alias !== undefined) {
            properties.topicAlias = alias;
            topic = '';
          } else if (aliases.size < this.clientTopicAliasMaximum) {
            const next = aliases.size + 1;
            aliases.set(topic, next);
            properties.topicAlias = next;
          }
        }
      }
    }
    const bytes = this.encodePublishOrLog(topic, out, dup, properties);
    if (bytes === undefined || bytes.length > this.clientMaximumPacketSize) {
      if (properties?.topicAlias !== undefined && topic !== '') this.outboundAliases?.delete(topic);
      // Counted by the session (`onDiscarded`), once, whatever the QoS.
      return false;
    }
    this.writeBytes(bytes);
    this.broker.stats.messagesSent++;
    return true;
  }

  /**
   * The PUBLISH's bytes, or undefined when they cannot be encoded. Its properties come from another client: one
   * the codec let through but the encoder cannot write must cost this delivery, not the broker. A will whose User
   * Property mqtt-packet had decoded as null once threw here from a socket's close handler, and the process died.
   */
  private encodePublishOrLog(
    topic: string,
    out: Outbound,
    dup: boolean,
    properties: IPublishPacket['properties'],
  ): Buffer | undefined {
    try {
      return this.encodePublish(topic, out, dup, properties);
    } catch (error) {
      this.broker.log.error(
        { clientId: this.clientId, topic: out.message.topic, err: error },
        'cannot encode a PUBLISH for this client: not delivered',
      );
      return undefined;
    }
  }

  /**
   * Fan-out encodes each PUBLISH once per (version, QoS 0, retain flag) and shares the bytes when no
   * per-subscriber field (packet id, properties, DUP) is involved. The first encoding is kept on the message
   * itself; a map is made only when subscribers need a second one (mixed protocol versions or retain flags), so a
   * message with one subscriber pays for no cache.
   */
  private encodePublish(topic: string, out: Outbound, dup: boolean, properties: IPublishPacket['properties']): Buffer {
    if (properties !== undefined || dup || out.qos !== 0) return this.encodeFresh(topic, out, dup, properties);
    const message = out.message;
    const key = this.protocolVersion * 2 + (out.retain ? 1 : 0);
    if (message.encodedKey === key) return message.encoded!;
    if (message.encodedKey === undefined) {
      const bytes = this.encodeFresh(topic, out, false, undefined);
      message.encodedKey = key;
      message.encoded = bytes;
      return bytes;
    }
    const others = (message.encodedOthers ??= new Map());
    let bytes = others.get(key);
    if (!bytes) {
      bytes = this.encodeFresh(topic, out, false, undefined);
      others.set(key, bytes);
    }
    return bytes;
  }

  /** Only a PUBLISH with properties is built as a packet object: mqtt-packet needs one, the hand encoder does not. */
  private encodeFresh(topic: string, out: Outbound, dup: boolean, properties: IPublishPacket['properties']): Buffer {
    const version = this.protocolVersion;
    const payload = out.message.payload;
    if (properties === undefined)
      return encodePublishWithoutProperties(topic, payload, out.qos, out.retain, dup, out.packetId, version);
    const packet: IPublishPacket = {
      cmd: 'publish',
      topic,
      payload,
      qos: out.qos,
      retain: out.retain,
      dup,
      messageId: out.qos > 0 ? out.packetId : undefined,
      properties,
    };
    return mqtt.generate(packet, { protocolVersion: version });
  }

  /**
   * Sends a PUBACK/PUBREC/PUBCOMP once the store holds what it vouches for (`seq`: written, and in `sync`
   * durability synced), keeping acknowledgements in the order their packets arrived ([MQTT-4.6.0-2]).
   */
  sendAck(
    cmd: 'puback' | 'pubrec' | 'pubcomp',
    messageId: number,
    reasonCode: number | undefined,
    properties: { reasonString: string } | undefined,
    seq: number,
  ): void {
    const store = this.broker.store;
    const deferred = this.deferredAcks;
    const immediate = (!deferred || deferred.length === 0) && (!store || seq <= store.durableSeq);
    if (immediate && (reasonCode === undefined || reasonCode === 0) && properties === undefined) {
      // A success is written without a packet object: one per QoS 1/2 message was ~55 bytes of garbage.
      this.writeBytes(encodeAck(cmd, messageId));
      return;
    }
    const packet: Packet = { cmd, messageId, reasonCode, properties };
    if (immediate) {
      this.writePacket(packet);
      return;
    }
    (this.deferredAcks ??= []).push({ packet, seq });
    if (!this.awaitingStore) this.awaitStore();
  }

  /**
   * One wait at a time, for the oldest held acknowledgement: the batch that makes it durable usually carries the
   * ones behind it too, so a connection waits once per batch, not once per message.
   */
  private awaitStore(): void {
    const store = this.broker.store;
    const head = this.deferredAcks?.[0];
    if (!store || !head || this.state === 'closed') {
      this.awaitingStore = false;
      return;
    }
    this.awaitingStore = true;
    store.durableThrough(head.seq).then(
      () => {
        // Outside any packet handler's try: a throw here would be an unhandled rejection, which ends the process.
        try {
          this.releaseAcks();
        } catch (error) {
          this.internalError(error);
          return;
        }
        this.awaitStore();
      },
      // The store is failing and retries every second; the acknowledgements stay held until it succeeds.
      () => setTimeout(() => this.awaitStore(), 1000).unref(),
    );
  }

  private releaseAcks(): void {
    const durable = this.broker.store?.durableSeq ?? Number.MAX_SAFE_INTEGER;
    const deferred = this.deferredAcks;
    while (deferred && deferred.length > 0 && deferred[0]!.seq <= durable) {
      const next = deferred.shift()!;
      if (this.state !== 'closed') this.writePacket(next.packet);
    }
  }

  sendPubrel(packetId: number): void {
    this.writePacket({ cmd: 'pubrel', messageId: packetId });
  }

  /** Reason strings are sent only when the client did not opt out ([MQTT-3.1.2-29]). */
  reasonProperties(detail: string | undefined): { reasonString: string } | undefined {
    return this.isV5 && this.requestProblemInformation && detail ? { reasonString: detail } : undefined;
  }
}

/** The protocol level byte of a CONNECT at the start of `bytes`, when enough of it has arrived. */
function protocolLevelOf(bytes: Buffer): number | undefined {
  if (bytes.length < 2 || bytes[0]! >> 4 !== 1) return undefined;
  // Fixed header (1 byte + 1..4 length bytes), then protocol name length (2) + name, then the level.
  let i = 1;
  while (i < 5 && i < bytes.length && (bytes[i]! & 0x80) !== 0) i++;
  i++;
  if (bytes.length < i + 2) return undefined;
  const levelAt = i + 2 + bytes.readUInt16BE(i);
  return levelAt < bytes.length ? bytes[levelAt]! & 0x7f : undefined;
}
