import { describe, expect, it, vi } from 'vitest';
import { Framer, frameEnd, isFrameProblem } from '../../../src/connection/framer.js';

const publish = (payloadLength: number): Buffer => {
  const body = Buffer.alloc(3 + payloadLength, 0x61);
  body.writeUInt16BE(1, 0);
  const length: number[] = [];
  let n = body.length;
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    length.push(byte);
  } while (n > 0);
  return Buffer.concat([Buffer.from([0x30, ...length]), body]);
};

describe('framer', () => {
  it('returns whole frames and keeps a partial tail for the next chunk', () => {
    const framer = new Framer(1024);
    const a = publish(10);
    const b = publish(200);
    const both = Buffer.concat([a, b]);
    const first = framer.push(both.subarray(0, a.length + 5));
    expect(first).toEqual(a);
    expect(framer.bufferedBytes).toBe(5);
    const second = framer.push(both.subarray(a.length + 5));
    expect(Buffer.isBuffer(second) && second.equals(b)).toBe(true);
    expect(framer.bufferedBytes).toBe(0);
  });

  it('hands back a read that ends on a packet boundary as it is, without a view of it', () => {
    const framer = new Framer(1024);
    const chunk = Buffer.concat([publish(10), publish(20)]);
    const result = framer.push(chunk);
    expect(result).toBe(chunk);
    // A read that ends inside a packet still yields only the whole frames before it.
    const cut = chunk.subarray(0, chunk.length - 1);
    const partial = framer.push(cut);
    expect(Buffer.isBuffer(partial) && partial.length).toBe(publish(10).length);
  });

  it('copies what it keeps of a read: the chunk is lent and may be overwritten once push returns', () => {
    const framer = new Framer(1 << 20);
    const frame = publish(200_000);
    const lent = Buffer.alloc(65_536);
    let last: ReturnType<Framer['push']>;
    for (let at = 0; at < frame.length; at += lent.length) {
      const size = frame.copy(lent, 0, at, at + lent.length);
      last = framer.push(lent.subarray(0, size));
      lent.fill(0xee);
    }
    expect(Buffer.isBuffer(last!) && last.equals(frame)).toBe(true);
  });

  it('keeps the start of the next packet intact when the read that completes one packet also begins another', () => {
    const framer = new Framer(1 << 20);
    const [a, b] = [publish(1_000), publish(2_000)];
    const stream = Buffer.concat([a, b]);
    const lent = Buffer.alloc(stream.length);
    const push = (from: number, to: number): ReturnType<Framer['push']> => {
      const size = stream.copy(lent, 0, from, to);
      const result = framer.push(lent.subarray(0, size));
      const owned = Buffer.isBuffer(result) ? Buffer.from(result) : result;
      lent.fill(0xee);
      return owned;
    };
    expect(push(0, 500)).toBeUndefined();
    // Completes `a` (joined with what waited) and starts `b`: `b`'s start is kept from the join, not the lent read.
    const first = push(500, a.length + 300);
    expect(Buffer.isBuffer(first) && first.equals(a)).toBe(true);
    const second = push(a.length + 300, stream.length);
    expect(Buffer.isBuffer(second) && second.equals(b)).toBe(true);
  });

  it('refuses a packet over the maximum from its header alone, before the body arrives', () => {
    const framer = new Framer(100);
    const big = publish(500);
    expect(framer.push(big.subarray(0, 4))).toEqual({ kind: 'tooLarge', size: big.length });
  });

  it('refuses a remaining length longer than four bytes', () => {
    const framer = new Framer(1 << 28);
    expect(framer.push(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]))).toMatchObject({ kind: 'malformed' });
  });

  it('joins a packet that arrives over many reads once, when it is complete, not at every read', () => {
    const framer = new Framer(1 << 21);
    const frame = publish(1 << 20);
    const concat = vi.spyOn(Buffer, 'concat');
    try {
      const results = [];
      for (let at = 0; at < frame.length; at += 65_536) results.push(framer.push(frame.subarray(at, at + 65_536)));
      expect(results.slice(0, -1).every((r) => r === undefined)).toBe(true);
      const last = results.at(-1)!;
      expect(Buffer.isBuffer(last) && last.equals(frame)).toBe(true);
      // 17 reads: joined once (each read joined everything so far before: 1 MiB copied ~8 times over).
      expect(concat).toHaveBeenCalledTimes(1);
      expect(framer.bufferedBytes).toBe(0);
    } finally {
      concat.mockRestore();
    }
  });

  it('returns the same whole frames however the stream is cut into reads', () => {
    let seed = 7;
    const random = (n: number): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % n;
    };
    for (let round = 0; round < 50; round++) {
      const frames = Array.from({ length: 1 + random(30) }, () =>
        publish(random(3) === 0 ? random(40_000) : random(200)),
      );
      const stream = Buffer.concat(frames);
      const framer = new Framer(1 << 20);
      const out: Buffer[] = [];
      for (let at = 0; at < stream.length;) {
        const size = 1 + random(random(2) === 0 ? 8 : 70_000);
        const result = framer.push(stream.subarray(at, at + size));
        if (isFrameProblem(result)) throw new Error(`unexpected ${result.kind}`);
        if (result) {
          // Every run holds whole frames only.
          let offset = 0;
          while (offset < result.length) offset = frameEnd(result, offset);
          expect(offset).toBe(result.length);
          out.push(Buffer.from(result));
        }
        at += size;
      }
      expect(Buffer.concat(out).equals(stream)).toBe(true);
      expect(framer.bufferedBytes).toBe(0);
    }
  });

  it('waits for more bytes when the length itself is split', () => {
    const framer = new Framer(1 << 20);
    const frame = publish(300);
    expect(framer.push(frame.subarray(0, 2))).toBeUndefined();
    const rest = framer.push(frame.subarray(2));
    expect(Buffer.isBuffer(rest) && rest.length).toBe(frame.length);
  });

  it('passes ASCII and well-formed multi-byte topics and refuses ill-formed UTF-8 anywhere in the topic', () => {
    const withTopic = (topic: Buffer): Buffer => {
      const body = Buffer.concat([Buffer.from([topic.length >> 8, topic.length & 0xff]), topic, Buffer.from('x')]);
      return Buffer.concat([Buffer.from([0x30, body.length]), body]);
    };
    const kind = (topic: Buffer): string => {
      const result = new Framer(1024).push(withTopic(topic));
      return isFrameProblem(result) ? result.kind : 'frames';
    };
    expect(kind(Buffer.from('plant/line-7/temperature'))).toBe('frames');
    expect(kind(Buffer.from('usine/température/€/😀'))).toBe('frames');
    // 0xC3 0x28: a lead byte followed by a non-continuation byte, after and before an ASCII run.
    expect(kind(Buffer.from([0x61, 0x2f, 0xc3, 0x28]))).toBe('malformed');
    expect(kind(Buffer.from([0xc3, 0x28, 0x61, 0x62]))).toBe('malformed');
    // An unpaired surrogate encoded as UTF-8 (CESU) and an overlong '/' are not UTF-8 either.
    expect(kind(Buffer.from([0x61, 0xed, 0xa0, 0x80]))).toBe('malformed');
    expect(kind(Buffer.from([0xc0, 0xaf]))).toBe('malformed');
  });
});
