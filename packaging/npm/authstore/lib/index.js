'use strict';
// The JavaScript API: the bundled `authstore` binary does the work (Codex's locks, the refresh
// transaction, the atomic write), since Node cannot take an flock; each call runs it once with
// `token --format json` or `status --json` and reads its one JSON line.

const { execFile } = require('node:child_process');
const { binaryPath } = require('./binary.js');

/** Exit codes of the `authstore` command (its README: "Exit codes"). */
const EXIT = Object.freeze({
  NOT_LOGGED_IN: 3,
  RELOGIN_REQUIRED: 4,
  UNAVAILABLE: 5,
  INVALID_FILE: 6,
});

/** Every error of this package: `exitCode` is the command's (1 when it did not run). */
class AuthstoreError extends Error {
  constructor(message, exitCode) {
    super(message);
    this.name = new.target.name;
    this.exitCode = exitCode;
  }
}
/** Nobody is logged in in this Codex home (exit code 3). */
class NotLoggedIn extends AuthstoreError {}
/** The refresh token was refused for good, or another account logged in: log in again (4). */
class ReloginRequired extends AuthstoreError {}
/** Lock deadline passed, token endpoint unreachable or failing: try again later (5). */
class Unavailable extends AuthstoreError {}
/** auth.json cannot be read or is not a valid document; it was left untouched (6). */
class InvalidFile extends AuthstoreError {}

const CLASSES = {
  [EXIT.NOT_LOGGED_IN]: NotLoggedIn,
  [EXIT.RELOGIN_REQUIRED]: ReloginRequired,
  [EXIT.UNAVAILABLE]: Unavailable,
  [EXIT.INVALID_FILE]: InvalidFile,
};

/** A few MiB: far more than any answer of the command. */
const MAX_OUTPUT = 4 * 1024 * 1024;

function globalArgs(options) {
  const args = [];
  if (options.codexHome !== undefined) args.push('--codex-home', String(options.codexHome));
  if (options.lockTimeout !== undefined) args.push('--lock-timeout', String(options.lockTimeout));
  if (options.requestTimeout !== undefined) {
    args.push('--request-timeout', String(options.requestTimeout));
  }
  return args;
}

/**
 * Runs the binary; resolves with its exit code and stdout. The error of a failed run carries
 * the command's message from stderr, which never holds a secret; stdout, which may hold a
 * token, never goes into an error.
 */
function run(args, options) {
  return new Promise((resolve, reject) => {
    let binary;
    try {
      binary = options.binary || binaryPath();
    } catch (error) {
      reject(new AuthstoreError(error.message, 1));
      return;
    }
    execFile(
      binary,
      args,
      {
        env: options.env || process.env,
        maxBuffer: MAX_OUTPUT,
        windowsHide: true,
        encoding: 'utf8',
        signal: options.signal,
      },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') {
          // Not started, killed by a signal, aborted, or more output than expected.
          const why = error.signal ? `ended by ${error.signal}` : error.code || 'failed';
          reject(new AuthstoreError(`authstore: cannot run ${binary}: ${why}`, 1));
          return;
        }
        resolve({ code: error ? error.code : 0, stdout, stderr });
      },
    );
  });
}

function failure(code, stderr) {
  const message = stderr.trim() || `authstore exited with code ${code}`;
  const Class = CLASSES[code] || AuthstoreError;
  return new Class(message, code);
}

function parseJson(stdout, what) {
  try {
    return JSON.parse(stdout);
  } catch {
    // Not the output itself: it may hold a token.
    throw new AuthstoreError(`authstore ${what}: the command's output is not JSON`, 1);
  }
}

function date(value) {
  return typeof value === 'string' ? new Date(value) : null;
}

/** Fresh credentials, refreshed (once across all processes) when stale. */
async function credentials(options = {}) {
  const args = [...globalArgs(options), 'token', '--format', 'json'];
  if (options.minValid !== undefined) args.push('--min-valid', String(options.minValid));
  const { code, stdout, stderr } = await run(args, options);
  if (code !== 0) throw failure(code, stderr);
  const answer = parseJson(stdout, 'token');
  if (typeof answer.access_token !== 'string') {
    throw new AuthstoreError('authstore token: the answer holds no access token', 1);
  }
  return {
    accessToken: answer.access_token,
    accountId: answer.account_id ?? null,
    expiresAt: date(answer.expires_at),
    headers: { ...(answer.headers || {}) },
  };
}

/** A valid access token. */
async function token(options = {}) {
  return (await credentials(options)).accessToken;
}

/**
 * Who is logged in and when the tokens expire, read without locking; never a secret. A home
 * nobody is logged in to gives `loggedIn: false` (not an error).
 */
async function status(options = {}) {
  const { code, stdout, stderr } = await run([...globalArgs(options), 'status', '--json'], options);
  if (code !== 0 && !(code === EXIT.NOT_LOGGED_IN && stdout.trim())) throw failure(code, stderr);
  const raw = parseJson(stdout, 'status');
  return {
    path: raw.path,
    loggedIn: Boolean(raw.logged_in),
    authMode: raw.auth_mode ?? null,
    email: raw.email ?? null,
    plan: raw.plan ?? null,
    accountId: raw.account_id ?? null,
    userId: raw.user_id ?? null,
    expiresAt: date(raw.expires_at),
    lastRefresh: date(raw.last_refresh),
    refreshDue: Boolean(raw.refresh_due),
    raw,
  };
}

module.exports = {
  token,
  credentials,
  status,
  binaryPath,
  AuthstoreError,
  NotLoggedIn,
  ReloginRequired,
  Unavailable,
  InvalidFile,
  EXIT,
};
