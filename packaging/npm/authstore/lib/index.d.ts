// Types of the authstore JavaScript API (CommonJS and ES module entries alike).

/** Options of every call; `undefined` keeps the defaults (the environment, Codex's endpoint). */
export interface Options {
  /** The Codex home holding auth.json (default: $CODEX_HOME, else ~/.codex). */
  codexHome?: string;
  /** The token endpoint, a full URL (default: $CODEX_REFRESH_TOKEN_URL_OVERRIDE, else Codex's). */
  tokenUrl?: string;
  /** The OAuth client id (default: $CODEX_APP_SERVER_LOGIN_CLIENT_ID, else Codex's). */
  clientId?: string;
  /**
   * Seconds before the access token's expiry from which it counts as stale and is refreshed
   * (default and minimum 300, Codex's own window: a smaller one is widened to it).
   */
  refreshWindow?: number;
  /** Seconds to wait for another process's transaction before giving up (Unavailable; default 60). */
  lockTimeout?: number;
  /** Seconds to wait for the token endpoint before giving up (Unavailable; default 20). */
  requestTimeout?: number;
  /** An `authstore` binary to run instead of the bundled one (default: $AUTHSTORE_BINARY, else the bundled one). */
  binary?: string;
  /** The environment of the command (default: this process's). */
  env?: Record<string, string | undefined>;
  /** Aborts the call: it rejects with the signal's reason, and the command is killed. */
  signal?: AbortSignal;
}

export interface TokenOptions extends Options {
  /** The same as `refreshWindow` (the command's `--min-valid`). */
  minValid?: number;
}

export interface Credentials {
  accessToken: string;
  /** The ChatGPT account id, when known. */
  accountId: string | null;
  /** When the access token expires, when known. */
  expiresAt: Date | null;
  /** The request headers: Authorization, and ChatGPT-Account-Id when the account is known. */
  headers: Record<string, string>;
}

export interface Status {
  /** The auth.json path. */
  path: string;
  loggedIn: boolean;
  authMode: string | null;
  email: string | null;
  plan: string | null;
  accountId: string | null;
  userId: string | null;
  expiresAt: Date | null;
  lastRefresh: Date | null;
  refreshDue: boolean;
  /** Everything `authstore status --json` printed (never a secret). */
  raw: Record<string, unknown>;
}

/** `fetch`'s own signature. */
export type FetchFunction = (
  input: string | URL | Request,
  init?: RequestInit,
) => Promise<Response>;

export interface CreateFetchOptions extends TokenOptions {
  /** The `fetch` to wrap (default: the global one). */
  fetch?: FetchFunction;
}

/** A valid access token, refreshed (once across all processes) when stale; cached while fresh. */
export function token(options?: TokenOptions): Promise<string>;
/** Fresh credentials with the request headers; cached in this process while fresh. */
export function credentials(options?: TokenOptions): Promise<Credentials>;
/**
 * After a request made with `rejected` (the access token, or the credentials it came from) got
 * HTTP 401: the credentials that replace it. One refresh across all processes while the store
 * still holds it; a newer token of the same account and user with no authority call; another
 * account's or user's login rejects with `ReloginRequired` (`reason: "identity_changed"`).
 */
export function unauthorized(
  rejected: string | Pick<Credentials, 'accessToken'>,
  options?: TokenOptions,
): Promise<Credentials>;
/** Who is logged in and when the tokens expire; `loggedIn: false` when nobody is. */
export function status(options?: Options): Promise<Status>;
/**
 * A `fetch` that sets `Authorization` and `ChatGPT-Account-Id` (replacing the caller's) and, on
 * HTTP 401, calls `unauthorized` with the token it sent and retries once when the body can be
 * replayed (none, a string, URLSearchParams, an ArrayBuffer, a typed array). A second 401 is
 * returned, never thrown.
 */
export function createFetch(options?: CreateFetchOptions): FetchFunction;
/** Forgets the cached credentials: all of them, or those of one store and endpoint. */
export function clearCache(options?: Options): void;
/** The path of the binary the calls run (the per-platform package's, or AUTHSTORE_BINARY). */
export function binaryPath(): string;

export type ErrorKind =
  | 'other'
  | 'usage'
  | 'not_logged_in'
  | 'relogin_required'
  | 'unavailable'
  | 'invalid_file'
  | 'binary_not_found';

export type ReloginReason =
  | 'expired'
  | 'reused'
  | 'revoked'
  | 'rejected'
  | 'identity_changed'
  | 'other';

/** Every error of this package; `exitCode` is the command's (1 when it could not run). */
export class AuthstoreError extends Error {
  readonly exitCode: number;
  readonly kind: ErrorKind;
  constructor(message: string, exitCode?: number, kind?: ErrorKind);
}
/** The command was used wrongly, or an argument is invalid (exit code 2). */
export class UsageError extends AuthstoreError {
  readonly kind: 'usage';
  constructor(message: string, exitCode?: number);
}
/** Nobody is logged in (exit code 3). */
export class NotLoggedIn extends AuthstoreError {
  readonly kind: 'not_logged_in';
  constructor(message: string, exitCode?: number);
}
/** The refresh token was refused for good, or another account or user logged in (exit code 4). */
export class ReloginRequired extends AuthstoreError {
  readonly kind: 'relogin_required';
  readonly reason: ReloginReason;
  constructor(message: string, exitCode?: number, reason?: ReloginReason);
}
/** Lock deadline passed, token endpoint unreachable or failing (exit code 5). */
export class Unavailable extends AuthstoreError {
  readonly kind: 'unavailable';
  constructor(message: string, exitCode?: number);
}
/** auth.json cannot be read or is invalid; it was left untouched (exit code 6). */
export class InvalidFile extends AuthstoreError {
  readonly kind: 'invalid_file';
  constructor(message: string, exitCode?: number);
}
/** No binary for this platform; the message names the package to install. */
export class BinaryNotFound extends AuthstoreError {
  readonly kind: 'binary_not_found';
  constructor(message: string, exitCode?: number);
}

export const EXIT: {
  readonly OTHER: 1;
  readonly USAGE: 2;
  readonly NOT_LOGGED_IN: 3;
  readonly RELOGIN_REQUIRED: 4;
  readonly UNAVAILABLE: 5;
  readonly INVALID_FILE: 6;
};

