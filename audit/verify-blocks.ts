import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { scanBlock, type ScanResult } from './verify-scan.js';

/** Bytes read per block; memory in use is about (blocks in flight + 2) times this. */
export const BLOCK_BYTES = 8 << 20;
/** Below this much log, starting threads costs more than it saves. */
const THREADS_FROM_BYTES = 32 << 20;

/** A block of complete lines, `buf[0, end)`, with the fast scan's findings. */
export interface ScannedBlock {
  buf: Buffer;
  end: number;
  result: ScanResult;
}

/** Scans blocks either on this thread or on worker threads (both cores of a small machine). */
export interface BlockScanner {
  /** How many blocks may be in flight at once. */
  readonly depth: number;
  allocate(size: number): Buffer;
  /** Scans `buf[0, end)`; the block comes back with the result (workers borrow its memory meanwhile). */
  scan(buf: Buffer, end: number): Promise<ScannedBlock>;
  close(): Promise<void>;
}

class InlineScanner implements BlockScanner {
  readonly depth = 1;
  allocate(size: number): Buffer {
    return Buffer.allocUnsafe(size);
  }
  scan(buf: Buffer, end: number): Promise<ScannedBlock> {
    return Promise.resolve({ buf, end, result: scanBlock(buf, 0, end) });
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

interface Pending {
  resolve: (block: ScannedBlock) => void;
  reject: (error: unknown) => void;
}

class WorkerScanner implements BlockScanner {
  readonly depth: number;
  private readonly workers: Worker[];
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;

  constructor(url: URL, threads: number) {
    this.depth = (threads + 1) * 2;
    this.workers = Array.from({ length: threads }, () => {
      const worker = new Worker(url);
      worker.on('message', (message: { id: number; memory: ArrayBuffer; end: number; result: ScanResult }) => {
        const p = this.pending.get(message.id);
        this.pending.delete(message.id);
        p?.resolve({ buf: Buffer.from(message.memory), end: message.end, result: message.result });
      });
      worker.on('error', (error: unknown) => this.failAll(error));
      worker.on('exit', (code) => {
        if (this.pending.size > 0) this.failAll(new Error(`verify worker exited with code ${code}`));
      });
      return worker;
    });
  }

  allocate(size: number): Buffer {
    // A whole ArrayBuffer of its own, so it can be transferred (not copied, not shared: copying out of shared
    // memory is several times slower).
    return Buffer.from(new ArrayBuffer(size));
  }

  scan(buf: Buffer, end: number): Promise<ScannedBlock> {
    const id = this.nextId++;
    // The calling thread takes its share of blocks too: on a two-core machine one worker and this thread keep both
    // cores busy without a third thread competing for them.
    const slot = id % (this.workers.length + 1);
    if (slot === this.workers.length) return Promise.resolve({ buf, end, result: scanBlock(buf, 0, end) });
    const worker = this.workers[slot] as Worker;
    const memory = buf.buffer as ArrayBuffer;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ id, memory, end }, [memory]);
    });
  }

  private failAll(error: unknown): void {
    for (const p of this.pending.values()) p.reject(error);
    this.pending.clear();
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/**
 * Worker threads run from the built JavaScript only (`dist/audit/verify-worker.js`); from TypeScript sources
 * (the test runner) the scan runs on the calling thread, with the same code.
 */
export function createBlockScanner(totalBytes: number, threads: number | undefined): BlockScanner {
  const wanted = threads ?? (totalBytes >= THREADS_FROM_BYTES ? Math.min(availableParallelism() - 1, 3) : 0);
  if (wanted < 1 || !import.meta.url.endsWith('.js')) return new InlineScanner();
  const url = new URL('./verify-worker.js', import.meta.url);
  if (!existsSync(fileURLToPath(url))) return new InlineScanner();
  return new WorkerScanner(url, wanted);
}

/**
 * Reads a file as blocks of complete lines, scanning up to `scanner.depth` blocks ahead, in order. What follows
 * the last newline (a torn tail, or a line being written) is left in `rest` once the iteration ends.
 */
export class FileBlocks {
  rest: Buffer = Buffer.alloc(0);

  constructor(
    private readonly path: string,
    private readonly scanner: BlockScanner,
    private readonly blockBytes = BLOCK_BYTES,
  ) {}

  async *blocks(): AsyncGenerator<ScannedBlock> {
    const fd = openSync(this.path, 'r');
    const inflight: Array<Promise<ScannedBlock>> = [];
    let carry: Buffer = Buffer.alloc(0);
    let position = 0;
    let eof = false;
    // Blocks already handed out and processed are reused, so memory stays at (depth + 2) blocks.
    const free: Buffer[] = [];
    let handedOut: Buffer | undefined;
    try {
      for (;;) {
        if (handedOut && handedOut.length === this.blockBytes) free.push(handedOut);
        handedOut = undefined;
        while (!eof && inflight.length < this.scanner.depth) {
          // A line longer than a block grows the next block instead of splitting the line.
          const size = Math.max(this.blockBytes, carry.length * 2);
          const buf = (size === this.blockBytes ? free.pop() : undefined) ?? this.scanner.allocate(size);
          carry.copy(buf, 0);
          let filled = carry.length;
          while (filled < buf.length) {
            const n = readSync(fd, buf, filled, buf.length - filled, position);
            if (n === 0) {
              eof = true;
              break;
            }
            position += n;
            filled += n;
          }
          const lastNewline = filled === 0 ? -1 : buf.lastIndexOf(0x0a, filled - 1);
          // A copy: the block itself may be handed to a worker.
          carry = Buffer.from(buf.subarray(lastNewline + 1, filled));
          if (lastNewline === -1) continue;
          inflight.push(this.scanner.scan(buf, lastNewline + 1));
        }
        const next = inflight.shift();
        if (!next) break;
        const block = await next;
        handedOut = block.buf;
        yield block;
      }
    } finally {
      // Leave no scan result unobserved if the caller stopped early (a broken record ends verification).
      for (const p of inflight) p.catch(() => undefined);
      closeSync(fd);
    }
    this.rest = carry;
  }
}
