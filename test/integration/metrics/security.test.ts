import { chmodSync, mkdirSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { pino } from 'pino';
import { MemoryAuditSink } from '../../../audit/events.js';
import { loadConfigFile } from '../../../src/config/load.js';
import { configSchema } from '../../../src/config/schema.js';
import { BulwarkError } from '../../../src/errors.js';
import { MAX_CONNECTIONS } from '../../../src/metrics/endpoint.js';
import { BulwarkServer } from '../../../src/server.js';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { scrape, sample } from '../../helpers/metrics-scrape.js';
import { tempDir, type TempDir } from '../../helpers/policy-broker.js';
import { until } from '../../helpers/until.js';

const TOKEN = 'zq-scrape-token-4b9e7c0d2a61f385';

describe('metrics endpoint security', () => {
  let broker: TestBroker | undefined;
  let dir: TempDir | undefined;
  let blocker: Server | undefined;
  afterEach(async () => {
    await broker?.stop();
    broker = undefined;
    dir?.cleanup();
    dir = undefined;
    await new Promise<void>((resolve) => (blocker ? blocker.close(() => resolve()) : resolve()));
    blocker = undefined;
  });

  function tokenFile(text: string, mode = 0o600): string {
    dir ??= tempDir('bulwark-metrics-');
    const file = dir.write('metrics.token', text);
    chmodSync(file, mode);
    return file;
  }

  it('with bearer_token_file: 401 with WWW-Authenticate without the token or with a wrong one, 200 with it', async () => {
    broker = await startBroker({
      config: { metrics: { enabled: true, port: 0, bearer_token_file: tokenFile(`${TOKEN}\n`) } },
    });
    const address = broker.server.metricsAddress!;
    const url = `http://${address.host}:${address.port}/metrics`;
    const missing = await fetch(url);
    expect(missing.status).toBe(401);
    expect(missing.headers.get('www-authenticate')).toMatch(/^Bearer\b/);
    expect(await missing.text()).not.toContain('bulwark_');
    const wrong = await scrape(address, { token: `${TOKEN.slice(0, -1)}x` });
    expect(wrong.status).toBe(401);
    expect(wrong.text).not.toContain('bulwark_');
    const basic = await fetch(url, {
      headers: { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` },
    });
    expect(basic.status).toBe(401);
    const right = await scrape(address, { token: TOKEN });
    expect(right.status).toBe(200);
    expect(sample(right, 'bulwark_clients_connected')).toBe(0);
    // Neither the token nor a guess at it reaches the log.
    expect(JSON.stringify(broker.logs)).not.toContain(TOKEN.slice(0, 20));
    // Each refusal is an audit record a reviewer can attribute (without the header's value); the scrape that
    // succeeded is none.
    const refusals = broker.audit.events.filter((e) => e.event.action === 'metrics.scrape_refused');
    expect(refusals.map((e) => [e.event.code, e.event.outcome, e.client?.ip])).toEqual([
      ['missing_token', 'failure', '127.0.0.1'],
      ['wrong_token', 'failure', '127.0.0.1'],
      ['missing_token', 'failure', '127.0.0.1'],
    ]);
    expect(JSON.stringify(refusals)).not.toContain(TOKEN.slice(0, 20));
    expect(broker.logs.filter((l) => l['msg'] === 'metrics scrape refused')).toHaveLength(3);
    const listening = broker.logs.find((l) => l['msg'] === 'metrics endpoint listening');
    expect(listening).toMatchObject({ auth: 'bearer', path: '/metrics' });
  });

  it('a guessing loop is bounded in the audit log as other repeatable refusals are, and every guess is counted', async () => {
    broker = await startBroker({
      config: {
        metrics: { enabled: true, port: 0, bearer_token_file: tokenFile(`${TOKEN}\n`) },
        audit: { refusals: { burst: 2 } },
      },
    });
    const address = broker.server.metricsAddress!;
    const guesses = 12;
    for (let i = 0; i < guesses; i++)
      expect((await scrape(address, { token: `guess-${i}-${TOKEN}` })).status).toBe(401);
    expect(broker.audit.events.filter((e) => e.event.action === 'metrics.scrape_refused')).toHaveLength(2);
    broker.server.broker.refusals.flush();
    const summary = await broker.waitForAudit(
      'audit.refusals_suppressed',
      (e) => e.audit?.action === 'metrics.scrape_refused' && e.event.code === 'wrong_token',
    );
    expect(summary.audit?.recorded).toBe(2);
    expect(summary.audit?.suppressed).toBe(guesses - 2);
  });

  it('refuses a token file others can read, and a token too short to resist guessing, at start', async () => {
    await expect(
      startBroker({ config: { metrics: { enabled: true, port: 0, bearer_token_file: tokenFile(TOKEN, 0o644) } } }),
    ).rejects.toThrow(/metrics\.bearer_token_file .*readable or writable by group or others/);
    await expect(
      startBroker({ config: { metrics: { enabled: true, port: 0, bearer_token_file: tokenFile('short\n') } } }),
    ).rejects.toThrow(/metrics\.bearer_token_file .*16 to 4096 characters/);
  });

  it('config check refuses a host that is not loopback without bearer_token_file, naming file:line:column', () => {
    dir = tempDir('bulwark-metrics-');
    const open = dir.write('bulwark.yaml', 'listeners:\n  - port: 1883\nmetrics:\n  enabled: true\n  host: 0.0.0.0\n');
    let error: unknown;
    try {
      loadConfigFile(open);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(BulwarkError);
    expect((error as BulwarkError).describe()).toMatch(
      /bulwark\.yaml:5:\d+: .*metrics on 0\.0\.0\.0 \(not loopback\) need bearer_token_file/,
    );
    // Loopback in any spelling needs no token; a token makes any address acceptable.
    for (const host of ['127.0.0.1', '127.8.9.10', '::1', '::ffff:127.0.0.1', 'localhost'])
      expect(
        loadConfigFile(
          dir.write('loopback.yaml', `listeners:\n  - port: 1883\nmetrics:\n  enabled: true\n  host: '${host}'\n`),
        ).metrics.host,
      ).toBe(host);
    const withToken = dir.write(
      'token.yaml',
      'listeners:\n  - port: 1883\nmetrics:\n  enabled: true\n  host: 0.0.0.0\n  bearer_token_file: metrics.token\n',
    );
    expect(loadConfigFile(withToken).metrics.bearer_token_file).toBe('metrics.token');
    // Disabled, the address exposes nothing.
    const disabled = dir.write('disabled.yaml', 'listeners:\n  - port: 1883\nmetrics:\n  host: 0.0.0.0\n');
    expect(loadConfigFile(disabled).metrics.enabled).toBe(false);
  });

  it('a metrics port in use fails the start with an error naming metrics.port', async () => {
    blocker = createServer();
    const port = await new Promise<number>((resolve) =>
      blocker!.listen(0, '127.0.0.1', () => resolve((blocker!.address() as { port: number }).port)),
    );
    const start = startBroker({ config: { metrics: { enabled: true, port } } });
    await expect(start).rejects.toThrow(BulwarkError);
    await expect(start).rejects.toThrow(`metrics.port: 127.0.0.1:${port} is already in use`);
  });

  it('holds at most MAX_CONNECTIONS sockets: each one beyond closes an idle one at once, and it serves again after', async () => {
    broker = await startBroker({ config: { metrics: { enabled: true, port: 0 } } });
    const address = broker.server.metricsAddress!;
    let closed = 0;
    // Idle sockets, as a slow or hostile client leaves them: without the cap none would close before the timeout.
    const sockets = Array.from({ length: MAX_CONNECTIONS + 4 }, () => {
      const socket = connect(address.port, address.host);
      socket.on('error', () => undefined);
      socket.once('close', () => closed++);
      return socket;
    });
    await until(() => closed >= 4, 'the sockets beyond the cap closed');
    for (const socket of sockets) socket.destroy();
    // The server notices the closes on its own turn: asked again until it has.
    await vi.waitFor(async () => expect((await scrape(address)).status).toBe(200));
  });

  it('a client holding MAX_CONNECTIONS idle sockets does not lock the scraper out: its oldest socket makes room', async () => {
    broker = await startBroker({
      config: { metrics: { enabled: true, port: 0, bearer_token_file: tokenFile(`${TOKEN}\n`) } },
    });
    const address = broker.server.metricsAddress!;
    // Connected and silent, as a slowloris leaves them: no token is needed to hold a socket.
    const held = await Promise.all(
      Array.from(
        { length: MAX_CONNECTIONS },
        () =>
          new Promise<Socket>((resolve, reject) => {
            const socket = connect(address.port, address.host, () => resolve(socket));
            socket.once('error', reject);
          }),
      ),
    );
    const closed = held.map((socket) => {
      socket.on('error', () => undefined);
      return new Promise<void>((resolve) => socket.once('close', () => resolve()));
    });
    try {
      const answer = await scrape(address, { token: TOKEN });
      expect(answer.status).toBe(200);
      // The oldest held socket was the one closed for it.
      await closed[0];
      expect(held.slice(1).every((socket) => !socket.destroyed)).toBe(true);
    } finally {
      for (const socket of held) socket.destroy();
    }
  });

  it('neither the endpoint nor a listener outlives a start that fails after they opened', async () => {
    dir = tempDir('bulwark-metrics-');
    // Too long a path for the control socket, which opens after the endpoint and the listeners.
    const dataDir = dir.file('d'.repeat(110));
    mkdirSync(dataDir, { mode: 0o700 });
    // A port known free, so that the endpoint's can be tried after the failure (its address is not kept).
    blocker = createServer();
    const metricsPort = await new Promise<number>((resolve) =>
      blocker!.listen(0, '127.0.0.1', () => resolve((blocker!.address() as { port: number }).port)),
    );
    await new Promise<void>((resolve) => blocker!.close(() => resolve()));
    blocker = undefined;
    const server = new BulwarkServer({
      config: configSchema.parse({
        data_dir: dataDir,
        persistence: { durability: 'none' },
        authentication: { anonymous: true },
        metrics: { enabled: true, port: metricsPort },
        listeners: [{ host: '127.0.0.1', port: 0 }],
      }),
      log: pino({ level: 'silent' }),
      audit: new MemoryAuditSink(),
    });
    await expect(server.start()).rejects.toThrow(/admin socket path .* is too long/);
    const mqttPort = server.listeners[0]!.address!.port;
    expect(server.metricsAddress).toBeUndefined();
    for (const port of [metricsPort, mqttPort]) {
      const refused = await new Promise<string | undefined>((resolve) => {
        const socket = connect(port, '127.0.0.1', () => {
          socket.destroy();
          resolve(undefined);
        });
        socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code));
      });
      expect(refused, `port ${port}`).toBe('ECONNREFUSED');
    }
  });
});
