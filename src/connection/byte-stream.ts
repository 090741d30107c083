/**
 * What a `Connection` needs from its transport: bytes in, bytes out, a bound on what is buffered, and an end.
 * `net.Socket`, `tls.TLSSocket` and the WebSocket stream are Node Duplexes and fit as they are; plain TCP listeners
 * hand over a `HandleSocket` (src/transport/handle-socket.ts), which drives Node's TCP handle without a stream.
 */
export interface ByteStream {
  readonly destroyed: boolean;
  /** Bytes accepted by `write` and not yet handed to the kernel. */
  readonly writableLength: number;
  write(data: Buffer): boolean;
  /** Sends what is queued, then half-closes; the stream closes once the peer has too. */
  end(): unknown;
  /** Writes `data`, then ends as `end()`. */
  end(data: Buffer): unknown;
  /** Closes now: what is queued is dropped, `close` follows. */
  destroy(): unknown;
  /**
   * Closes now if every byte written is already in the kernel, which still sends it before the FIN; false, and
   * nothing done, while bytes wait in user space. Only a stream whose writes end in the kernel as they are (plain
   * TCP) offers it: TLS and WebSocket frame their own closing.
   */
  closeIfWritten?(): boolean;
  /** Stops reading from the peer: no `data` until `resume`, and TCP's flow control holds the client back. */
  pause(): unknown;
  resume(): unknown;
  /** Holds writes until `uncork`, which hands them to the kernel together. */
  cork(): void;
  uncork(): void;
  /**
   * A read. The chunk is lent for the duration of the call: a plain TCP socket hands every read over in one buffer
   * it reuses for the next, so whatever outlives the call (a partial packet, a payload) must be copied out.
   */
  on(event: 'data', listener: (chunk: Buffer) => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  on(event: 'close', listener: () => void): unknown;
  once(event: 'close', listener: () => void): unknown;
}
