import { Writable } from 'node:stream';

/** A stream for pino that keeps every line it is given: parsed, and as written (to search for leaked values). */
export function jsonLogSink(): { sink: Writable; logs: Record<string, unknown>[]; raw: string[] } {
  const logs: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue;
        raw.push(line);
        logs.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  return { sink, logs, raw };
}
