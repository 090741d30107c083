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
