import { isExpired, withOwnedBytes, type Message } from './message.js';

class RetainedNode {
  readonly children = new Map<string, RetainedNode>();
  message: Message | undefined;
  constructor(
    readonly parent: RetainedNode | undefined,
    readonly level: string,
  ) {}
}

/**
 * Retained messages by topic, in a trie so a SUBSCRIBE with wildcards visits only the matching branches.
 * Expired messages are dropped lazily when met, and by `sweep()` on a schedule.
 */
export class RetainedStore {
  private readonly root = new RetainedNode(undefined, '');
  private count = 0;
  private bytes = 0;

  constructor(private readonly onChange?: (topic: string, message: Message | undefined) => void) {}

  get size(): number {
    return this.count;
  }

  get payloadBytes(): number {
    return this.bytes;
  }

  /** [MQTT-3.3.1-6] replaces; [MQTT-3.3.1-10] an empty payload removes the retained message. */
  set(message: Message): void {
    if (message.payload.length === 0) {
      this.delete(message.topic);
      return;
    }
    let node = this.root;
    for (const level of message.topic.split('/')) {
      let child = node.children.get(level);
      if (!child) {
        child = new RetainedNode(node, level);
        node.children.set(level, child);
      }
      node = child;
    }
    if (node.message) this.bytes -= node.message.payload.length;
    else this.count++;
    const kept = withOwnedBytes(message);
    node.message = kept;
    this.bytes += kept.payload.length;
    this.onChange?.(kept.topic, kept);
  }

  delete(topic: string): void {
    let node: RetainedNode | undefined = this.root;
    for (const level of topic.split('/')) {
      node = node.children.get(level);
      if (!node) return;
    }
    if (!node.message) return;
    this.bytes -= node.message.payload.length;
    node.message = undefined;
    this.count--;
    this.prune(node);
    this.onChange?.(topic, undefined);
  }

  get(topic: string): Message | undefined {
    let node: RetainedNode | undefined = this.root;
    for (const level of topic.split('/')) {
      node = node.children.get(level);
      if (!node) return undefined;
    }
    return node.message;
  }

  /** Retained messages whose topic matches `filter`, skipping and removing expired ones. */
  match(filter: string, now: number): Message[] {
    const out: Message[] = [];
    const levels = filter.split('/');
    this.walk(this.root, levels, 0, now, out);
    return out;
  }

  /** Every retained message, for persistence and tests. */
  all(): Message[] {
    const out: Message[] = [];
    const visit = (node: RetainedNode): void => {
      if (node.message) out.push(node.message);
      for (const child of node.children.values()) visit(child);
    };
    visit(this.root);
    return out;
  }

  /** Drops expired messages; returns how many. */
  sweep(now: number): number {
    let dropped = 0;
    for (const message of this.all()) {
      if (isExpired(message, now)) {
        this.delete(message.topic);
        dropped++;
      }
    }
    return dropped;
  }

  private walk(node: RetainedNode, levels: string[], depth: number, now: number, out: Message[]): void {
    if (depth === levels.length) {
      this.collect(node, now, out);
      return;
    }
    const level = levels[depth]!;
    if (level === '#') {
      // "a/#" includes "a" itself; [MQTT-4.7.2-1] no `$` topics under a leading wildcard.
      this.collect(node, now, out);
      for (const child of node.children.values()) {
        if (depth === 0 && child.level.startsWith('$')) continue;
        this.collectAll(child, now, out);
      }
      return;
    }
    if (level === '+') {
      for (const child of node.children.values()) {
        if (depth === 0 && child.level.startsWith('$')) continue;
        this.walk(child, levels, depth + 1, now, out);
      }
      return;
    }
    const child = node.children.get(level);
    if (child) this.walk(child, levels, depth + 1, now, out);
  }

  private collect(node: RetainedNode, now: number, out: Message[]): void {
    const message = node.message;
    if (!message) return;
    if (isExpired(message, now)) {
      this.delete(message.topic);
      return;
    }
    out.push(message);
  }

  private collectAll(node: RetainedNode, now: number, out: Message[]): void {
    this.collect(node, now, out);
    for (const child of [...node.children.values()]) this.collectAll(child, now, out);
  }

  private prune(node: RetainedNode): void {
    let current: RetainedNode | undefined = node;
    while (current?.parent && !current.message && current.children.size === 0) {
      current.parent.children.delete(current.level);
      current = current.parent;
    }
  }
}
