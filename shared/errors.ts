/**
 * Every failure patchswarm reports carries a stable code from this registry. Clients and
 * tests match on `code`, never on the message. `docs/errors.md` lists the same codes; a test
 * (test/docs-sync.test.ts) keeps the two in sync (regenerate with `npm run docs:errors`).
 */
export const ERROR_CODES = {
  // generic input / API
  PSW_ERR_INVALID_ARGUMENT: { status: 400, summary: 'An argument or option has an invalid value.' },
  PSW_ERR_SCHEMA: {
    status: 400,
    summary: 'Input does not match its schema (wrong type, missing field, unknown field).',
  },
  PSW_ERR_TOO_LARGE: { status: 413, summary: 'Input exceeds its size limit.' },
  PSW_ERR_NOT_FOUND: { status: 404, summary: 'The requested object does not exist.' },
  PSW_ERR_CONFLICT: { status: 409, summary: 'The request conflicts with the current state.' },
  PSW_ERR_UNAUTHORIZED: { status: 401, summary: 'Missing or invalid credentials.' },
  PSW_ERR_FORBIDDEN: { status: 403, summary: 'The caller may not do this.' },
  PSW_ERR_INTERNAL: { status: 500, summary: 'An unexpected internal error; see the log.' },
  PSW_ERR_USAGE: { status: 400, summary: 'The command line is wrong; see --help.' },

  // signed metadata (manifests, assignments, peer lists)
  PSW_ERR_MANIFEST_INVALID: {
    status: 400,
    summary: 'A manifest does not match the manifest schema or is internally inconsistent.',
  },
  PSW_ERR_ASSIGNMENT_INVALID: { status: 400, summary: 'An assignment does not match the assignment schema.' },
  PSW_ERR_METADATA_TYPE: { status: 400, summary: 'A signed document is of another type than expected.' },
  PSW_ERR_SIGNATURE_MISSING: { status: 400, summary: 'A document that must be signed carries no signature.' },
  PSW_ERR_SIGNATURE_INVALID: { status: 400, summary: 'A signature does not verify.' },
  PSW_ERR_UNKNOWN_KEY: { status: 400, summary: 'A document is signed by a key that is not trusted.' },
  PSW_ERR_METADATA_EXPIRED: { status: 400, summary: 'Signed metadata has expired (freeze attack or stale clock).' },
  PSW_ERR_METADATA_NOT_YET_VALID: {
    status: 400,
    summary: 'Signed metadata is dated in the future beyond the allowed clock skew.',
  },
  PSW_ERR_METADATA_ROLLBACK: {
    status: 400,
    summary: 'Signed metadata is older than a version already seen (rollback attack).',
  },
  PSW_ERR_METADATA_MISMATCH: {
    status: 400,
    summary: 'Signed documents disagree: a manifest is not the exact version its assignment names (mix-and-match).',
  },

  // PKI
  PSW_ERR_CERT_INVALID: { status: 400, summary: 'A certificate cannot be parsed or is malformed.' },
  PSW_ERR_CERT_CHAIN: { status: 400, summary: 'A certificate does not chain to the pinned root.' },
  PSW_ERR_CERT_EXPIRED: { status: 400, summary: 'A certificate is outside its validity period.' },
  PSW_ERR_CERT_NOT_CA: {
    status: 400,
    summary: 'A certificate used as an issuer is not a CA (basicConstraints CA:true missing).',
  },
  PSW_ERR_CERT_USAGE: {
    status: 400,
    summary: 'A certificate is used for something its basicConstraints or keyUsage do not allow (e.g. a CA as signer).',
  },
  PSW_ERR_CERT_PEER_MISMATCH: { status: 400, summary: "A certificate is not bound to the peer's libp2p PeerId." },
  PSW_ERR_CSR_INVALID: {
    status: 400,
    summary: 'A certificate signing request is malformed or its signature does not verify.',
  },
  PSW_ERR_KEY_INVALID: { status: 400, summary: 'A key cannot be parsed or is of an unsupported type.' },

  // content: chunks and bundles
  PSW_ERR_CHUNK_SIZE_CONFIG: {
    status: 400,
    summary: 'The configured chunk size is not a power of two between 64 KiB and 16 MiB.',
  },
  PSW_ERR_CHUNK_HASH: { status: 422, summary: 'A chunk does not match its signed SHA-256.' },
  PSW_ERR_CHUNK_SIZE: { status: 422, summary: 'A chunk is longer or shorter than the signed size (endless data).' },
  PSW_ERR_BUNDLE_HASH: { status: 422, summary: 'The assembled bundle does not match its signed SHA-256.' },
  PSW_ERR_BUNDLE_METADATA: {
    status: 422,
    summary: 'The bundle metadata entry (bundle.json) is missing, malformed, or disagrees with the archive.',
  },
  PSW_ERR_INGEST_SOURCE: {
    status: 400,
    summary: 'The file or directory to ingest cannot be read or is not a regular file/directory.',
  },

  // tar guard (faults 11-14)
  PSW_ERR_TAR_INVALID: { status: 422, summary: 'The bundle is not a well-formed tar archive.' },
  PSW_ERR_TAR_PATH: {
    status: 422,
    summary: "A tar entry's path is absolute, contains '..', a backslash, a drive letter or a NUL byte.",
  },
  PSW_ERR_TAR_LINK: {
    status: 422,
    summary: 'A tar entry is a symlink or hardlink (links are not allowed in bundles).',
  },
  PSW_ERR_TAR_ENTRY_TYPE: { status: 422, summary: 'A tar entry is a device, FIFO or other special file.' },
  PSW_ERR_TAR_LIMIT: { status: 422, summary: 'A tar limit was exceeded (entries, path depth/length, unpacked size).' },

  // storage
  PSW_ERR_STORE_SCHEMA_VERSION: {
    status: 500,
    summary: 'The database was written by an unknown schema version; refusing to start.',
  },
  PSW_ERR_STORE_LOCKED: { status: 409, summary: 'The data directory is in use by another process.' },
  PSW_ERR_DATA_DIR: { status: 500, summary: 'The data directory is missing, not initialised, or not writable.' },
  PSW_ERR_ADDRESS_IN_USE: {
    status: 500,
    summary: 'A listen address (HTTP or libp2p port) is already in use by another process.',
  },
  PSW_ERR_DISK_FULL: { status: 507, summary: 'No space left on the device; partial files were removed.' },

  // enrollment and membership
  PSW_ERR_TOKEN_INVALID: { status: 401, summary: 'The enrollment token is unknown.' },
  PSW_ERR_TOKEN_EXPIRED: { status: 401, summary: 'The enrollment token has expired.' },
  PSW_ERR_TOKEN_USED: { status: 401, summary: 'The enrollment token was already used (tokens are single-use).' },
  PSW_ERR_NOT_ENROLLED: { status: 403, summary: 'The peer or agent is not enrolled at this site.' },
  PSW_ERR_ROOT_MISMATCH: {
    status: 400,
    summary: "The appliance's root certificate does not match the expected fingerprint.",
  },

  // wire protocol
  PSW_ERR_PROTOCOL: { status: 400, summary: 'A peer sent a malformed or unexpected protocol message.' },
  PSW_ERR_MESSAGE_TOO_LARGE: { status: 413, summary: 'A protocol message exceeds its size limit.' },
  PSW_ERR_PEER_TIMEOUT: { status: 504, summary: 'A peer did not answer in time.' },
  PSW_ERR_CHUNK_UNAVAILABLE: { status: 404, summary: 'The peer does not have the requested chunk.' },
  PSW_ERR_PEER_BUSY: { status: 503, summary: 'The peer has no free upload slot now; ask again later or elsewhere.' },
  PSW_ERR_CHUNK_ELSEWHERE: {
    status: 409,
    summary: 'The appliance asks for this chunk to be fetched from peers that already hold it (super-seeding).',
  },
  PSW_ERR_PEER_BANNED: { status: 403, summary: 'The peer sent a bad chunk and is banned for a while.' },
  PSW_ERR_APPLIANCE_UNREACHABLE: { status: 503, summary: 'The appliance cannot be reached.' },

  // upstream: feeds and the WAN downloader
  PSW_ERR_FEED_INVALID: { status: 422, summary: 'A feed document does not match its format or schema.' },
  PSW_ERR_FEED_SIGNATURE: {
    status: 422,
    summary: "A feed's signature does not verify, is missing, or is made by a key not in the configured keyring.",
  },
  PSW_ERR_FEED_EXPIRED: {
    status: 422,
    summary: 'A feed index is past its Valid-Until date (freeze attack or stale mirror).',
  },
  PSW_ERR_FEED_INDEX_HASH: {
    status: 422,
    summary: 'A feed index file (e.g. an APT Packages file) does not match the size or hash its signed release lists.',
  },
  PSW_ERR_FEED_FETCH: { status: 502, summary: 'A feed could not be fetched (network error or HTTP status).' },
  PSW_ERR_WAN_HTTP: { status: 502, summary: 'The upstream server answered with an unexpected HTTP status.' },
  PSW_ERR_WAN_TIMEOUT: {
    status: 504,
    summary: 'An upstream download timed out or stayed below the minimum rate (slow retrieval); it resumes later.',
  },
  PSW_ERR_WAN_SIZE: {
    status: 422,
    summary: 'An upstream download is longer or shorter than the size its feed declares (endless data).',
  },
  PSW_ERR_ARTIFACT_HASH: {
    status: 422,
    summary: 'A downloaded artifact does not match the digest its feed declares; it was quarantined.',
  },
  PSW_ERR_WAN_GAVE_UP: {
    status: 502,
    summary: 'An upstream download failed on every retry; it is tried again at the next sync.',
  },
  PSW_ERR_CACHE_FULL: {
    status: 507,
    summary: 'The cache quota cannot fit this artifact even after evicting every bundle no rollout needs.',
  },

  // install
  PSW_ERR_INSTALLER_UNSUPPORTED: {
    status: 400,
    summary: 'The manifest names an installer or a platform (OS, architecture) this agent does not support.',
  },
  PSW_ERR_INSTALL_FAILED: { status: 500, summary: 'The installer failed; the device was rolled back.' },
  PSW_ERR_ROLLBACK_FAILED: { status: 500, summary: 'Rolling back an install failed; manual attention needed.' },
  PSW_ERR_ROLLBACK_UNAVAILABLE: {
    status: 409,
    summary:
      'The install cannot be rolled back on this device (rollback none, msi/msu/exe, or what it installed was changed since); nothing was changed.',
  },
  PSW_ERR_INSTALL_BUSY: {
    status: 503,
    summary:
      'Another installation is running on the device (Windows 1618, dpkg lock); nothing was changed, retry later.',
  },

  // accounts and sessions
  PSW_ERR_LOGIN_FAILED: {
    status: 401,
    summary: 'The user name or the password is wrong (the same answer for both), or the account is disabled.',
  },
  PSW_ERR_RATE_LIMITED: {
    status: 429,
    summary: 'Too many failed logins from this address (for this user); wait for the time in Retry-After.',
  },
  PSW_ERR_CSRF: {
    status: 403,
    summary:
      'A cookie-authenticated request that changes state lacks the x-csrf-token of its session or comes from another site.',
  },

  // policy and audit
  PSW_ERR_PATCH_DECLINED: {
    status: 409,
    summary: 'The patch is declined (site-wide, or for a group the request targets): it is never deployed there.',
  },
  PSW_ERR_AUDIT_CHAIN: {
    status: 500,
    summary: "The audit log's hash chain does not verify: a record was edited, removed, reordered or inserted.",
  },
  PSW_ERR_INVENTORY_COMMAND: {
    status: 500,
    summary: 'A command the agent runs to collect its inventory (dpkg-query, PowerShell) failed or timed out.',
  },
} as const satisfies Record<string, { status: number; summary: string }>

export type ErrorCode = keyof typeof ERROR_CODES

export interface PswErrorOptions {
  cause?: unknown
  /** Extra structured data for logs and API responses (never secrets). */
  details?: Record<string, unknown>
}

/** Base class of every patchswarm error. */
export class PswError extends Error {
  readonly code: ErrorCode
  readonly status: number
  readonly details: Record<string, unknown> | undefined

  constructor(code: ErrorCode, message: string, options: PswErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = new.target.name
    this.code = code
    this.status = ERROR_CODES[code].status
    this.details = options.details
  }

  toJSON(): { code: ErrorCode; message: string; details?: Record<string, unknown> } {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details }
  }
}

/** Bad input: schema, size, arguments. */
export class ValidationError extends PswError {}
/** Signatures, certificates, keys, metadata freshness: anything the trust model refuses. */
export class TrustError extends PswError {}
/** Content does not match its signed hashes or sizes. */
export class IntegrityError extends PswError {}
/** A bundle's tar structure violates the guard (path traversal, links, special files, limits). */
export class BundleGuardError extends PswError {}
/** Persistent state: data directory, database, disk. */
export class StoreError extends PswError {}
/** A peer violated the wire protocol or did not answer. */
export class ProtocolError extends PswError {}
/** Enrollment and membership. */
export class EnrollmentError extends PswError {}
/** Missing or wrong credentials on the API. */
export class AuthError extends PswError {}
/** Upstream feeds, WAN downloads and the cache. */
export class UpstreamError extends PswError {}
/** Installing or rolling back. */
export class InstallError extends PswError {}
/** Lookups and state conflicts. */
export class StateError extends PswError {}

/** Whether `code` is a known error code (an own property of the registry, not e.g. 'toString'). */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code)
}

export function isPswError(err: unknown): err is PswError {
  return err instanceof PswError
}

/** Whether `err` is a patchswarm error with the given code. */
export function hasCode(err: unknown, code: ErrorCode): boolean {
  return isPswError(err) && err.code === code
}

/** Maps an ENOSPC from the OS to PSW_ERR_DISK_FULL; returns other errors unchanged. */
export function mapFsError(err: unknown, what: string): unknown {
  if ((err as NodeJS.ErrnoException | null)?.code === 'ENOSPC') {
    return new StoreError('PSW_ERR_DISK_FULL', `no space left on device while ${what}`, { cause: err })
  }
  return err
}
