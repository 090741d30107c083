import { Buffer, isUtf8 } from 'node:buffer';

/**
 * Splits the byte stream into whole MQTT packets before the codec sees them, so the maximum packet size is
 * enforced from the fixed header alone (before the body is buffered) and the codec always parses whole frames.
 */
export type FrameProblem = { kind: 'tooLarge'; size: number } | { kind: 'malformed'; why: string };

/**
 * What a read yields: the run of complete frames, undefined when no frame is complete yet, or the problem that ends
 * the connection. The common outcome is the Buffer itself, with no result object around it for every read.
 */
export type FrameResult = Buffer | undefined | FrameProblem;

export function isFrameProblem(result: FrameResult): result is FrameProblem {
  return result !== undefined && !Buffer.isBuffer(result);
}

export class Framer {
  /** The start of a frame not yet complete: its header, or its header and the part of its body read so far. */
  private pending: Buffer[] | undefined;
  private pendingBytes = 0;
  /** The whole length of that frame, once its header is complete (0 before). */
  private pendingFrameBytes = 0;

  constructor(private maxPacketSize: number) {}

  setMaxPacketSize(size: number): void {
    this.maxPacketSize = size;
  }

  get bufferedBytes(): number {
    return this.pendingBytes;
  }

  /** Returns the run of complete frames in arrival order (possibly none), keeping any partial tail. */
  push(chunk: Buffer): FrameResult {
    let data = chunk;
    if (this.pending) {
      // The chunk is only lent (see `ByteStream`): what waits for the rest of its packet is copied.
      this.pending.push(Buffer.from(chunk));
      this.pendingBytes += chunk.length;
      // A large packet arrives over many reads: its pieces are joined once, when it is complete. Joining at every
      // read copied it over and over (a 64 MiB packet in 64 KiB reads: 32 GiB of copying).
      if (this.pendingFrameBytes > 0 && this.pendingBytes < this.pendingFrameBytes) return undefined;
      data = Buffer.concat(this.pending, this.pendingBytes);
      this.pending = undefined;
      this.pendingBytes = 0;
      this.pendingFrameBytes = 0;
    }
    let offset = 0;
    let incompleteFrameBytes = 0;
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
          // [MQTT-1.5.5-1] the shortest encoding only: a last byte of 0 after others added nothing.
          if (byte === 0 && n > 0) return { kind: 'malformed', why: 'remaining length not in its shortest form' };
          complete = true;
          i++;
          break;
        }
        if (n === 3) return { kind: 'malformed', why: 'remaining length longer than 4 bytes' };
      }
      if (!complete) break;
      const total = i - offset + remaining;
      if (total > this.maxPacketSize) return { kind: 'tooLarge', size: total };
      if (offset + total > length) {
        incompleteFrameBytes = total;
        break;
      }
      if (data[offset]! >> 4 === 3 && remaining >= 2) {
        // [MQTT-1.5.4-1] the codec decodes ill-formed UTF-8 leniently, so PUBLISH topics are checked as bytes here.
        const topicLength = data.readUInt16BE(i);
        const topicEnd = Math.min(i + 2 + topicLength, offset + total);
        if (!isAscii(data, i + 2, topicEnd) && !isUtf8(data.subarray(i + 2, topicEnd)))
          return { kind: 'malformed', why: 'topic name is not valid UTF-8' };
      }
      offset += total;
    }
    if (offset < length) {
      const tail = offset === 0 ? data : data.subarray(offset);
      // A lent chunk is copied; a join of earlier pieces is already this framer's own and needs no second copy.
      this.pending = [data === chunk ? Buffer.from(tail) : tail];
      this.pendingBytes = length - offset;
      this.pendingFrameBytes = incompleteFrameBytes;
    }
    if (offset === 0) return undefined;
    // A read usually ends on a packet boundary: the chunk itself is the run of frames, with no view to allocate.
    return offset === length ? data : data.subarray(0, offset);
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
