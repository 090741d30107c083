import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type { WindowReading } from './loadgen/jobs.js';

/** Clock ticks per second of /proc/PID/stat times; 100 on every Linux we run on (`getconf CLK_TCK`). */
const CLK_TCK = 100;

/** Whether this kernel keeps per-thread schedstats; decided once, so every reading of a run has the same basis. */
const HAS_SCHEDSTAT = existsSync('/proc/self/schedstat');

/**
 * CPU time of a process (all its threads) in milliseconds, or undefined if it is gone: the sum of its threads'
 * time on a CPU from `/proc/PID/task/TID/schedstat`, in nanoseconds. `/proc/PID/stat` counts in clock ticks (10 ms),
 * too coarse for a burst of 500 connects that costs the broker about 15 ms; it is used only on a kernel without
 * schedstats. The two are never mixed within a run: a window's start and end readings are differenced.
 */
export function processCpuMs(pid: number): number | undefined {
  return HAS_SCHEDSTAT ? processCpuMsFromThreads(pid) : processCpuMsFromTicks(pid);
}

function processCpuMsFromThreads(pid: number): number | undefined {
  let threads: string[];
  try {
    threads = readdirSync(`/proc/${pid}/task`);
  } catch {
    return undefined;
  }
  let ns = 0;
  for (const tid of threads) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // The thread ended between the listing and this read.
    }
  }
  return ns / 1e6;
}

function processCpuMsFromTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may contain spaces and parentheses: fields are counted after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return ((utime + stime) * 1000) / CLK_TCK;
  } catch {
    return undefined;
  }
}

/** Resident set size of a process in bytes (VmRSS), or undefined if it is gone. */
export function processRssBytes(pid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(status);
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** The soft and hard RLIMIT_NOFILE of a process. */
export function openFileLimit(pid: number | 'self' = 'self'): { soft: number; hard: number } | undefined {
  try {
    const limits = readFileSync(`/proc/${pid}/limits`, 'utf8');
    const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(limits);
    if (!m) return undefined;
    const n = (s: string | undefined): number => (s === 'unlimited' ? Infinity : Number(s));
    return { soft: n(m[1]), hard: n(m[2]) };
  } catch {
    return undefined;
  }
}

/**
 * Time the process's main thread spent runnable but waiting for a CPU, in milliseconds (second field of
 * /proc/PID/task/PID/schedstat). Only the main thread: helper threads pinned to the same core wait for it by
 * design. On a shared machine this shows how much other load distorted a run.
 */
export function processRunQueueWaitMs(pid: number): number | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').trim().split(' ');
    return Number(fields[1]) / 1e6;
  } catch {
    return undefined;
  }
}

/** The 1-minute load average. */
export function loadAverage(): number | undefined {
  try {
    return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
  } catch {
    return undefined;
  }
}

/**
 * The environment variable through which the orchestrator tells a load generator (Node or C) whose CPU to read
 * at its window marks.
 */
export const BROKER_PID_VARIABLE = 'BENCH_BROKER_PID';

/** The readings a load generator takes at a window mark; `brokerPid` undefined when it was not told one. */
export function windowReading(brokerPid: number | undefined, loadgenPid: number): WindowReading {
  const reading: WindowReading = { atMs: performance.now() };
  const cpu = brokerPid === undefined ? undefined : processCpuMs(brokerPid);
  const brokerWait = brokerPid === undefined ? undefined : processRunQueueWaitMs(brokerPid);
  const loadgenWait = processRunQueueWaitMs(loadgenPid);
  if (cpu !== undefined) reading.brokerCpuMs = cpu;
  if (brokerWait !== undefined) reading.brokerWaitMs = brokerWait;
  if (loadgenWait !== undefined) reading.loadgenWaitMs = loadgenWait;
  return reading;
}

/** TCP state "listening" in /proc/net/tcp. */
const TCP_LISTEN = '0A';

/**
 * The processes holding a socket that listens on `port` (any local address, IPv4 or IPv6), found as `ss -ltnp`
 * finds them: the socket's inode in /proc/net/tcp*, then the process whose descriptor links to it. Only processes
 * this user may inspect are seen (all of them as root). Sorted; empty when none is found.
 */
export function listeningPids(port: number): number[] {
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
      const fields = line.trim().split(/\s+/);
      const local = fields[1];
      if (fields[3] !== TCP_LISTEN || local === undefined || fields[9] === undefined) continue;
      if (parseInt(local.slice(local.lastIndexOf(':') + 1), 16) === port) inodes.add(fields[9]);
    }
  }
  if (inodes.size === 0) return [];
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue; // gone, or not ours to look into
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${entry}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m && inodes.has(m[1] as string)) {
        pids.push(Number(entry));
        break;
      }
    }
  }
  return pids.sort((a, b) => a - b);
}

/** The command name of a process (`/proc/PID/comm`), or undefined if it is gone. */
export function processCommand(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** The cores a process may run on (`Cpus_allowed_list`, e.g. `0-1,3` → [0, 1, 3]), or undefined if it is gone. */
export function allowedCores(pid: number): number[] | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const list = /^Cpus_allowed_list:\s*(\S+)$/m.exec(status)?.[1];
    if (list === undefined) return undefined;
    return list.split(',').flatMap((range) => {
      const [from, to] = range.split('-').map(Number) as [number, number | undefined];
      return Array.from({ length: (to ?? from) - from + 1 }, (_, i) => from + i);
    });
  } catch {
    return undefined;
  }
}
