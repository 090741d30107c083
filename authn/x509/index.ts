export { X509Authenticator, certificateAttributes, mapIdentity } from './authenticator.js';
export type { IdentitySource, X509AuthenticatorOptions } from './authenticator.js';
export { x509SettingsSchema, x509Type } from './config.js';
export type { X509Settings } from './config.js';
