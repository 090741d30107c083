import { z } from 'zod';

/**
 * The `ocsp` settings of a TLS listener. Kept apart from the stapler, so the configuration schema can be loaded
 * without @peculiar/x509 and the ASN.1 modules the stapler needs (about 19 MB), which load only when a listener
 * staples.
 */
export const ocspStaplingSchema = z
  .object({
    enabled: z
      .boolean()
      .default(false)
      .describe('Staple an OCSP response for the server certificate to every handshake that asks for one.'),
    responder_url: z
      .string()
      .url()
      .optional()
      .describe(
        'OCSP responder to ask instead of the one in the certificate’s Authority Information Access extension.',
      ),
    response_file: z
      .string()
      .min(1)
      .optional()
      .describe(
        'Read a DER OCSP response from this file (e.g. written by `openssl ocsp -respout`) instead of asking a responder; re-read on every refresh.',
      ),
    issuer_file: z
      .string()
      .min(1)
      .optional()
      .describe(
        'PEM certificate of the server certificate’s issuer, when `cert_file` does not include it after the leaf.',
      ),
    fetch_timeout_ms: z
      .number()
      .int()
      .min(100)
      .max(60_000)
      .default(5_000)
      .describe('Deadline for one request to the responder.'),
    retry_ms: z
      .number()
      .int()
      .min(1_000)
      .max(86_400_000)
      .default(60_000)
      .describe('First retry delay after a failed refresh; doubles up to one hour.'),
    max_age_ms: z
      .number()
      .int()
      .min(60_000)
      .max(30 * 86_400_000)
      .default(86_400_000)
      .describe('How long a response without nextUpdate is stapled after its thisUpdate.'),
  })
  .strict()
  .describe('OCSP stapling for the listener’s certificate.');

export type OcspStaplingSettings = z.output<typeof ocspStaplingSchema>;
