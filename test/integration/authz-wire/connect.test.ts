import type { IDisconnectPacket } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import type { ChainResult, ConnectAttempt, ConnectAuthenticator, Identity } from '../../../authn/types.js';
import type { AuditEvent } from '../../../audit/events.js';
import type { AccessRequest, Authorizer, AuthzDecision } from '../../../authz/types.js';
import { startBroker } from '../../helpers/broker.js';
import { connectClient, endAll, waitClientClosed, type Connected } from '../../helpers/mqtt-clients.js';
import { startPolicyBroker, type PolicyBroker } from '../../helpers/policy-broker.js';
import { RawClient, connectPacket } from '../../helpers/raw-client.js';

const BASE = `version: 1
rules:
  - name: banned-clients
    deny: connect
    subjects: { clients: ['banned-*'] }
    why: These clients are refused whatever else allows them.

  - name: known-clients-connect
    allow: connect
    subjects: { clients: ['keeper-*', 'doomed-*', 'banned-*'] }

  - name: chat
    allow: [publish, subscribe, receive]
    subjects: all
    topics: ['chat/#']
`;

/** The doomed-* clients lose their connect rule; nothing else changes. */
const WITHOUT_DOOMED = BASE.replace(
  "clients: ['keeper-*', 'doomed-*', 'banned-*']",
  "clients: ['keeper-*', 'banned-*']",
);

/** The doomed-* clients are named by a deny rule. */
const DOOMED_DENIED = `${BASE}
  - name: doomed-cut-off
    deny: connect
    subjects: { clients: ['doomed-*'] }
`;

async function waitFor(done: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !done(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!done()) throw new Error(`timed out waiting for ${what}`);
}

/** The CONNECT error mqtt.js reports: its code is the CONNACK reason code (5) or return code (3.1.1). */
async function refusal(url: string, clientId: string, protocolVersion: 4 | 5): Promise<number | undefined> {
  return connectClient(url, { clientId, protocolVersion }).then(
    async (c) => {
      await endAll(c.client);
      return 0;
    },
    (e: { code?: number }) => e.code,
  );
}

describe('the connect action over the wire', () => {
  let pb: PolicyBroker | undefined;
  const clients: Connected[] = [];
  afterEach(async () => {
    await endAll(...clients.splice(0).map((c) => c.client));
    await pb?.stop();
    pb = undefined;
  });

  async function connect(clientId: string, protocolVersion: 4 | 5): Promise<Connected> {
    const c = await connectClient(pb!.broker.url, { clientId, protocolVersion });
    clients.push(c);
    return c;
  }

  const audits = (action: string, clientId: string): AuditEvent[] =>
    pb!.broker.audit.events.filter((e) => e.event.action === action && e.mqtt?.client_id === clientId);

  describe('at CONNECT', () => {
    it.each([
      [5, 0x87],
      [4, 0x05],
    ] as const)(
      'refuses an MQTT %i client no rule allows to connect with %i, naming default-deny',
      async (version, code) => {
        pb = await startPolicyBroker({ policy: BASE });
        const clientId = `stranger-v${version}`;
        expect(await refusal(pb.broker.url, clientId, version)).toBe(code);
        const denied = await pb.broker.waitForAudit('authz.connect_denied', (e) => e.mqtt?.client_id === clientId);
        expect(denied).toMatchObject({
          event: { outcome: 'failure', code: 'notAuthorized', reason: 'no rule matched (default deny)' },
          client: { ip: '127.0.0.1' },
          mqtt: { listener: 'test', protocol_version: version, reason_code: code },
          authz: { rule: 'default-deny', rule_name: 'default-deny', action: 'connect' },
        });
        // The refused connection is also the one authentication decision for this CONNECT, made by the broker.
        const authn = await pb.broker.waitForAudit('authn.denied', (e) => e.mqtt?.client_id === clientId);
        expect(authn).toMatchObject({ event: { code: 'notAuthorized' }, authn: { by: 'broker' } });
        expect(audits('authn.allowed', clientId)).toEqual([]);
        expect(pb.broker.server.broker.sessions.has(clientId)).toBe(false);
        await pb.broker.waitForLog(
          (l) =>
            l.msg === 'connection refused: not allowed to connect by the authorization policy' &&
            l.clientId === clientId,
        );
      },
    );

    it.each([5, 4] as const)(
      'refuses an MQTT %i client a deny rule names although an allow rule also matches, naming the deny rule',
      async (version) => {
        pb = await startPolicyBroker({ policy: BASE });
        const clientId = `banned-v${version}`;
        expect(await refusal(pb.broker.url, clientId, version)).toBe(version === 5 ? 0x87 : 0x05);
        const denied = await pb.broker.waitForAudit('authz.connect_denied', (e) => e.mqtt?.client_id === clientId);
        expect(denied.authz).toMatchObject({
          rule: pb.rule('banned-clients'),
          rule_name: 'banned-clients',
          source: 'file',
        });
      },
    );

    it('accepts a client an allow rule names, with no connect record', async () => {
      pb = await startPolicyBroker({ policy: BASE });
      const c = await connect('keeper-1', 5);
      expect(c.connack.reasonCode ?? 0).toBe(0);
      await pb.broker.waitForAudit('authn.allowed', (e) => e.mqtt?.client_id === 'keeper-1');
      expect(pb.broker.audit.events.some((e) => e.event.action === 'authz.connect_denied')).toBe(false);
    });
  });

  describe('after a policy swap', () => {
    /** keeper-5 subscribed to chat/#, doomed-5 (MQTT 5) and doomed-4 (3.1.1) connected. */
    async function population(): Promise<{ keeper: Connected; doomed5: Connected; doomed4: Connected }> {
      const keeper = await connect('keeper-5', 5);
      await keeper.client.subscribeAsync('chat/#', { qos: 1 });
      const doomed5 = await connect('doomed-5', 5);
      await doomed5.client.subscribeAsync('chat/#', { qos: 1 });
      const doomed4 = await connect('doomed-4', 4);
      return { keeper, doomed5, doomed4 };
    }

    it('disconnects clients whose connect rule was removed (file change): DISCONNECT 0x87 on MQTT 5, a close on 3.1.1; others keep receiving', async () => {
      pb = await startPolicyBroker({ policy: BASE, authorization: { watch: true, reload_debounce_ms: 20 } });
      const { keeper, doomed5, doomed4 } = await population();
      const disconnect = new Promise<IDisconnectPacket>((resolve) => doomed5.client.once('disconnect', resolve));
      const closed4 = waitClientClosed(doomed4.client);

      pb.rewrite(WITHOUT_DOOMED);
      const packet = await disconnect;
      expect(packet.reasonCode).toBe(0x87);
      expect(packet.properties?.reasonString).toBe('connection no longer allowed by the authorization policy');
      await closed4;
      await waitClientClosed(doomed5.client);

      for (const [clientId, version] of [
        ['doomed-5', 5],
        ['doomed-4', 4],
      ] as const) {
        const revoked = await pb.broker.waitForAudit('authz.connection_revoked', (e) => e.mqtt?.client_id === clientId);
        expect(revoked).toMatchObject({
          event: { outcome: 'failure', code: 'notAuthorized', reason: 'no rule matched (default deny)' },
          client: { ip: '127.0.0.1' },
          mqtt: { listener: 'test', protocol_version: version },
          authz: { rule: 'default-deny', action: 'connect' },
        });
        expect(revoked.mqtt?.reason_code).toBe(version === 5 ? 0x87 : undefined);
        // Recorded before the connection's end, which is recorded as well.
        const disconnected = await pb.broker.waitForAudit('client.disconnected', (e) => e.mqtt?.client_id === clientId);
        const events = pb.broker.audit.events;
        expect(events.indexOf(revoked)).toBeLessThan(events.indexOf(disconnected));
      }
      expect(audits('authz.connection_revoked', 'keeper-5')).toEqual([]);

      // The client still allowed stays connected and keeps its subscription.
      expect(keeper.client.connected).toBe(true);
      const publisher = await connect('keeper-pub', 5);
      await publisher.client.publishAsync('chat/after-swap', 'still here', { qos: 1 });
      expect((await keeper.received.waitForTopic('chat/after-swap')).payload).toBe('still here');
      // And the revoked ones cannot come back.
      expect(await refusal(pb.broker.url, 'doomed-5', 5)).toBe(0x87);
    });

    it('disconnects clients a new deny rule names after reloadPolicy, naming that rule', async () => {
      pb = await startPolicyBroker({ policy: BASE });
      const { keeper, doomed5, doomed4 } = await population();
      const disconnect = new Promise<IDisconnectPacket>((resolve) => doomed5.client.once('disconnect', resolve));
      pb.rewrite(DOOMED_DENIED);
      await pb.broker.server.reloadPolicy('sighup');
      expect((await disconnect).reasonCode).toBe(0x87);
      await waitClientClosed(doomed4.client);
      for (const clientId of ['doomed-5', 'doomed-4']) {
        const revoked = await pb.broker.waitForAudit('authz.connection_revoked', (e) => e.mqtt?.client_id === clientId);
        expect(revoked.authz).toMatchObject({
          rule: pb.rule('doomed-cut-off'),
          rule_name: 'doomed-cut-off',
          source: 'file',
          action: 'connect',
        });
      }
      expect(keeper.client.connected).toBe(true);
      expect([...pb.broker.server.broker.sessions.get('keeper-5')!.subscriptions.keys()]).toEqual(['chat/#']);
    });

    it('keeps everyone connected when the policy still allows them, and still revokes subscriptions it no longer allows', async () => {
      pb = await startPolicyBroker({ policy: BASE });
      const { keeper, doomed5 } = await population();
      pb.rewrite(BASE.replace("topics: ['chat/#']", "topics: ['chat/public/#']"));
      await pb.broker.server.reloadPolicy('cli');
      await pb.broker.waitForAudit('authz.subscription_revoked', (e) => e.mqtt?.client_id === 'keeper-5');
      expect(pb.broker.audit.events.some((e) => e.event.action === 'authz.connection_revoked')).toBe(false);
      expect(keeper.client.connected).toBe(true);
      expect(doomed5.client.connected).toBe(true);
    });
  });

  describe('a policy change while a CONNECT is being decided', () => {
    it('re-checks the client right after its CONNACK and disconnects it if the new answer is no', async () => {
      // An authorizer implementing the real interface whose first connect answer is held back, as a slow SQL
      // source's would be; `allowed` is what the "policy" says at the moment of each check.
      let allowed = true;
      let release: (() => void) | undefined;
      let asked = 0;
      const authorizer: Authorizer = {
        check(req: AccessRequest): AuthzDecision | Promise<AuthzDecision> {
          if (req.action !== 'connect') return { allowed: true, reason: 'topics are not under test' };
          asked++;
          const decision: AuthzDecision = allowed
            ? { allowed: true, reason: 'allowed', rule: { source: 'test', name: 'gate', location: 'gate.yaml:1' } }
            : { allowed: false, reason: 'revoked', rule: { source: 'test', name: 'gate', location: 'gate.yaml:1' } };
          if (asked > 1) return decision;
          return new Promise((resolve) => (release = () => resolve(decision)));
        },
        onChange: () => undefined,
        invalidate: () => undefined,
      };
      const broker = await startBroker({ authorizer });
      try {
        const client = await RawClient.connect(broker.port, 5);
        client.send(connectPacket('in-flight', { protocolVersion: 5 }), 5);
        await waitFor(() => release !== undefined, 'the connect check');
        // The swap lands while the first answer (allow, from the old policy) is still on its way.
        allowed = false;
        broker.server.broker.reevaluateAuthorization();
        release!();
        expect((await client.next('connack')).reasonCode).toBe(0);
        const disconnect = await client.next('disconnect');
        expect(disconnect.reasonCode).toBe(0x87);
        await client.waitClosed();
        const revoked = await broker.waitForAudit('authz.connection_revoked', (e) => e.mqtt?.client_id === 'in-flight');
        expect(revoked.authz).toMatchObject({ rule: 'gate.yaml:1', action: 'connect' });
        expect(asked).toBe(2);
      } finally {
        await broker.stop();
      }
    });
  });

  describe('after an MQTT 5 re-authentication', () => {
    /**
     * A real ConnectAuthenticator for method TEST-GROUPS: the authentication data names the client's group, so a
     * re-authentication (AUTH 0x19) can change the identity's groups while the user name stays the same.
     */
    const groupsAuthenticator: ConnectAuthenticator = {
      authenticate(attempt: ConnectAttempt): Promise<ChainResult> {
        const group = attempt.authData?.toString('utf8') ?? '';
        const identity: Identity = {
          clientId: attempt.clientId,
          username: 'pat',
          groups: [group],
          attributes: {},
          superuser: false,
          anonymous: false,
          authenticator: 'test-groups',
        };
        return Promise.resolve({ kind: 'allow', identity, steps: [] });
      },
      continueExchange(): Promise<ChainResult> {
        return Promise.resolve({
          kind: 'deny',
          reason: 'protocolError',
          detail: 'single round',
          decidedBy: 'test',
          steps: [],
        });
      },
      supportsMethod: (method) => method === 'TEST-GROUPS',
    };

    const STAFF_ONLY = `version: 1
rules:
  - name: staff-connect
    allow: connect
    subjects: { groups: [staff] }
`;

    async function connectAs(group: string): Promise<RawClient> {
      const client = await RawClient.connect(pb!.broker.port, 5);
      client.send(
        connectPacket('pat-1', {
          protocolVersion: 5,
          properties: { authenticationMethod: 'TEST-GROUPS', authenticationData: Buffer.from(group) },
        }),
        5,
      );
      expect((await client.next('connack')).reasonCode).toBe(0);
      return client;
    }

    const reauthenticate = (client: RawClient, group: string): void =>
      client.send(
        {
          cmd: 'auth',
          reasonCode: 0x19,
          properties: { authenticationMethod: 'TEST-GROUPS', authenticationData: Buffer.from(group) },
        },
        5,
      );

    it('disconnects with 0x87 a client whose new identity may not connect, recording the revocation', async () => {
      pb = await startPolicyBroker({ policy: STAFF_ONLY, authenticator: groupsAuthenticator });
      const client = await connectAs('staff');
      reauthenticate(client, 'visitors');
      const disconnect = await client.next('disconnect');
      expect(disconnect.reasonCode).toBe(0x87);
      await client.waitClosed();
      expect(client.packets.some((p) => p.cmd === 'auth')).toBe(false);
      const revoked = await pb.broker.waitForAudit('authz.connection_revoked', (e) => e.mqtt?.client_id === 'pat-1');
      expect(revoked.authz).toMatchObject({ rule: 'default-deny', action: 'connect' });
      const events = pb.broker.audit.events;
      const reauth = events.findIndex((e) => e.event.action === 'authn.reauth_allowed');
      expect(reauth).toBeGreaterThanOrEqual(0);
      expect(reauth).toBeLessThan(events.indexOf(revoked));
    });

    it('removes subscriptions the new identity may no longer receive, keeping the others', async () => {
      const policy = `version: 1
rules:
  - name: anyone-connect
    allow: connect
    subjects: all
  - name: staff-board
    allow: [subscribe, receive]
    subjects: { groups: [staff] }
    topics: ['board/#']
  - name: everyone-news
    allow: [subscribe, receive]
    subjects: all
    topics: ['news/#']
`;
      pb = await startPolicyBroker({ policy, authenticator: groupsAuthenticator });
      const client = await connectAs('staff');
      client.send(
        {
          cmd: 'subscribe',
          messageId: 1,
          subscriptions: [
            { topic: 'board/#', qos: 0 },
            { topic: 'news/#', qos: 0 },
          ],
        },
        5,
      );
      expect((await client.next('suback')).granted).toEqual([0, 0]);
      reauthenticate(client, 'visitors');
      expect((await client.next('auth')).reasonCode).toBe(0);
      const revoked = await pb.broker.waitForAudit('authz.subscription_revoked', (e) => e.mqtt?.client_id === 'pat-1');
      expect(revoked.mqtt?.topic).toBe('board/#');
      const session = pb.broker.server.broker.sessions.get('pat-1')!;
      expect([...session.subscriptions.keys()]).toEqual(['news/#']);
      expect(client.closed).toBe(false);
      client.end();
    });

    it('answers AUTH success and stays connected when the new identity may still connect', async () => {
      pb = await startPolicyBroker({ policy: STAFF_ONLY, authenticator: groupsAuthenticator });
      const client = await connectAs('staff');
      reauthenticate(client, 'staff');
      expect((await client.next('auth')).reasonCode).toBe(0);
      expect(client.closed).toBe(false);
      expect(pb.broker.audit.events.some((e) => e.event.action === 'authz.connection_revoked')).toBe(false);
      client.end();
    });
  });
});
