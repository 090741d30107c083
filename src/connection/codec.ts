import mqtt, { type Packet } from 'mqtt-packet';

export interface PacketSink {
  onPacket(packet: Packet): void;
  onParseError(error: Error): void;
}

/**
 * One mqtt-packet parser per protocol version, shared by every connection. The framer hands over only whole
 * packets and parsing is synchronous, so a parser never holds a connection's partial state between calls; sharing
 * it saves the ~3 KiB a parser costs per idle connection. `current` routes its events to the caller.
 */
class SharedParser {
  private readonly parser: ReturnType<typeof mqtt.parser>;
  private current: PacketSink | undefined;
  /** mqtt-packet replaces its settings with every CONNECT it parses; a shared parser must keep its version. */
  private readonly settings: { protocolVersion: number };

  constructor(protocolVersion: 3 | 4 | 5) {
    this.parser = mqtt.parser({ protocolVersion });
    this.parser.on('packet', (packet: Packet) => this.current?.onPacket(packet));
    this.parser.on('error', (error: Error) => this.current?.onParseError(error));
    this.settings = { protocolVersion };
  }

  parse(frames: Buffer, sink: PacketSink): void {
    const previous = this.current;
    this.current = sink;
    try {
      this.parser.parse(frames);
      const state = this.parser as unknown as {
        error: Error | null;
        _list: { length: number };
        _pos: number;
        _resetState(): void;
      };
      if (state.error) {
        // mqtt-packet's own reset keeps the read offset; the next connection must start from a clean parser.
        state._resetState();
        state._pos = 0;
      } else if (state._list.length > 0) {
        // Whole frames must leave nothing behind; anything left means a packet shorter than its own length field.
        state._resetState();
        state._pos = 0;
        sink.onParseError(new Error('packet content does not match its length'));
      }
    } finally {
      this.current = previous;
      (this.parser as unknown as { settings: unknown }).settings = this.settings;
    }
  }
}

const parsers = new Map<number, SharedParser>();

export function parseFrames(protocolVersion: 3 | 4 | 5, frames: Buffer, sink: PacketSink): void {
  let parser = parsers.get(protocolVersion);
  if (!parser) {
    parser = new SharedParser(protocolVersion);
    parsers.set(protocolVersion, parser);
  }
  parser.parse(frames, sink);
}
