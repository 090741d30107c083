import { existsSync, readdirSync, readFileSync } from 'node:fs';
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
