import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type TestBroker } from '../../helpers/broker.js';
import { scrape, sample } from '../../helpers/metrics-scrape.js';
import { closedPort, tryConnect } from '../../helpers/authn-wire.js';

describe('metrics: backend availability', () => {
  let broker: TestBroker | undefined;
  afterEach(async () => {
    await broker?.stop();
    broker = undefined;
  });

  it('an authentication database and a SQL policy source read 1, and 0 once their breakers open', async () => {
    const port = await closedPort();
    broker = await startBroker({
      config: {
        metrics: { enabled: true, port: 0 },
        authentication: {
          anonymous: true,
          verification: { breaker_failure_threshold: 1, breaker_reset_ms: 3_600_000 },
          steps: [
            {
              type: 'postgres',
              id: 'users-db',
              port,
              database: 'iot',
              user: 'bulwark',
              query: 'SELECT password_hash FROM users WHERE username = ${username}',
              on_error: 'next',
            },
          ],
        },
        authorization: {
          watch: false,
          sources: [
            {
              type: 'postgres',
              id: 'acl-db',
              port,
              database: 'iot',
              user: 'bulwark',
              query: 'SELECT permission, action, topic FROM acl WHERE username = ${username}',
              breaker_failure_threshold: 1,
              breaker_reset_ms: 3_600_000,
            },
          ],
        },
      },
    });
    const address = broker.server.metricsAddress!;
    const backend = `postgres://bulwark@127.0.0.1:${port}/iot`;
    const before = await scrape(address);
    expect(sample(before, 'bulwark_authn_backend_up', { backend })).toBe(1);
    expect(sample(before, 'bulwark_authz_source_up', { source: 'acl-db' })).toBe(1);

    // A CONNECT with a password reaches the database step, which fails (on_error: next, then anonymous).
    const probe = await tryConnect(broker.url, {
      clientId: 'probe-1',
      username: 'alice',
      password: 'pw',
      protocolVersion: 5,
    });
    probe.client.end(true);
    await broker.waitForAudit('authn.backend_unavailable');
    // Every CONNECT asks the ACL table whether it may connect at all: it fails, so the client is refused (fail
    // closed) and the source fails fast from now on.
    const refused = await tryConnect(broker.url, { clientId: 'probe-2', protocolVersion: 5 });
    refused.client.end(true);
    expect(refused.code).toBe(0x87);
    await broker.waitForAudit('authz.source_unavailable');

    const after = await scrape(address);
    expect(sample(after, 'bulwark_authn_backend_up', { backend })).toBe(0);
    expect(sample(after, 'bulwark_authz_source_up', { source: 'acl-db' })).toBe(0);
  });
});
