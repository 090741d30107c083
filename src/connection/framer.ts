import { isUtf8 } from 'node:buffer';

/**
 * Splits the byte stream into whole MQTT packets before the codec sees them, so the maximum packet size is
 * enforced from the fixed header alone (before the body is buffered) and the codec always parses whole frames.
 */
export type FrameResult =
  | { kind: 'frames'; frames: Buffer | undefined }
  | { kind: 'tooLarge'; size: number }
  | { kind: 'malformed'; why: string };

export class Framer {
  private pending: Buffer | undefined;

  constructor(private maxPacketSize: number) {}

  setMaxPacketSize(size: number): void {
    this.maxPacketSize = size;
  }

  get bufferedBytes(): number {
    return this.pending?.length ?? 0;
  }

  /** Returns the run of complete frames in arrival order (possibly none), keeping any partial tail. */
  push(chunk: Buffer): FrameResult {
    const data = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = undefined;
    let offset = 0;
    const length = data.length;
    while (offset < length) {
      if (length - offset < 2) break;
      let multiplier = 1;
      let remaining = 0;
      let i = offset + 1;
      let complete = false;
      for (let n = 0; n < 4; n++, i++) {
        if (i >= length) break;
        const byte = data[i]!;
        remaining += (byte & 0x7f) * multiplier;
        multiplier *= 128;
        if ((byte & 0x80) === 0) {
          complete = true;
          i++;
          break;
        }
        if (n === 3) return { kind: 'malformed', why: 'remaining length longer than 4 bytes' };
      }
      if (!complete) break;
      const total = i - offset + remaining;
      if (total > this.maxPacketSize) return { kind: 'tooLarge', size: total };
      if (offset + total > length) break;
      if (data[offset]! >> 4 === 3 && remaining >= 2) {
        // [MQTT-1.5.4-1] the codec decodes ill-formed UTF-8 leniently, so PUBLISH topics are checked as bytes here.
        const topicLength = data.readUInt16BE(i);
        const topicEnd = Math.min(i + 2 + topicLength, offset + total);
        if (!isAscii(data, i + 2, topicEnd) && !isUtf8(data.subarray(i + 2, topicEnd)))
          return { kind: 'malformed', why: 'topic name is not valid UTF-8' };
      }
      offset += total;
    }
    if (offset < length) this.pending = data.subarray(offset);
    return { kind: 'frames', frames: offset > 0 ? data.subarray(0, offset) : undefined };
  }
}

/**
 * Whether bytes `start..end` are all ASCII, which is always valid UTF-8. Most topics are, and checking them in place
 * spares the Buffer view `isUtf8` needs for every PUBLISH.
 */
function isAscii(data: Buffer, start: number, end: number): boolean {
  for (let k = start; k < end; k++) if (data[k]! >= 0x80) return false;
  return true;
}

/**
 * Where the frame starting at `offset` ends (exclusive). `frames` is what the framer returned, so every frame in it
 * is complete and its remaining length valid.
 */
export function frameEnd(frames: Buffer, offset: number): number {
  let multiplier = 1;
  let remaining = 0;
  let i = offset + 1;
  for (;;) {
    const byte = frames[i++]!;
    remaining += (byte & 0x7f) * multiplier;
    multiplier *= 128;
    if ((byte & 0x80) === 0) break;
  }
  return i + remaining;
}
