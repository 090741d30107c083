import { describe, expect, it } from 'vitest';
import type { Message } from '../../../src/routing/message.js';
import { RetainedStore } from '../../../src/routing/retained-store.js';

const message = (topic: string, payload: string, expiresAt?: number): Message => ({
  topic,
  payload: Buffer.from(payload),
  qos: 1,
  retain: true,
  properties: undefined,
  expiresAt,
  publisherId: 'p',
});

const topics = (list: Message[]): string[] => list.map((m) => m.topic).sort();

describe('retained store', () => {
  it('replaces, and deletes on an empty payload', () => {
    const store = new RetainedStore();
    store.set(message('a/b', 'one'));
    store.set(message('a/b', 'two'));
    expect(store.size).toBe(1);
    expect(store.get('a/b')?.payload.toString()).toBe('two');
    store.set(message('a/b', ''));
    expect(store.size).toBe(0);
    expect(store.get('a/b')).toBeUndefined();
  });

  it('keeps a payload that is a view into a larger read as a copy of its own bytes, with its correlation data', () => {
    // A decoded PUBLISH's payload is a view into the whole read it arrived in: 64 KiB here, for 5 payload bytes.
    const read = Buffer.alloc(65_536, 0x2e);
    read.write('hello', 1000);
    read.write('corr', 2000);
    const viewed: Message = {
      ...message('a/b', ''),
      payload: read.subarray(1000, 1005),
      properties: { contentType: 'text/plain', correlationData: read.subarray(2000, 2004) },
      encoded: read.subarray(0, 20),
      encodedKey: 4,
    };
    const seen: (Message | undefined)[] = [];
    const store = new RetainedStore((_topic, m) => seen.push(m));
    store.set(viewed);
    read.fill(0);
    const kept = store.get('a/b')!;
    expect(kept.payload.toString()).toBe('hello');
    expect(kept.payload.buffer.byteLength).toBe(5);
    expect(kept.properties?.correlationData?.toString()).toBe('corr');
    expect(kept.properties?.correlationData?.buffer.byteLength).toBe(4);
    expect(kept.properties?.contentType).toBe('text/plain');
    expect(kept.encoded).toBeUndefined();
    expect(store.payloadBytes).toBe(5);
    expect(seen).toEqual([kept]);
  });

  it('keeps a message whose buffers waste at most 1 KiB beside them as it is', () => {
    // A PUBLISH read on its own: the payload shares its buffer only with the packet's header and topic.
    const alone = Buffer.alloc(1024 + 40);
    const own: Message = { ...message('a/b', ''), payload: alone.subarray(1024) };
    const store = new RetainedStore();
    store.set(own);
    expect(store.get('a/b')).toBe(own);
    const wasteful: Message = { ...message('a/b', ''), payload: Buffer.alloc(1024 + 41).subarray(1025) };
    store.set(wasteful);
    expect(store.get('a/b')).not.toBe(wasteful);
    expect(store.get('a/b')?.payload.buffer.byteLength).toBe(40);
  });

  it('matches filters with wildcards, keeping $ topics from leading wildcards', () => {
    const store = new RetainedStore();
    for (const t of ['a', 'a/b', 'a/b/c', 'x/b', '$SYS/v']) store.set(message(t, 'p'));
    expect(topics(store.match('a/#', 0))).toEqual(['a', 'a/b', 'a/b/c']);
    expect(topics(store.match('+/b', 0))).toEqual(['a/b', 'x/b']);
    expect(topics(store.match('#', 0))).toEqual(['a', 'a/b', 'a/b/c', 'x/b']);
    expect(topics(store.match('$SYS/#', 0))).toEqual(['$SYS/v']);
    expect(topics(store.match('a/b', 0))).toEqual(['a/b']);
  });

  it('drops expired messages when met and on sweep', () => {
    const store = new RetainedStore();
    store.set(message('a', 'p', 1000));
    store.set(message('b', 'p', 3000));
    expect(topics(store.match('#', 2000))).toEqual(['b']);
    expect(store.size).toBe(1);
    expect(store.sweep(4000)).toBe(1);
    expect(store.size).toBe(0);
  });
});
