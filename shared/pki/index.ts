/**
 * Site PKI: certificates are created with node-forge (structure) and Ed25519 signatures from
 * node:crypto; every verification uses node:crypto only.
 */
export {
  type CreateRootCaOptions,
  createRootCa,
  type IssueAgentCertOptions,
  type IssueApplianceCertOptions,
  type IssuerCredentials,
  issueAgentCert,
  issueApplianceCert,
  NOT_BEFORE_BACKDATE_MS,
} from './cert-builder.ts'
export {
  certificateValidity,
  fingerprint,
  MAX_INTERMEDIATES,
  parseCertificatePem,
  type VerifiedChain,
  type VerifyAgentCertOptions,
  type VerifyChainOptions,
  verifyAgentCert,
  verifyChain,
} from './cert-verify.ts'
export { type CreateCsrOptions, createCsr, type VerifyCsrOptions, verifyCsr } from './csr.ts'
export {
  generateSigningKey,
  type PrivateKeyInput,
  type PublicKeyInput,
  publicKeyFingerprint,
  type SigningKeyPem,
  samePublicKey,
  signEd25519,
  spkiDer,
  toPrivateKey,
  toPublicKey,
  verifyEd25519,
} from './keys.ts'
export {
  canonicalPeerId,
  ed25519PublicKeyFromRaw,
  ed25519RawPublicKey,
  libp2pPrivateKeyToKeyObject,
  peerIdToPublicKey,
  peerUri,
} from './peer-keys.ts'
export { MAX_PEM_CHARS } from './pem.ts'
export {
  type CreateWebCaOptions,
  checkServerCertificate,
  createWebCa,
  fingerprint256,
  generateWebKey,
  type IssueWebServerCertOptions,
  isDnsName,
  isIpAddress,
  issueWebServerCert,
  parseCertificateChainPem,
  subjectAltNames,
  WEB_CA_VALID_DAYS,
  WEB_SERVER_VALID_DAYS,
} from './web-cert.ts'
