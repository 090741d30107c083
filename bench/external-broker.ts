import { canConnect, type BrokerHandle, type StartOutcome } from './brokers.js';
import { allowedCores, listeningPids, processCommand } from './proc.js';
import { connectCode } from './probe.js';

/** A broker someone else started (`--against external:PORT`): measured as it runs, never started or stopped. */
export interface ExternalBroker {
  /** Its column in the table (`--external-name`). */
  name: string;
  port: number;
  /** Its process, for CPU and memory readings; undefined when it could not be found. */
  pid: number | undefined;
  /** Its command name (`/proc/PID/comm`), so a reader sees which process was measured (a proxy, say). */
  command: string | undefined;
  /** `--external-pid`, or found as the process holding the listening socket. */
  pidFrom: 'option' | 'listening socket' | undefined;
  /** What a reader of the results must know about how it was measured. */
  notes: string[];
}

/** How long the check's CONNECT waits for a CONNACK: something that listens but is no MQTT broker may never answer. */
const CONNACK_WAIT_MS = 5_000;

/**
 * Checks, before any run, that an MQTT broker accepts the bench's anonymous clients on 127.0.0.1:`port`, and finds
 * its process. A run that would measure nothing but Bulwark for twenty minutes is refused with the reason.
 */
export async function inspectExternal(
  name: string,
  port: number,
  pidOption: number | undefined,
  loadgenCore: string | undefined,
): Promise<{ ok: true; broker: ExternalBroker } | { ok: false; reason: string }> {
  const where = `${name} on 127.0.0.1:${port}`;
  if (!(await canConnect(port))) return { ok: false, reason: `${where}: nothing accepts connections there` };
  const code = await Promise.race([
    connectCode(port),
    new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), CONNACK_WAIT_MS).unref()),
  ]);
  if (code === 'timeout' || code === -1)
    return {
      ok: false,
      reason: `${where}: no CONNACK to an MQTT 3.1.1 CONNECT (${code === 'timeout' ? `none within ${CONNACK_WAIT_MS / 1000} s` : 'the connection was closed'}): not an MQTT broker, or one that refuses MQTT 3.1.1`,
    };
  if (code !== 0)
    return {
      ok: false,
      reason: `${where}: refused an anonymous CONNECT (return code ${code}); the bench's clients carry no credentials, so the listener must admit anonymous clients`,
    };
  const notes = [
    `${name} was started by someone else: the bench does not restart it between runs, pin it to a core, raise its priority or stop it, and does not measure its first connect burst after a start`,
  ];
  let pid = pidOption;
  let pidFrom: ExternalBroker['pidFrom'] = pid === undefined ? undefined : 'option';
  if (pid !== undefined && processCommand(pid) === undefined)
    return { ok: false, reason: `--external-pid ${pid}: no such process` };
  if (pid === undefined) {
    const pids = listeningPids(port);
    pid = pids[0];
    if (pid === undefined)
      notes.push(
        `no process of this user listens on port ${port} (another user's, or one in a container): ${name}'s CPU and memory are not measured; give --external-pid`,
      );
    else pidFrom = 'listening socket';
    if (pids.length > 1)
      notes.push(`processes ${pids.join(', ')} all listen on port ${port}: only ${pid}'s CPU and memory are read`);
  }
  const command = pid === undefined ? undefined : processCommand(pid);
  if (pid !== undefined && loadgenCore !== undefined && allowedCores(pid)?.includes(Number(loadgenCore)))
    notes.push(
      `${name} (pid ${pid}, ${command ?? '?'}) may run on core ${loadgenCore}, where the load generator is pinned; for a side-by-side comparison pin it elsewhere (taskset -a -p -c 0 ${pid})`,
    );
  return { ok: true, broker: { name, port, pid, command, pidFrom, notes } };
}

/** A handle on the external broker for one run; its `stop` leaves the broker running, as it was found. */
export async function attachExternal(broker: ExternalBroker): Promise<StartOutcome> {
  if (!(await canConnect(broker.port)))
    return { ok: false, reason: `${broker.name} on 127.0.0.1:${broker.port} no longer accepts connections` };
  const handle: BrokerHandle = {
    kind: 'external',
    pid: broker.pid,
    port: broker.port,
    dir: '',
    stop: () => Promise.resolve(),
    output: () => '',
  };
  return { ok: true, broker: handle };
}
