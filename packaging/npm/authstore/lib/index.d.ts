// Types of the authstore JavaScript API (CommonJS and ES module entries alike).

/** Options of every call. */
export interface Options {
  /** The Codex home holding auth.json (default: $CODEX_HOME, else ~/.codex). */
  codexHome?: string;
  /** Seconds to wait for another process's transaction before giving up (Unavailable). */
  lockTimeout?: number;
  /** Seconds to wait for the token endpoint before giving up (Unavailable). */
  requestTimeout?: number;
  /** An `authstore` binary to run instead of the bundled one. */
  binary?: string;
  /** The environment of the command (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /** Aborts the call (the command is killed). */
  signal?: AbortSignal;
}

export interface TokenOptions extends Options {
  /** Refresh first when the access token has fewer than this many seconds left (at least 300). */
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

/** A valid access token, refreshed (once across all processes) when stale. */
export function token(options?: TokenOptions): Promise<string>;
/** Fresh credentials with the request headers. */
export function credentials(options?: TokenOptions): Promise<Credentials>;
/** Who is logged in and when the tokens expire; `loggedIn: false` when nobody is. */
export function status(options?: Options): Promise<Status>;
/** The path of the binary the calls run (the per-platform package's, or AUTHSTORE_BINARY). */
export function binaryPath(): string;

/** Every error of this package; `exitCode` is the command's (1 when it could not run). */
export class AuthstoreError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number);
}
/** Nobody is logged in (exit code 3). */
export class NotLoggedIn extends AuthstoreError {}
/** The refresh token was refused for good, or another account logged in (exit code 4). */
export class ReloginRequired extends AuthstoreError {}
/** Lock deadline passed, token endpoint unreachable or failing (exit code 5). */
export class Unavailable extends AuthstoreError {}
/** auth.json cannot be read or is invalid; it was left untouched (exit code 6). */
export class InvalidFile extends AuthstoreError {}

export const EXIT: {
  readonly NOT_LOGGED_IN: 3;
  readonly RELOGIN_REQUIRED: 4;
  readonly UNAVAILABLE: 5;
  readonly INVALID_FILE: 6;
};
