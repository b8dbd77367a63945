'use strict';
// The JavaScript API: the bundled `authstore` binary does the work (Codex's locks, the refresh
// transaction, the atomic write), since Node cannot take an flock; a call that needs the store
// runs it once with `token --format json` (`--rejected-stdin` after a 401) or `status --json`
// and reads its one JSON line. Credentials are cached in this process while fresh, by the
// command's own rule (at least 300 s left before `exp`), so that a fresh token costs no spawn.

const { execFile } = require('node:child_process');
const { createHash } = require('node:crypto');
const { binaryPath } = require('./binary.js');

/** Exit codes of the `authstore` command (its README: "Exit codes"). */
const EXIT = Object.freeze({
  OTHER: 1,
  USAGE: 2,
  NOT_LOGGED_IN: 3,
  RELOGIN_REQUIRED: 4,
  UNAVAILABLE: 5,
  INVALID_FILE: 6,
});

/** The command's refresh window (seconds): a window asked for is widened to it, never narrowed. */
const DEFAULT_REFRESH_WINDOW = 300;

/** The environment variables the command (as Codex) reads its token endpoint and client id from. */
const TOKEN_URL_ENV = 'CODEX_REFRESH_TOKEN_URL_OVERRIDE';
const CLIENT_ID_ENV = 'CODEX_APP_SERVER_LOGIN_CLIENT_ID';

/**
 * Every error of this package. `exitCode` is the command's (1 when it did not run), `kind` one
 * word for it. The message is the command's own from stderr, which never holds a secret; no
 * token is ever a property of an error.
 */
class AuthstoreError extends Error {
  constructor(message, exitCode = EXIT.OTHER, kind = 'other') {
    super(message);
    Object.defineProperty(this, 'name', {
      value: new.target.name,
      enumerable: false,
      configurable: true,
      writable: true,
    });
    this.exitCode = exitCode;
    this.kind = kind;
  }
}
/** The command was used wrongly, or an argument is invalid (exit code 2). */
class UsageError extends AuthstoreError {
  constructor(message, exitCode = EXIT.USAGE) {
    super(message, exitCode, 'usage');
  }
}
/** Nobody is logged in in this Codex home (exit code 3). */
class NotLoggedIn extends AuthstoreError {
  constructor(message, exitCode = EXIT.NOT_LOGGED_IN) {
    super(message, exitCode, 'not_logged_in');
  }
}
/**
 * The refresh token was refused for good, or another account or user logged in: log in again
 * (exit code 4). `reason`: `expired`, `reused`, `revoked`, `rejected`, `identity_changed` or
 * `other`.
 */
class ReloginRequired extends AuthstoreError {
  constructor(message, exitCode = EXIT.RELOGIN_REQUIRED, reason = reloginReason(message)) {
    super(message, exitCode, 'relogin_required');
    this.reason = reason;
  }
}
/** Lock deadline passed, token endpoint unreachable or failing: try again later (exit code 5). */
class Unavailable extends AuthstoreError {
  constructor(message, exitCode = EXIT.UNAVAILABLE) {
    super(message, exitCode, 'unavailable');
  }
}
/** auth.json cannot be read or is not a valid document; it was left untouched (exit code 6). */
class InvalidFile extends AuthstoreError {
  constructor(message, exitCode = EXIT.INVALID_FILE) {
    super(message, exitCode, 'invalid_file');
  }
}
/** No `authstore` binary for this machine: the message names the package to install (exit code 1). */
class BinaryNotFound extends AuthstoreError {
  constructor(message, exitCode = EXIT.OTHER) {
    super(message, exitCode, 'binary_not_found');
  }
}

const CLASSES = {
  [EXIT.USAGE]: UsageError,
  [EXIT.NOT_LOGGED_IN]: NotLoggedIn,
  [EXIT.RELOGIN_REQUIRED]: ReloginRequired,
  [EXIT.UNAVAILABLE]: Unavailable,
  [EXIT.INVALID_FILE]: InvalidFile,
};

/**
 * The reason of a re-login, from the command's message: the library's descriptions of its
 * `ReloginReason`s (src/error.rs, `describe`), which are part of the message it prints.
 */
const REASONS = [
  ['the refresh token expired', 'expired'],
  ['the refresh token was already used', 'reused'],
  ['the refresh token was revoked', 'revoked'],
  ['the token authority rejected the refresh token', 'rejected'],
  ['another account or user logged in', 'identity_changed'],
];

function reloginReason(message) {
  const text = String(message);
  for (const [words, reason] of REASONS) if (text.includes(words)) return reason;
  return 'other';
}

/** A few MiB: far more than any answer of the command. */
const MAX_OUTPUT = 4 * 1024 * 1024;

function seconds(name, value) {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new UsageError(`authstore: ${name} must be a number of seconds (>= 0)`);
  }
  return value;
}

function globalArgs(options) {
  const args = [];
  if (options.codexHome !== undefined) args.push('--codex-home', String(options.codexHome));
  if (options.lockTimeout !== undefined) {
    args.push('--lock-timeout', String(seconds('lockTimeout', options.lockTimeout)));
  }
  if (options.requestTimeout !== undefined) {
    args.push('--request-timeout', String(seconds('requestTimeout', options.requestTimeout)));
  }
  return args;
}

/** The command's environment: the caller's (or this process's), with the per-call endpoint. */
function commandEnv(options) {
  const base = options.env || process.env;
  if (options.tokenUrl === undefined && options.clientId === undefined) return base;
  const env = { ...base };
  if (options.tokenUrl !== undefined) env[TOKEN_URL_ENV] = String(options.tokenUrl);
  if (options.clientId !== undefined) env[CLIENT_ID_ENV] = String(options.clientId);
  return env;
}

/** The refresh window in seconds: the one asked for, widened to the command's 300. */
function refreshWindow(options) {
  if (options.refreshWindow === undefined && options.minValid === undefined) {
    return DEFAULT_REFRESH_WINDOW;
  }
  const asked = seconds(
    options.refreshWindow !== undefined ? 'refreshWindow' : 'minValid',
    options.refreshWindow !== undefined ? options.refreshWindow : options.minValid,
  );
  return Math.max(DEFAULT_REFRESH_WINDOW, Math.ceil(asked));
}

function resolveBinary(options) {
  if (options.binary) return options.binary;
  try {
    return binaryPath();
  } catch (error) {
    throw new BinaryNotFound(error.message);
  }
}

function abortError(signal) {
  if (signal && signal.reason !== undefined) return signal.reason;
  const error = new Error('The operation was aborted');
  error.name = 'AbortError';
  error.code = 'ABORT_ERR';
  return error;
}

/**
 * Runs the binary with `args`, `input` on its stdin (or none); resolves with its exit code and
 * stdout. The error of a failed run carries the command's message from stderr, which never holds
 * a secret; stdout, which may hold a token, never goes into an error, nor does `input`.
 */
function run(args, options, signal, input) {
  return new Promise((resolve, reject) => {
    let binary;
    try {
      binary = resolveBinary(options);
    } catch (error) {
      reject(error);
      return;
    }
    if (signal && signal.aborted) {
      reject(abortError(signal));
      return;
    }
    const child = execFile(
      binary,
      args,
      {
        env: commandEnv(options),
        maxBuffer: MAX_OUTPUT,
        windowsHide: true,
        encoding: 'utf8',
        signal,
      },
      (error, stdout, stderr) => {
        if (signal && signal.aborted) {
          reject(abortError(signal));
          return;
        }
        if (error && typeof error.code !== 'number') {
          if (error.code === 'ENOENT' || error.code === 'EACCES') {
            reject(
              new BinaryNotFound(
                `authstore: cannot run ${binary} (${error.code}); reinstall the package ` +
                  'authstore with its optional dependencies, or set AUTHSTORE_BINARY',
              ),
            );
            return;
          }
          // Killed by a signal, or more output than expected.
          const why = error.signal ? `ended by ${error.signal}` : error.code || 'failed';
          reject(new AuthstoreError(`authstore: cannot run ${binary}: ${why}`, EXIT.OTHER));
          return;
        }
        resolve({ code: error ? error.code : 0, stdout, stderr });
      },
    );
    if (child.stdin) {
      // A child that exits before reading (bad arguments) closes the pipe: not an error here.
      child.stdin.on('error', () => {});
      child.stdin.end(input === undefined ? '' : input);
    }
  });
}

function failure(code, stderr) {
  const message = stderr.trim() || `authstore exited with code ${code}`;
  const Class = CLASSES[code];
  return Class ? new Class(message, code) : new AuthstoreError(message, code);
}

function parseJson(stdout, what) {
  try {
    return JSON.parse(stdout);
  } catch {
    // Not the output itself: it may hold a token.
    throw new AuthstoreError(`authstore ${what}: the command's output is not JSON`, EXIT.OTHER);
  }
}

function date(value) {
  return typeof value === 'string' ? new Date(value) : null;
}

function toCredentials(answer) {
  if (typeof answer.access_token !== 'string') {
    throw new AuthstoreError('authstore token: the answer holds no access token', EXIT.OTHER);
  }
  return Object.freeze({
    accessToken: answer.access_token,
    accountId: answer.account_id ?? null,
    expiresAt: date(answer.expires_at),
    headers: Object.freeze({ ...(answer.headers || {}) }),
  });
}

/** A copy for the caller, so that nobody can change what the cache holds. */
function copy(credentials) {
  return {
    accessToken: credentials.accessToken,
    accountId: credentials.accountId,
    expiresAt: credentials.expiresAt ? new Date(credentials.expiresAt.getTime()) : null,
    headers: { ...credentials.headers },
  };
}

// ---- The in-process cache ----------------------------------------------------------------

/**
 * One entry per store and endpoint: the Codex home, the token endpoint and the client id (as
 * given, else as the environment names them), and the binary. Two endpoints in one process
 * never share credentials.
 */
const cache = new Map();

function cacheKey(options) {
  const env = options.env || process.env;
  return JSON.stringify([
    options.codexHome !== undefined ? String(options.codexHome) : env.CODEX_HOME || '',
    options.tokenUrl !== undefined ? String(options.tokenUrl) : env[TOKEN_URL_ENV] || '',
    options.clientId !== undefined ? String(options.clientId) : env[CLIENT_ID_ENV] || '',
    options.binary || env.AUTHSTORE_BINARY || '',
    options.lockTimeout ?? null,
    options.requestTimeout ?? null,
  ]);
}

function entryFor(key) {
  let entry = cache.get(key);
  if (!entry) {
    entry = { credentials: null, flights: new Map(), replaced: new Map() };
    cache.set(key, entry);
  }
  return entry;
}

/** Fresh by the command's rule: a known expiry more than `window` seconds away. */
function isFresh(credentials, window, now = Date.now()) {
  return Boolean(
    credentials && credentials.expiresAt && credentials.expiresAt.getTime() - now > window * 1000,
  );
}

function digest(accessToken) {
  return createHash('sha256').update(accessToken).digest('hex');
}

/** The replacements this process learned, remembered for so many rejected tokens at most. */
const MAX_REPLACED = 16;

/**
 * A single-flight: callers of one `key` share one run of the command. Each caller's `signal`
 * rejects its own wait; the command is killed only when every caller waiting for it aborted.
 */
function shared(entry, key, start, signal) {
  let flight = entry.flights.get(key);
  if (!flight || flight.controller.signal.aborted) {
    const controller = new AbortController();
    flight = { controller, waiting: 0, promise: null };
    const current = flight;
    flight.promise = start(controller.signal).finally(() => {
      if (entry.flights.get(key) === current) entry.flights.delete(key);
    });
    // Nobody may be left waiting for a rejection (all aborted): not an unhandled one.
    flight.promise.catch(() => {});
    entry.flights.set(key, flight);
  }
  return wait(flight, signal);
}

function wait(flight, signal) {
  flight.waiting += 1;
  if (!signal) return flight.promise;
  if (signal.aborted) {
    leave(flight);
    return Promise.reject(abortError(signal));
  }
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      leave(flight);
      reject(abortError(signal));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    flight.promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

function leave(flight) {
  flight.waiting -= 1;
  if (flight.waiting === 0) flight.controller.abort();
}

function tokenArgs(options, window) {
  const args = [...globalArgs(options), 'token', '--format', 'json'];
  if (window !== DEFAULT_REFRESH_WINDOW) args.push('--min-valid', String(window));
  return args;
}

/** Runs `token --format json` (plus `extra`), caches and returns the credentials. */
async function fetchCredentials(entry, options, window, signal, extra = [], input) {
  const { code, stdout, stderr } = await run(
    [...tokenArgs(options, window), ...extra],
    options,
    signal,
    input,
  );
  if (code !== 0) throw failure(code, stderr);
  const fresh = toCredentials(parseJson(stdout, 'token'));
  // A run that began before a 401 was reported may end after it with the rejected token:
  // never cache that one again over its replacement.
  if (!entry.replaced.has(digest(fresh.accessToken))) entry.credentials = fresh;
  return fresh;
}

/** The cached (frozen) credentials when fresh, else the command's; shared, not copied. */
async function currentCredentials(options) {
  const signal = options.signal;
  if (signal && signal.aborted) throw abortError(signal);
  const window = refreshWindow(options);
  const entry = entryFor(cacheKey(options));
  if (isFresh(entry.credentials, window)) return entry.credentials;
  return shared(
    entry,
    `token:${window}`,
    (flightSignal) => fetchCredentials(entry, options, window, flightSignal),
    signal,
  );
}

/** Fresh credentials, refreshed (once across all processes) when stale; cached while fresh. */
async function credentials(options = {}) {
  return copy(await currentCredentials(options));
}

/** A valid access token. */
async function token(options = {}) {
  return (await credentials(options)).accessToken;
}

/**
 * After a request made with `rejected` (an access token, or the credentials it came from) got
 * HTTP 401: the credentials that replace it. The store still holding it: one refresh across all
 * processes; a newer token of the same account and user there: that one, with no call to the
 * token endpoint; another account's or user's login: `ReloginRequired` (`identity_changed`).
 * The token goes to the command on its standard input, never on its command line.
 */
async function unauthorized(rejected, options = {}) {
  return copy(await replacementFor(rejected, options));
}

/** unauthorized() without the copy. */
async function replacementFor(rejected, options) {
  const accessToken = typeof rejected === 'string' ? rejected : rejected && rejected.accessToken;
  if (typeof accessToken !== 'string' || accessToken === '') {
    throw new UsageError(
      'authstore: unauthorized() needs the rejected access token (a string) or the credentials ' +
        'that got the 401',
    );
  }
  const signal = options.signal;
  if (signal && signal.aborted) throw abortError(signal);
  const window = refreshWindow(options);
  const entry = entryFor(cacheKey(options));
  const id = digest(accessToken);
  // This process already asked about this token: the command's answer then still stands while
  // it is fresh (any number of requests that got a 401 for one token cost one run).
  const known = entry.replaced.get(id);
  if (known && isFresh(known, window)) {
    if (entry.credentials && entry.credentials.accessToken === accessToken) {
      entry.credentials = known;
    }
    return known;
  }
  return shared(
    entry,
    `rejected:${id}`,
    async (flightSignal) => {
      const replacement = await fetchCredentials(
        entry,
        options,
        window,
        flightSignal,
        ['--rejected-stdin'],
        `${accessToken}\n`,
      );
      entry.replaced.delete(id);
      entry.replaced.set(id, replacement);
      while (entry.replaced.size > MAX_REPLACED) {
        entry.replaced.delete(entry.replaced.keys().next().value);
      }
      return replacement;
    },
    signal,
  );
}

/**
 * Who is logged in and when the tokens expire, read without locking; never a secret. A home
 * nobody is logged in to gives `loggedIn: false` (not an error).
 */
async function status(options = {}) {
  const { code, stdout, stderr } = await run(
    [...globalArgs(options), 'status', '--json'],
    options,
    options.signal,
  );
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

/** Forgets the credentials this process cached (all of them, or those of `options`' store). */
function clearCache(options) {
  if (options === undefined) cache.clear();
  else cache.delete(cacheKey(options));
}

// ---- createFetch -------------------------------------------------------------------------

/**
 * A body that can be sent twice: none, a string, URLSearchParams, an ArrayBuffer or a typed
 * array (or DataView). A stream, a Blob, FormData or a Request's body is sent once: a 401 is
 * then returned as it is.
 */
function isReplayable(body) {
  return (
    body === undefined ||
    body === null ||
    typeof body === 'string' ||
    body instanceof URLSearchParams ||
    body instanceof ArrayBuffer ||
    ArrayBuffer.isView(body)
  );
}

const OWN_OPTIONS = [
  'codexHome',
  'tokenUrl',
  'clientId',
  'refreshWindow',
  'minValid',
  'lockTimeout',
  'requestTimeout',
  'binary',
  'env',
];

/**
 * A function with `fetch`'s signature that adds the credentials to every request
 * (`Authorization: Bearer` and `ChatGPT-Account-Id`, replacing the caller's) and, on HTTP 401,
 * calls `unauthorized` with exactly the token it sent and retries once when the body can be
 * sent again. A second 401 is returned as a response, never thrown.
 */
function createFetch(options = {}) {
  // The global fetch is looked up per request, so that a test's stub of it is used.
  const base = options.fetch;
  if (typeof (base || globalThis.fetch) !== 'function') {
    throw new UsageError('authstore: createFetch() needs a fetch (Node 18 or later has one)');
  }
  const own = {};
  for (const name of OWN_OPTIONS) if (options[name] !== undefined) own[name] = options[name];

  function send(input, init, creds) {
    const headers = new Headers(
      init && init.headers !== undefined
        ? init.headers
        : typeof Request !== 'undefined' && input instanceof Request
          ? input.headers
          : undefined,
    );
    headers.delete('authorization');
    headers.delete('chatgpt-account-id');
    for (const [name, value] of Object.entries(creds.headers)) headers.set(name, value);
    if (!headers.has('authorization')) headers.set('authorization', `Bearer ${creds.accessToken}`);
    return (base || globalThis.fetch)(input, { ...(init || {}), headers });
  }

  return async function authstoreFetch(input, init) {
    const signal = (init && init.signal) || options.signal || undefined;
    const callOptions = signal ? { ...own, signal } : own;
    const creds = await currentCredentials(callOptions);
    const response = await send(input, init, creds);
    if (response.status !== 401) return response;
    const body = init ? init.body : undefined;
    const requestBody = typeof Request !== 'undefined' && input instanceof Request && input.body;
    if (!isReplayable(body) || requestBody) return response;
    const replacement = await replacementFor(creds.accessToken, callOptions);
    // The first answer is dropped: free its connection.
    if (response.body && typeof response.body.cancel === 'function') {
      response.body.cancel().catch(() => {});
    }
    return send(input, init, replacement);
  };
}

module.exports = {
  token,
  credentials,
  unauthorized,
  status,
  createFetch,
  clearCache,
  binaryPath,
  AuthstoreError,
  UsageError,
  NotLoggedIn,
  ReloginRequired,
  Unavailable,
  InvalidFile,
  BinaryNotFound,
  EXIT,
};
