/** One scrape: the raw text and its samples (none unless 200), keyed by `name{label="value",...}`, labels sorted. */
export interface Scrape {
  status: number;
  text: string;
  samples: Map<string, number>;
}

/** A real HTTP GET of the metrics endpoint, as Prometheus makes it. */
export async function scrape(
  address: { host: string; port: number },
  options: { path?: string; token?: string } = {},
): Promise<Scrape> {
  const headers: Record<string, string> = {};
  if (options.token !== undefined) headers['authorization'] = `Bearer ${options.token}`;
  const response = await fetch(`http://${hostForUrl(address.host)}:${address.port}${options.path ?? '/metrics'}`, {
    headers,
  });
  const text = await response.text();
  // Only a 200 carries the exposition format; an error answer is plain text.
  return { status: response.status, text, samples: response.ok ? parseExposition(text) : new Map() };
}

function hostForUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** The Prometheus text format, enough for the broker's own output: `name{labels} value` lines, comments skipped. */
export function parseExposition(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`unparsable exposition line: ${line}`);
    const labels = [...(match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)]
      .map((m) => `${m[1]}="${m[2]}"`)
      .sort();
    samples.set(seriesKey(match[1] as string, labels), Number(match[3]));
  }
  return samples;
}

function seriesKey(name: string, labels: string[]): string {
  return labels.length === 0 ? name : `${name}{${labels.join(',')}}`;
}

/** The value of one series; undefined when the scrape does not have it. */
export function sample(s: Scrape, name: string, labels: Record<string, string> = {}): number | undefined {
  const pairs = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort();
  return s.samples.get(seriesKey(name, pairs));
}
