import { sleep, type Mark } from './flow.js';
import type { ConnectStormJob, ConnectStormResult, IdleJob, IdleResult } from './jobs.js';
import { RawClient } from './raw-client.js';
import { DISCONNECT } from './wire.js';

/**
 * Opens `connections` idle clients (at most `concurrency` handshakes at once), reports the connect rate, tells
 * the orchestrator they are held (it samples the broker's resident memory), and closes them on `release`.
 */
export async function runIdle(
  job: IdleJob,
  mark: Mark,
  held: (connected: number) => Promise<void>,
): Promise<IdleResult> {
  const errors: string[] = [];
  const clients: RawClient[] = [];
  let failed = 0;
  let next = 0;
  const cpuStart = process.cpuUsage();
  mark('window-start');
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (next < job.connections) {
      const k = next++;
      const { client, returnCode } = await RawClient.open(job.port, {
        clientId: `idle-${process.pid}-${k}`,
        keepalive: 600,
      });
      if (returnCode === 0) clients.push(client);
      else {
        failed++;
        client.close();
        if (errors.length < 5)
          errors.push(`connection ${k}: ${returnCode < 0 ? 'closed before CONNACK' : `CONNACK ${returnCode}`}`);
      }
    }
  };
  await Promise.all(Array.from({ length: job.concurrency }, worker));
  const connectMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpuStart);
  mark('window-end');
  const connected = clients.filter((c) => !c.closed).length;
  await held(connected);
  for (const c of clients) c.close();
  await sleep(50);
  return {
    kind: 'idle',
    requested: job.connections,
    connected,
    failed,
    connectMs,
    connectRate: (clients.length * 1000) / connectMs,
    loadgenCpu: (cpu.user + cpu.system) / 1000 / connectMs,
    errors,
  };
}

/** Known clients reconnecting as fast as `concurrency` allows: CONNECT, CONNACK, DISCONNECT, repeat. */
export async function runConnectStorm(job: ConnectStormJob, mark: Mark): Promise<ConnectStormResult> {
  const errors: string[] = [];
  let accepted = 0;
  let refused = 0;
  let failed = 0;
  const cpuStart = process.cpuUsage();
  mark('window-start');
  const t0 = performance.now();
  const deadline = t0 + job.durationMs;
  // Worker w is one known device: the same client id and credentials on every reconnect, as in a real storm
  // after a network blip (and what a verification cache keyed on the credential is for).
  const worker = async (_: unknown, w: number): Promise<void> => {
    const c = job.credentials.length > 0 ? job.credentials[w % job.credentials.length] : undefined;
    const clientId = `storm-${process.pid}-${w}`;
    while (performance.now() < deadline) {
      const { client, returnCode } = await RawClient.open(job.port, {
        clientId,
        ...(c ? { username: c.username, password: c.password } : {}),
      });
      if (returnCode === 0) {
        accepted++;
        client.socket.end(DISCONNECT);
      } else {
        if (returnCode < 0) failed++;
        else refused++;
        if (errors.length < 5) errors.push(returnCode < 0 ? 'closed before CONNACK' : `CONNACK ${returnCode}`);
        client.close();
      }
    }
  };
  await Promise.all(Array.from({ length: job.concurrency }, worker));
  const elapsed = performance.now() - t0;
  const cpu = process.cpuUsage(cpuStart);
  mark('window-end');
  return {
    kind: 'connect-storm',
    accepted,
    refused,
    failed,
    rate: (accepted * 1000) / elapsed,
    loadgenCpu: (cpu.user + cpu.system) / 1000 / elapsed,
    errors,
  };
}
