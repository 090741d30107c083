import { describe, expect, it } from 'vitest';
import type { Subscription } from '../../../src/routing/subscription.js';
import { SubscriptionTree } from '../../../src/routing/subscription-tree.js';
import { Session } from '../../../src/session/session.js';
import { topicMatches } from '../../../src/protocol/topic.js';

const events = { onQueueOverflow: () => undefined, onDiscarded: () => undefined };
const limits = { maxQueuedMessages: 10, queueOverflow: 'drop-new' as const, queueQos0: false };
const session = (id: string): Session => new Session(id, 5, 0, limits, events);
const sub = (s: Session, filter: string, shareGroup?: string): Subscription => ({
  session: s,
  key: shareGroup ? `$share/${shareGroup}/${filter}` : filter,
  filter,
  shareGroup,
  qos: 1,
  noLocal: false,
  retainAsPublished: false,
  retainHandling: 0,
  subscriptionId: undefined,
  receiveProof: undefined,
});

function matched(tree: SubscriptionTree, topic: string): string[] {
  const out: string[] = [];
  tree.match(
    topic,
    (s) => out.push(`${s.session.clientId}:${s.filter}`),
    (g) => out.push(`group ${g.name}:${g.filter}`),
  );
  return out.sort();
}

describe('subscription tree', () => {
  it('matches exact, + and # subscriptions and nothing else', () => {
    const tree = new SubscriptionTree();
    const a = session('a');
    for (const f of ['x/y', 'x/+', 'x/#', '#', '+/y/z', 'q']) tree.add(sub(a, f));
    expect(matched(tree, 'x/y')).toEqual(['a:#', 'a:x/#', 'a:x/+', 'a:x/y']);
    expect(matched(tree, 'x')).toEqual(['a:#', 'a:x/#']);
    expect(matched(tree, 'w/y/z')).toEqual(['a:#', 'a:+/y/z']);
  });

  it('keeps $ topics away from leading wildcards', () => {
    const tree = new SubscriptionTree();
    const a = session('a');
    for (const f of ['#', '+/broker', '$SYS/#']) tree.add(sub(a, f));
    expect(matched(tree, '$SYS/broker')).toEqual(['a:$SYS/#']);
  });

  it('replaces a session subscription to the same filter and prunes on removal', () => {
    const tree = new SubscriptionTree();
    const a = session('a');
    const first = sub(a, 'x/y');
    tree.add(first);
    tree.add(sub(a, 'x/y'));
    expect(tree.size).toBe(1);
    tree.remove(first);
    expect(tree.size).toBe(0);
    expect(matched(tree, 'x/y')).toEqual([]);
  });

  it('groups shared subscriptions and picks connected members in turn', () => {
    const tree = new SubscriptionTree();
    const [a, b] = [session('a'), session('b')];
    const link = { sendQuota: 10, sendPublish: () => true, sendPubrel: () => undefined };
    a.link = link;
    b.link = link;
    a.connection = { disconnectedCleanly: false, close: () => undefined };
    b.connection = { disconnectedCleanly: false, close: () => undefined };
    tree.add(sub(a, 'x/+', 'g'));
    tree.add(sub(b, 'x/+', 'g'));
    expect(matched(tree, 'x/1')).toEqual(['group g:x/+']);
    const group = tree.sharedGroup('x/+', 'g')!;
    const picks = [group.pick(), group.pick(), group.pick()].map((m) => m!.session.clientId);
    expect(picks).toEqual(['a', 'b', 'a']);
    b.connection = undefined;
    expect(group.pick()!.session.clientId).toBe('a');
    expect(group.pick()!.session.clientId).toBe('a');
  });
});

describe('route cache', () => {
  it('answers exactly as a plain filter match through a random run of subscribes, unsubscribes and publishes', () => {
    // A seeded walk: the cache must never serve a route that a subscribe or unsubscribe has changed.
    let seed = 42;
    const random = (n: number): number => {
      seed = (seed * 1_103_515_245 + 12_345) & 0x7fffffff;
      return seed % n;
    };
    const levels = ['a', 'b', 'c', '$SYS'];
    const filters = ['a/b', 'a/+', 'a/#', '#', '+/b/c', 'a/b/c', '+', 'b/#', '$SYS/#', '+/+', 'c'];
    const topics = ['a', 'a/b', 'a/b/c', 'b', 'b/b/c', 'c', '$SYS/a', 'a/c', 'c/b/c'];
    const tree = new SubscriptionTree();
    const sessions = ['s1', 's2', 's3'].map(session);
    const live = new Map<string, Subscription>();
    for (let step = 0; step < 3000; step++) {
      const op = random(3);
      const s = sessions[random(sessions.length)]!;
      const filter = filters[random(filters.length)]!;
      const key = `${s.clientId}:${filter}`;
      if (op === 0) {
        const subscription = sub(s, filter);
        tree.add(subscription);
        live.set(key, subscription);
      } else if (op === 1) {
        const subscription = live.get(key);
        if (subscription) {
          tree.remove(subscription);
          live.delete(key);
        }
      } else {
        const topic =
          random(4) === 0
            ? `${levels[random(levels.length)]}/${topics[random(topics.length)]}`
            : topics[random(topics.length)]!;
        const expected = [...live.values()]
          .filter((x) => topicMatches(x.filter, topic))
          .map((x) => `${x.session.clientId}:${x.filter}`)
          .sort();
        expect({ step, topic, got: matched(tree, topic) }).toEqual({ step, topic, got: expected });
      }
    }
  });
});
