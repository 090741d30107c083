import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../free-port.js';
import type { LdapServiceInfo, Started } from './types.js';

const run = promisify(execFile);

const SLAPD = '/usr/sbin/slapd';
const SLAPADD = '/usr/sbin/slapadd';
const LDAPADD = '/usr/bin/ldapadd';
const SCHEMA_DIR = '/etc/ldap/schema';
const MODULE_DIR = '/usr/lib/ldap';

/**
 * The seeded directory, so tests name users and groups without repeating literals. Passwords are test data
 * for a throw-away directory on loopback.
 */
export const SLAPD_SEED = {
  baseDn: 'dc=example,dc=com',
  peopleDn: 'ou=people,dc=example,dc=com',
  groupsDn: 'ou=groups,dc=example,dc=com',
  /** DN template for bind mode. */
  userDnTemplate: 'uid=${username},ou=people,dc=example,dc=com',
  service: { dn: 'cn=bulwark,ou=services,dc=example,dc=com', password: 'service-secret' },
  users: {
    alice: { password: 'alice-pass', mail: 'alice@example.com' },
    bob: { password: 'bob-pass', mail: 'bob@example.com' },
    carol: { password: 'carol-pass', mail: 'carol@example.com' },
    /** Locked with the ppolicy overlay (`pwdAccountLockedTime: 000001010000Z`): binds fail with 49. */
    dave: { password: 'dave-pass', mail: 'dave@example.com' },
  },
  /** groupOfNames/member, with the memberof overlay maintaining `memberOf` on the members. */
  groupOfNames: { engineers: ['alice', 'bob'], 'mqtt-admins': ['alice'] },
  groupOfUniqueNames: { operators: ['alice', 'carol'] },
  posixGroup: { sensors: ['bob', 'carol'] },
} as const;

const ROOT_DN = 'cn=admin,dc=example,dc=com';
const ROOT_PASSWORD = 'root-secret';

function userDn(uid: string): string {
  return `uid=${uid},${SLAPD_SEED.peopleDn}`;
}

function seedLdif(): string {
  const entries: string[] = [
    `dn: ${SLAPD_SEED.baseDn}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example`,
    `dn: ${SLAPD_SEED.peopleDn}\nobjectClass: organizationalUnit\nou: people`,
    `dn: ${SLAPD_SEED.groupsDn}\nobjectClass: organizationalUnit\nou: groups`,
    `dn: ou=services,${SLAPD_SEED.baseDn}\nobjectClass: organizationalUnit\nou: services`,
    `dn: ou=policies,${SLAPD_SEED.baseDn}\nobjectClass: organizationalUnit\nou: policies`,
    `dn: cn=default,ou=policies,${SLAPD_SEED.baseDn}\nobjectClass: pwdPolicy\nobjectClass: device\ncn: default\npwdAttribute: userPassword\npwdLockout: TRUE`,
    `dn: ${SLAPD_SEED.service.dn}\nobjectClass: simpleSecurityObject\nobjectClass: organizationalRole\ncn: bulwark\nuserPassword: ${SLAPD_SEED.service.password}`,
  ];
  for (const [uid, u] of Object.entries(SLAPD_SEED.users)) {
    const locked = uid === 'dave' ? '\npwdAccountLockedTime: 000001010000Z' : '';
    entries.push(
      `dn: ${userDn(uid)}\nobjectClass: inetOrgPerson\nuid: ${uid}\ncn: ${uid}\nsn: ${uid}\nmail: ${u.mail}\n` +
        `departmentNumber: dept-${uid}\nuserPassword: ${u.password}${locked}`,
    );
  }
  for (const [cn, members] of Object.entries(SLAPD_SEED.groupOfUniqueNames)) {
    entries.push(
      `dn: cn=${cn},${SLAPD_SEED.groupsDn}\nobjectClass: groupOfUniqueNames\ncn: ${cn}\n` +
        members.map((m) => `uniqueMember: ${userDn(m)}`).join('\n'),
    );
  }
  let gid = 5000;
  for (const [cn, members] of Object.entries(SLAPD_SEED.posixGroup)) {
    entries.push(
      `dn: cn=${cn},${SLAPD_SEED.groupsDn}\nobjectClass: posixGroup\ncn: ${cn}\ngidNumber: ${gid++}\n` +
        members.map((m) => `memberUid: ${m}`).join('\n'),
    );
  }
  return entries.join('\n\n') + '\n';
}

/** groupOfNames groups go in through the protocol (not slapadd) so the memberof overlay fills in `memberOf`. */
function groupOfNamesLdif(): string {
  return (
    Object.entries(SLAPD_SEED.groupOfNames)
      .map(
        ([cn, members]) =>
          `dn: cn=${cn},${SLAPD_SEED.groupsDn}\nobjectClass: groupOfNames\ncn: ${cn}\n` +
          members.map((m) => `member: ${userDn(m)}`).join('\n'),
      )
      .join('\n\n') + '\n'
  );
}

function slapdConf(dir: string): string {
  return `include ${SCHEMA_DIR}/core.schema
include ${SCHEMA_DIR}/cosine.schema
include ${SCHEMA_DIR}/inetorgperson.schema
include ${SCHEMA_DIR}/nis.schema
modulepath ${MODULE_DIR}
moduleload back_mdb
moduleload memberof
moduleload ppolicy
pidfile ${join(dir, 'slapd.pid')}
argsfile ${join(dir, 'slapd.args')}
TLSCACertificateFile ${join(dir, 'ca.pem')}
TLSCertificateFile ${join(dir, 'server.pem')}
TLSCertificateKeyFile ${join(dir, 'server-key.pem')}

database mdb
maxsize 33554432
suffix "${SLAPD_SEED.baseDn}"
rootdn "${ROOT_DN}"
rootpw ${ROOT_PASSWORD}
directory ${join(dir, 'data')}
index objectClass eq
index uid,cn,memberUid eq
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
overlay ppolicy
ppolicy_default "cn=default,ou=policies,${SLAPD_SEED.baseDn}"
ppolicy_use_lockout
access to attrs=userPassword by self write by anonymous auth by * none
access to * by users read by * none
`;
}

async function canConnect(port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** A throw-away CA and a server certificate for 127.0.0.1/localhost, minted with the openssl CLI. */
async function mintCertificates(dir: string): Promise<void> {
  const p = (f: string): string => join(dir, f);
  await run('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', p('ca-key.pem')]);
  await run('openssl', [
    'req',
    '-x509',
    '-new',
    '-key',
    p('ca-key.pem'),
    '-subj',
    '/CN=bulwark test LDAP CA',
    '-days',
    '2',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
    '-out',
    p('ca.pem'),
  ]);
  await run('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', p('server-key.pem')]);
  await run('openssl', ['req', '-new', '-key', p('server-key.pem'), '-subj', '/CN=127.0.0.1', '-out', p('server.csr')]);
  writeFileSync(
    p('server.ext'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n',
  );
  await run('openssl', [
    'x509',
    '-req',
    '-in',
    p('server.csr'),
    '-CA',
    p('ca.pem'),
    '-CAkey',
    p('ca-key.pem'),
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    p('server.ext'),
    '-out',
    p('server.pem'),
  ]);
}

async function waitForExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return true;
  return await new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/**
 * Starts OpenLDAP slapd in the foreground as a child, with plain LDAP (StartTLS capable) and LDAPS on two
 * private loopback ports, the seed in {@link SLAPD_SEED}, the memberof and ppolicy overlays, and a CA minted
 * into `workDir`. `bindDn`/`bindPassword` are the rootdn, for tests that add or delete entries.
 */
export async function startSlapd(workDir: string): Promise<Started<LdapServiceInfo>> {
  if (!existsSync(SLAPD) || !existsSync(SLAPADD)) return { missing: 'slapd is not installed (apt-get install slapd)' };
  mkdirSync(join(workDir, 'data'), { recursive: true });
  const conf = join(workDir, 'slapd.conf');
  writeFileSync(conf, slapdConf(workDir));
  writeFileSync(join(workDir, 'seed.ldif'), seedLdif());
  writeFileSync(join(workDir, 'groups.ldif'), groupOfNamesLdif());
  try {
    await mintCertificates(workDir);
    await run(SLAPADD, ['-q', '-f', conf, '-l', join(workDir, 'seed.ldif')]);
  } catch (err) {
    return { missing: `slapd could not be provisioned: ${(err as Error).message}` };
  }
  const [port, tlsPort] = [await freePort(), await freePort()];
  const url = `ldap://127.0.0.1:${port}`;
  const ldapsUrl = `ldaps://127.0.0.1:${tlsPort}`;
  const child = spawn(SLAPD, ['-d', '0', '-h', `${url}/ ${ldapsUrl}/`, '-f', conf], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    // A test may have left it SIGSTOPped; a stopped process does not act on SIGTERM.
    child.kill('SIGCONT');
    child.kill('SIGTERM');
    if (!(await waitForExit(child, 5000))) {
      child.kill('SIGKILL');
      await waitForExit(child, 2000);
    }
  };
  const deadline = Date.now() + 10_000;
  while (!(await canConnect(port)) || !(await canConnect(tlsPort))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      return { missing: `slapd did not start: ${stderr.trim().slice(-500)}` };
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  try {
    await run(LDAPADD, ['-x', '-H', url, '-D', ROOT_DN, '-w', ROOT_PASSWORD, '-f', join(workDir, 'groups.ldif')]);
  } catch (err) {
    await stop();
    return { missing: `slapd group seed failed: ${(err as Error).message}` };
  }
  return {
    info: {
      url,
      ldapsUrl,
      caFile: join(workDir, 'ca.pem'),
      baseDn: SLAPD_SEED.baseDn,
      bindDn: ROOT_DN,
      bindPassword: ROOT_PASSWORD,
      pid: child.pid ?? 0,
    },
    stop,
  };
}
