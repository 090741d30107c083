import 'reflect-metadata';
import { readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { X509Certificate } from '@peculiar/x509';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { BulwarkError } from '../src/errors.js';
import { createCrl } from './crl.js';
import { type WriteOptions, certificateFilePaths, pathTaken, writeCertificateFiles, writePublicFile } from './files.js';
import { createCertificateAuthority, issueClientCertificate, issueServerCertificate } from './issue.js';
import { KEY_ALGORITHMS, type KeyAlgorithm } from './keys.js';
import type { IssuedCertificate, IssuerPems, Validity } from './types.js';

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/**
 * Digits only: Number() and parseInt() would take `1.5`, `1e3`, `0x10`, ` 7 ` or `abc`, each silently becoming
 * some other number (or none) in a certificate.
 */
function wholeNumber(value: string, min: number): number {
  const n = /^[0-9]+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min) {
    throw new InvalidArgumentError(
      min === 0 ? 'expected a whole number, 0 or more' : 'expected a whole number, 1 or more',
    );
  }
  return n;
}

function positiveInteger(value: string): number {
  return wholeNumber(value, 1);
}

function nonNegativeInteger(value: string): number {
  return wholeNumber(value, 0);
}

/** A calendar date, optionally with a time and an offset; `new Date` alone also takes `1` or `March 7`. */
const ISO_8601 = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})?)?$/;

function isoDate(value: string): Date {
  const date = new Date(value);
  if (!ISO_8601.test(value) || Number.isNaN(date.getTime()))
    throw new InvalidArgumentError('expected an ISO 8601 date, e.g. 2030-01-31T00:00:00Z');
  return date;
}

interface CommonFlags {
  keyType: KeyAlgorithm;
  days?: number;
  notBefore?: Date;
  notAfter?: Date;
  force?: boolean;
}

interface IssuerFlags {
  caCert: string;
  caKey: string;
}

function keyTypeOption(): Option {
  return new Option('--key-type <type>', 'key algorithm').choices(KEY_ALGORITHMS).default('ec-p256');
}

function addValidityOptions(command: Command, defaultDays: number): Command {
  return command
    .option('--days <n>', `validity in days from --not-before (default ${defaultDays})`, positiveInteger)
    .option('--not-before <date>', 'start of validity, ISO 8601 (default: now minus 5 minutes)', isoDate)
    .option('--not-after <date>', 'end of validity, ISO 8601 (overrides --days)', isoDate)
    .option('--force', 'overwrite existing files');
}

function addIssuerOptions(command: Command): Command {
  return command
    .requiredOption('--ca-cert <file>', 'PEM certificate of the signing CA')
    .requiredOption('--ca-key <file>', 'PEM private key of the signing CA')
    .option(
      '--ca-chain <file>',
      'PEM chain of an intermediate signing CA (its certificate, then its issuers, no root)',
    );
}

function validity(flags: CommonFlags): Validity {
  return { days: flags.days, notBefore: flags.notBefore, notAfter: flags.notAfter };
}

/** Names the option and the file, so a mistyped path is told apart from a file that is there but unreadable. */
async function readInput(option: string, file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new BulwarkError(
      'BULWARK_ERR_CERT',
      `cannot read ${option} ${file}${code === undefined ? '' : ` (${code})`}`,
      undefined,
      code === 'ENOENT' ? 'check the path' : 'check the path and permissions',
    );
  }
}

async function loadIssuer(flags: IssuerFlags & { caChain?: string }): Promise<IssuerPems> {
  return {
    certificatePem: await readInput('--ca-cert', flags.caCert),
    keyPem: await readInput('--ca-key', flags.caKey),
    chainPem: flags.caChain === undefined ? undefined : await readInput('--ca-chain', flags.caChain),
  };
}

/**
 * The serial of a certificate to revoke, as upper-case hex. A certificate of another CA is refused: its serial
 * in this CRL revokes nothing, or worse, an unrelated certificate of this CA that happens to share it.
 */
async function serialOf(file: string, caCertificatePem: string): Promise<string> {
  const pem = await readInput('--revoke-cert', file);
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(pem);
  } catch {
    throw new BulwarkError(
      'BULWARK_ERR_CERT',
      `--revoke-cert ${file} is not a PEM certificate`,
      undefined,
      'pass the certificate to revoke (not its key), or its serial with --revoke',
    );
  }
  let caSubject: string | undefined;
  try {
    caSubject = new X509Certificate(caCertificatePem).subject;
  } catch {
    // createCrl reports an unreadable CA certificate with its own message.
  }
  if (caSubject !== undefined && certificate.issuer !== caSubject) {
    throw new BulwarkError(
      'BULWARK_ERR_CERT',
      `--revoke-cert ${file} was issued by ${certificate.issuer}, not by ${caSubject}`,
      undefined,
      'revoke it in a CRL of the CA that issued it',
    );
  }
  return certificate.serialNumber.toUpperCase();
}

async function refuseOverwrite(paths: string[], force: boolean | undefined): Promise<void> {
  if (force) return;
  // lstat, not exists: a dangling symlink is taken too, and writing "through" it would create its target.
  const taken = await Promise.all(paths.map(pathTaken));
  const existing = paths.filter((_, i) => taken[i]);
  if (existing.length > 0) {
    throw new BulwarkError(
      'BULWARK_ERR_CERT',
      `refusing to overwrite ${existing.join(', ')}`,
      undefined,
      'pass --force to replace them',
    );
  }
}

async function writeAndReport(
  issued: IssuedCertificate,
  base: string,
  force: boolean | undefined,
  options: WriteOptions = {},
): Promise<void> {
  const planned = certificateFilePaths(issued, base, options);
  // The chain file belongs to the set even when this certificate needs none: left behind, it would pair an
  // old certificate with the new key in whatever serves `<base>.chain.crt`.
  const chainPath = `${base}.chain.crt`;
  await refuseOverwrite([planned.certificate, planned.key, chainPath], force);
  const stale = planned.chain === undefined && (await pathTaken(chainPath));
  const files = await writeCertificateFiles(issued, base, options);
  if (stale) await unlink(chainPath);
  console.log(`certificate: ${files.certificate}`);
  console.log(`key:         ${files.key} (mode 0600)`);
  if (files.chain !== undefined) console.log(`chain:       ${files.chain}`);
  if (stale) console.log(`removed:     ${chainPath} (chain of the replaced certificate)`);
  console.log(`subject:     ${issued.subjectDn}`);
  console.log(`serial:      ${issued.serialNumber}`);
  console.log(`sha256:      ${issued.fingerprint256}`);
  console.log(`valid:       ${issued.notBefore.toISOString()} .. ${issued.notAfter.toISOString()}`);
}

/** Runs an action and turns a BulwarkError into one `file:line:column: message (hint)` line and exit code 1. */
function run<A extends unknown[]>(action: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await action(...args);
    } catch (error) {
      if (error instanceof BulwarkError) {
        console.error(`bulwark certs: ${error.describe()}`);
        process.exitCode = 1;
        return;
      }
      throw error;
    }
  };
}

export function registerCertsCommand(program: Command): void {
  const certs = program
    .command('certs')
    .description('Create development certificates: a CA, server and client certificates, and CRLs (PEM files)');

  addValidityOptions(
    certs
      .command('ca')
      .description('Create a self-signed root CA, or an intermediate CA when --ca-cert/--ca-key are given')
      .option('--out <dir>', 'output folder; writes ca.crt and ca.key (0600)', '.')
      .option('--name <base>', 'file base name inside --out', 'ca')
      .option('--cn <name>', 'common name', 'Bulwark Development CA')
      .option('--org <name>', 'organization (O)')
      .option('--path-length <n>', 'how many intermediate CAs may follow this one', nonNegativeInteger)
      .option('--ca-cert <file>', 'sign an intermediate CA with this CA certificate')
      .option('--ca-key <file>', 'private key of --ca-cert')
      .option('--ca-chain <file>', 'chain of --ca-cert when it is itself an intermediate')
      .addOption(keyTypeOption()),
    3650,
  ).action(
    run(
      async (
        flags: CommonFlags &
          Partial<IssuerFlags> & {
            out: string;
            name: string;
            cn: string;
            org?: string;
            pathLength?: number;
            caChain?: string;
          },
      ) => {
        if ((flags.caCert === undefined) !== (flags.caKey === undefined)) {
          throw new BulwarkError(
            'BULWARK_ERR_CERT',
            '--ca-cert and --ca-key go together',
            undefined,
            'pass both to create an intermediate CA, or neither for a root',
          );
        }
        const issuer =
          flags.caCert && flags.caKey
            ? await loadIssuer({ caCert: flags.caCert, caKey: flags.caKey, caChain: flags.caChain })
            : undefined;
        const ca = await createCertificateAuthority({
          subject: { commonName: flags.cn, organization: flags.org },
          keyAlgorithm: flags.keyType,
          validity: validity(flags),
          issuer,
          pathLength: flags.pathLength,
        });
        // An intermediate's chain file is what its leaves' --ca-chain needs, even when its issuer is the root.
        await writeAndReport(ca, join(flags.out, flags.name), flags.force, { chain: issuer !== undefined });
      },
    ),
  );

  addValidityOptions(
    addIssuerOptions(
      certs
        .command('server')
        .description('Issue a TLS server certificate (serverAuth) for the broker')
        .requiredOption('--out <base>', 'output path without extension; writes <base>.crt and <base>.key (0600)')
        .option('--dns <name>', 'DNS SAN (repeatable)', collect)
        .option('--ip <address>', 'IP SAN, IPv4 or IPv6 (repeatable)', collect)
        .option('--cn <name>', 'common name (default: the first --dns or --ip)')
        .option('--ocsp-url <url>', 'OCSP responder URL to put in Authority Information Access')
        .option('--crl-url <url>', 'CRL distribution point URL')
        .addOption(keyTypeOption()),
    ),
    365,
  ).action(
    run(
      async (
        flags: CommonFlags &
          IssuerFlags & {
            out: string;
            dns?: string[];
            ip?: string[];
            cn?: string;
            ocspUrl?: string;
            crlUrl?: string;
            caChain?: string;
          },
      ) => {
        const issued = await issueServerCertificate({
          issuer: await loadIssuer(flags),
          dnsNames: flags.dns,
          ipAddresses: flags.ip,
          subject: flags.cn === undefined ? undefined : { commonName: flags.cn },
          keyAlgorithm: flags.keyType,
          validity: validity(flags),
          ocspUrl: flags.ocspUrl,
          crlUrl: flags.crlUrl,
        });
        await writeAndReport(issued, flags.out, flags.force);
      },
    ),
  );

  addValidityOptions(
    addIssuerOptions(
      certs
        .command('client')
        .description('Issue a TLS client certificate (clientAuth) for a device or user')
        .requiredOption('--out <base>', 'output path without extension; writes <base>.crt and <base>.key (0600)')
        .requiredOption('--cn <name>', 'common name, e.g. the device id')
        .option('--ou <unit>', 'organizational unit (repeatable)', collect)
        .option('--org <name>', 'organization (O)')
        .option('--uri <uri>', 'URI SAN such as spiffe://example.org/sensor/1 (repeatable)', collect)
        .option('--email <address>', 'email SAN (repeatable)', collect)
        .option('--dns <name>', 'DNS SAN (repeatable)', collect)
        .addOption(keyTypeOption()),
    ),
    365,
  ).action(
    run(
      async (
        flags: CommonFlags &
          IssuerFlags & {
            out: string;
            cn: string;
            ou?: string[];
            org?: string;
            uri?: string[];
            email?: string[];
            dns?: string[];
            caChain?: string;
          },
      ) => {
        const issued = await issueClientCertificate({
          issuer: await loadIssuer(flags),
          subject: { commonName: flags.cn, organization: flags.org, organizationalUnits: flags.ou },
          uris: flags.uri,
          emails: flags.email,
          dnsNames: flags.dns,
          keyAlgorithm: flags.keyType,
          validity: validity(flags),
        });
        await writeAndReport(issued, flags.out, flags.force);
      },
    ),
  );

  addIssuerOptions(
    certs
      .command('crl')
      .description('Write a CRL signed by the CA, revoking the given serial numbers or certificates')
      .requiredOption('--out <file>', 'output PEM file (label X509 CRL)')
      .option('--revoke <serial>', 'hex serial number to revoke (repeatable)', collect)
      .option('--revoke-cert <file>', 'PEM certificate to revoke (repeatable)', collect)
      .option(
        '--next-update-days <n>',
        'days until the CRL expires; an expired CRL makes every client fail',
        positiveInteger,
        7,
      )
      .option('--force', 'overwrite an existing file'),
  ).action(
    run(
      async (
        flags: IssuerFlags & {
          out: string;
          revoke?: string[];
          revokeCert?: string[];
          nextUpdateDays: number;
          force?: boolean;
        },
      ) => {
        await refuseOverwrite([flags.out], flags.force);
        const issuer = await loadIssuer(flags);
        const serials = [...(flags.revoke ?? [])];
        for (const file of flags.revokeCert ?? []) serials.push(await serialOf(file, issuer.certificatePem));
        const thisUpdate = new Date(Date.now() - 60_000);
        const pem = await createCrl({
          issuer,
          revoked: serials.map((serialNumber) => ({ serialNumber })),
          thisUpdate,
          nextUpdate: new Date(thisUpdate.getTime() + flags.nextUpdateDays * 86_400_000),
        });
        await writePublicFile(flags.out, pem);
        console.log(`crl:     ${flags.out}`);
        console.log(`revoked: ${serials.length === 0 ? '(none)' : serials.join(', ')}`);
      },
    ),
  );
}
