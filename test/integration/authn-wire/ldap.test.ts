import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { closedPort, CODES, OPEN_POLICY, SecretLedger, tryConnect } from '../../helpers/authn-wire.js';
import type { TestBroker } from '../../helpers/broker.js';
import { tempDir, type TempDir } from '../../helpers/policy-broker.js';
import { SLAPD_SEED } from '../../helpers/services/slapd.js';

const provided = inject('slapd');
const slapd = 'missing' in provided ? undefined : provided;
const ledger = new SecretLedger();
for (const u of Object.values(SLAPD_SEED.users)) ledger.secret(u.password);
ledger.secret(SLAPD_SEED.service.password);
const wrongPw = ledger.password('wrong');

let dir: TempDir;
let broker: TestBroker | undefined;
let ldapsBroker: TestBroker | undefined;

let seq = 0;
const cid = (): string => `ldap-wire-${++seq}`;

const ldapStep = (url: string, extra: Record<string, unknown> = {}) => ({
  type: 'ldap',
  id: 'corp-ldap',
  url,
  user_dn_template: SLAPD_SEED.userDnTemplate,
  groups: { base_dn: SLAPD_SEED.groupsDn, schemas: ['groupOfNames', 'posixGroup'] },
  superuser_group: 'mqtt-admins',
  ...extra,
});

beforeAll(async () => {
  if (!slapd) return;
  dir = tempDir('bulwark-authn-wire-ldap-');
  const authorization = { watch: false, policy_files: [dir.write('open.policy.yaml', OPEN_POLICY)] };
  broker = await ledger.broker({
    config: {
      authentication: { anonymous: false, steps: [ldapStep(slapd.url, { allow_plaintext: true })] },
      authorization,
    },
  });
  if (slapd.ldapsUrl && slapd.caFile) {
    ldapsBroker = await ledger.broker({
      config: {
        authentication: {
          anonymous: false,
          steps: [ldapStep(slapd.ldapsUrl, { tls: { ca_file: slapd.caFile } })],
        },
        authorization,
      },
    });
  }
});

afterAll(async () => {
  for (const b of ledger.brokers) await b.stop();
  dir?.cleanup();
});

describe('LDAP bind through mqtt.js against a real slapd', () => {
  for (const v of [5, 4] as const) {
    it(`binds alice, reads her groups into the identity, and refuses a wrong password (MQTT ${v === 5 ? '5' : '3.1.1'})`, async (ctx) => {
      if (!broker) return ctx.skip('slapd missing');
      const clientId = cid();
      const ok = await tryConnect(broker.url, {
        protocolVersion: v,
        clientId,
        username: 'alice',
        password: SLAPD_SEED.users.alice.password,
      });
      expect(ok.code).toBe(0);
      await ok.client.endAsync();
      const e = await broker.waitForAudit('authn.allowed', (x) => x.mqtt?.client_id === clientId);
      expect(e).toMatchObject({ user: { name: 'alice' }, authn: { by: 'corp-ldap' } });
      expect(e.user?.groups).toEqual(expect.arrayContaining(['engineers', 'mqtt-admins']));

      const bad = await tryConnect(broker.url, {
        protocolVersion: v,
        clientId: cid(),
        username: 'alice',
        password: wrongPw,
      });
      expect(bad.code).toBe(CODES.badUserNameOrPassword[v]);
    });
  }

  it('refuses a locked account and a filter-injection user name', async (ctx) => {
    if (!broker) return ctx.skip('slapd missing');
    const locked = await tryConnect(broker.url, {
      protocolVersion: 5,
      clientId: cid(),
      username: 'dave',
      password: SLAPD_SEED.users.dave.password,
    });
    expect(locked.code).toBe(0x86);
    const injected = await tryConnect(broker.url, {
      protocolVersion: 5,
      clientId: cid(),
      username: 'alice,ou=people',
      password: SLAPD_SEED.users.alice.password,
    });
    expect(injected.code).toBe(0x86);
  });

  it('refuses to start a plain ldap:// step that would send passwords in clear unless allowed', async (ctx) => {
    if (!slapd) return ctx.skip('slapd missing');
    await expect(
      ledger.broker({ config: { authentication: { anonymous: false, steps: [ldapStep(slapd.url)] } } }),
    ).rejects.toThrow(/start_tls|ldaps/);
  });

  it('binds over LDAPS with the configured CA', async (ctx) => {
    if (!ldapsBroker) return ctx.skip('slapd has no LDAPS listener');
    const r = await tryConnect(ldapsBroker.url, {
      protocolVersion: 5,
      clientId: cid(),
      username: 'bob',
      password: SLAPD_SEED.users.bob.password,
    });
    expect(r.code).toBe(0);
    await r.client.endAsync();
  });
});

describe('a directory that cannot be reached', () => {
  for (const v of [5, 4] as const) {
    it(`fails closed with server unavailable (MQTT ${v === 5 ? '5' : '3.1.1'})`, async () => {
      const down = await ledger.broker({
        config: {
          authentication: {
            anonymous: true,
            steps: [
              ldapStep(`ldap://127.0.0.1:${await closedPort()}`, {
                allow_plaintext: true,
                connect_timeout_ms: 300,
                groups: undefined,
              }),
            ],
          },
        },
      });
      try {
        const r = await tryConnect(down.url, {
          protocolVersion: v,
          clientId: cid(),
          username: 'alice',
          password: SLAPD_SEED.users.alice.password,
        });
        expect(r.code).toBe(CODES.serverUnavailable[v]);
      } finally {
        await down.stop();
      }
    });
  }
});

describe('secrets', () => {
  it('never appear in any log line or audit event these tests produced', (ctx) => {
    if (!broker) return ctx.skip('slapd missing');
    expect(ledger.corpus().length).toBeGreaterThan(5);
    expect(ledger.leaks()).toEqual([]);
  });
});
