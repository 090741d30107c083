import type { Subscription } from './subscription.js';

/** Members of one `$share/{group}/{filter}`; each message goes to one member, round robin among the connected. */
export class SharedGroup {
  readonly members: Subscription[] = [];
  private next = 0;

  constructor(
    readonly name: string,
    readonly filter: string,
  ) {}

  /**
   * Picks the member to deliver to: the next connected one in turn, else any member (its session queues
   * the message until it reconnects), skipping `exclude` (a member that just left).
   */
  pick(exclude?: Subscription): Subscription | undefined {
    const count = this.members.length;
    let fallback: Subscription | undefined;
    for (let i = 0; i < count; i++) {
      const index = (this.next + i) % count;
      const member = this.members[index]!;
      if (member === exclude || member.session === exclude?.session) continue;
      if (member.session.connection) {
        this.next = (index + 1) % count;
        return member;
      }
      fallback ??= member;
    }
    return fallback;
  }
}

class TopicNode {
  readonly children = new Map<string, TopicNode>();
  /** Non-shared subscriptions whose filter ends at this node, by session client id. */
  subscribers: Map<string, Subscription> | undefined;
  shared: Map<string, SharedGroup> | undefined;

  constructor(
    readonly parent: TopicNode | undefined,
    readonly level: string,
  ) {}

  isEmpty(): boolean {
    return this.children.size === 0 && !this.subscribers?.size && !this.shared?.size;
  }
}

/**
 * A trie over topic levels with `+` and `#` children. Matching visits only the branches a topic can reach,
 * so the cost grows with the topic's depth, not with the number of subscriptions.
 */
/** Bound on the route cache; when full it starts over (telemetry repeats a working set of topics). */
const ROUTE_CACHE_ENTRIES = 4096;

export class SubscriptionTree {
  private readonly root = new TopicNode(undefined, '');
  /**
   * Topic → the tree nodes that match it. Subscribing or unsubscribing on an existing filter changes only a node's
   * members, which `emit` reads live, so the cache is dropped only when a node is created or pruned. Fan-in and
   * telemetry publish the same topics over and over; the walk (a `split` and a Map lookup per level) was ~9% of
   * QoS 0 fan-in.
   */
  private readonly routes = new Map<string, TopicNode[]>();
  private subscriptionCount = 0;
  private sharedCount = 0;

  get size(): number {
    return this.subscriptionCount + this.sharedCount;
  }

  add(subscription: Subscription): void {
    const node = this.nodeFor(subscription.filter, true)!;
    if (subscription.shareGroup === undefined) {
      node.subscribers ??= new Map();
      if (!node.subscribers.has(subscription.session.clientId)) this.subscriptionCount++;
      node.subscribers.set(subscription.session.clientId, subscription);
      return;
    }
    node.shared ??= new Map();
    let group = node.shared.get(subscription.shareGroup);
    if (!group) {
      group = new SharedGroup(subscription.shareGroup, subscription.filter);
      node.shared.set(subscription.shareGroup, group);
    }
    const existing = group.members.findIndex((m) => m.session === subscription.session);
    if (existing >= 0) group.members[existing] = subscription;
    else {
      group.members.push(subscription);
      this.sharedCount++;
    }
  }

  remove(subscription: Subscription): void {
    const node = this.nodeFor(subscription.filter, false);
    if (!node) return;
    if (subscription.shareGroup === undefined) {
      const current = node.subscribers?.get(subscription.session.clientId);
      if (current && current.session === subscription.session) {
        node.subscribers!.delete(subscription.session.clientId);
        this.subscriptionCount--;
      }
    } else {
      const group = node.shared?.get(subscription.shareGroup);
      if (group) {
        const index = group.members.findIndex((m) => m.session === subscription.session);
        if (index >= 0) {
          group.members.splice(index, 1);
          this.sharedCount--;
        }
        if (group.members.length === 0) node.shared!.delete(subscription.shareGroup);
      }
    }
    this.prune(node);
  }

  sharedGroup(filter: string, name: string): SharedGroup | undefined {
    return this.nodeFor(filter, false)?.shared?.get(name);
  }

  /**
   * Calls `onSubscription` for every non-shared subscription and `onGroup` for every shared group matching
   * `topic`. [MQTT-4.7.2-1] wildcards at the first level do not match topics beginning with `$`.
   */
  match(topic: string, onSubscription: (s: Subscription) => void, onGroup: (g: SharedGroup) => void): void {
    let nodes = this.routes.get(topic);
    if (nodes === undefined) {
      nodes = [];
      this.collect(this.root, topic.split('/'), 0, topic.charCodeAt(0) === 0x24, nodes);
      if (this.routes.size >= ROUTE_CACHE_ENTRIES) this.routes.clear();
      this.routes.set(topic, nodes);
    }
    for (let i = 0; i < nodes.length; i++) emit(nodes[i]!, onSubscription, onGroup);
  }

  /** The nodes whose subscribers match, in the order a walk meets them; which nodes exist is all that matters. */
  private collect(node: TopicNode, levels: string[], depth: number, dollar: boolean, into: TopicNode[]): void {
    const wildcardsAllowed = !(dollar && depth === 0);
    if (wildcardsAllowed) {
      const hash = node.children.get('#');
      if (hash) into.push(hash);
    }
    if (depth === levels.length) {
      into.push(node);
      return;
    }
    const exact = node.children.get(levels[depth]!);
    if (exact) this.collect(exact, levels, depth + 1, dollar, into);
    if (wildcardsAllowed) {
      const plus = node.children.get('+');
      if (plus) this.collect(plus, levels, depth + 1, dollar, into);
    }
  }

  private nodeFor(filter: string, create: boolean): TopicNode | undefined {
    let node = this.root;
    for (const level of filter.split('/')) {
      let child = node.children.get(level);
      if (!child) {
        if (!create) return undefined;
        child = new TopicNode(node, level);
        node.children.set(level, child);
        this.routes.clear();
      }
      node = child;
    }
    return node;
  }

  private prune(node: TopicNode): void {
    let current: TopicNode | undefined = node;
    while (current?.parent && current.isEmpty()) {
      current.parent.children.delete(current.level);
      this.routes.clear();
      current = current.parent;
    }
  }
}

function emit(node: TopicNode, onSubscription: (s: Subscription) => void, onGroup: (g: SharedGroup) => void): void {
  if (node.subscribers) for (const s of node.subscribers.values()) onSubscription(s);
  if (node.shared) for (const g of node.shared.values()) onGroup(g);
}
