'use strict';
// Fixtures of the Node tests: the package under test (the source one, or an installed copy
// named by AUTHSTORE_PACKAGE_DIR), the embedded token authority run as `authstore authority`
// (rotation, family revocation on reuse, counters at GET /sim/stats), Codex homes logged in
// through it, and a local resource server that rejects chosen tokens. Everything listens on
// loopback; every token is a fake JWT; every wait is bounded.

const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');

/** No step of a test may take longer than this (milliseconds). */
const BOUND = 60_000;

const PACKAGE_DIR = process.env.AUTHSTORE_PACKAGE_DIR
  ? path.resolve(process.env.AUTHSTORE_PACKAGE_DIR)
  : path.resolve(__dirname, '..');

// eslint-disable-next-line import/no-dynamic-require
const api = require(PACKAGE_DIR);

/** The real binary: AUTHSTORE_BINARY (the source package), else the installed package's own. */
function realBinary() {
  return api.binaryPath();
}

const scratch = [];
process.on('exit', () => {
  for (const dir of scratch) fs.rmSync(dir, { recursive: true, force: true });
});

function tempDir(prefix = 'authstore-node-') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  scratch.push(dir);
  return dir;
}

/** Resolves with the first line `stream` gives, within `bound` ms. */
function firstLine(stream, bound, what) {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`${what}: no output within ${bound} ms`)), bound);
    const onData = (chunk) => {
      text += chunk;
      const end = text.indexOf('\n');
      if (end >= 0) {
        clearTimeout(timer);
        stream.off('data', onData);
        resolve(text.slice(0, end));
      }
    };
    stream.setEncoding('utf8');
    stream.on('data', onData);
    stream.on('end', () => {
      clearTimeout(timer);
      reject(new Error(`${what}: ended before a line`));
    });
  });
}

async function httpJson(method, url, body) {
  const response = await fetch(url, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(BOUND),
  });
  assert.equal(response.status, 200, `${method} ${url}`);
  return response.json();
}

/** The embedded token authority on a free loopback port; `accessTtl`: lifetime of issued tokens (s). */
async function startAuthority({ accessTtl = 3600 } = {}) {
  const child = spawn(
    realBinary(),
    ['authority', '--port', '0', '--access-ttl', String(accessTtl)],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const line = await firstLine(child.stdout, BOUND, 'authstore authority');
  const match = /^listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(line);
  assert.ok(match, `authstore authority said: ${line}`);
  child.stdout.resume();
  const baseUrl = match[1];
  return {
    baseUrl,
    tokenUrl: `${baseUrl}/oauth/token`,
    stats: () => httpJson('GET', `${baseUrl}/sim/stats`),
    /** A new login (a new token family) for `account`/`user`: an auth.json document. */
    login: (account = 'acct-node', user = 'user-node') =>
      httpJson('POST', `${baseUrl}/sim/login`, {
        account_id: account,
        user_id: user,
        email: `${user}@example.com`,
        plan: 'plus',
      }),
    close: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGINT');
      }),
  };
}

/** A Codex home holding `document` as auth.json (mode 0600). */
function homeWith(document) {
  const home = tempDir('authstore-home-');
  if (document !== undefined) writeAuth(home, document);
  return home;
}

function writeAuth(home, document) {
  const file = path.join(home, 'auth.json');
  fs.writeFileSync(file, `${JSON.stringify(document, null, 2)}\n`, { mode: 0o600 });
  fs.chmodSync(file, 0o600);
}

function readAuth(home) {
  return JSON.parse(fs.readFileSync(path.join(home, 'auth.json'), 'utf8'));
}

function claimsOf(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));
}

/** A fake, unsigned JWT of `claims`. */
function fakeJwt(claims) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'none', typ: 'JWT' })}.${part(claims)}.fake-signature`;
}

/**
 * `document` with its access token replaced by a fake JWT of the same claims whose `exp` is
 * `secondsLeft` from now (negative: in the past), so that it is stale without sleeping.
 */
function withExpiry(document, secondsLeft) {
  const copy = JSON.parse(JSON.stringify(document));
  const claims = claimsOf(copy.tokens.access_token);
  claims.exp = Math.floor(Date.now() / 1000) + secondsLeft;
  claims.fixture = crypto.randomUUID();
  copy.tokens.access_token = fakeJwt(claims);
  return copy;
}

/**
 * An executable that counts its runs (one line per run in its count file) and then runs
 * `target` (default: the real binary) with the same arguments.
 */
function countingBinary(target = realBinary()) {
  const dir = tempDir('authstore-bin-');
  const counter = path.join(dir, 'runs');
  fs.writeFileSync(counter, '');
  const file = path.join(dir, 'authstore');
  const quote = (text) => `'${text.replace(/'/g, "'\\''")}'`;
  fs.writeFileSync(file, `#!/bin/sh\necho run >> ${quote(counter)}\nexec ${quote(target)} "$@"\n`, {
    mode: 0o755,
  });
  return {
    path: file,
    runs: () => fs.readFileSync(counter, 'utf8').split('\n').filter(Boolean).length,
  };
}

/** An executable that never answers: it sleeps (for aborts). */
function sleepingBinary() {
  const dir = tempDir('authstore-bin-');
  const file = path.join(dir, 'authstore');
  fs.writeFileSync(file, '#!/bin/sh\nexec sleep 30\n', { mode: 0o755 });
  return file;
}

/** `actual` is the token `expected`; a failure says so without showing either (no secret in a message). */
function sameSecret(actual, expected, what = 'the token') {
  assert.ok(actual === expected, `${what}: not the expected token (values not shown)`);
}

function sha256(text) {
  return crypto.createHash('sha256').update(text).digest('hex');
}

/**
 * A resource server on loopback: answers 401 to a request whose bearer token is in `rejected`
 * (a Set the test changes), else 200 with JSON `{ ok, token: sha256 of the token, body }`.
 * Records every request as `{ method, url, token (sha256), accountId, body, status }`.
 */
async function startResourceServer() {
  const rejected = new Set();
  const requests = [];
  let rejectAll = false;
  const server = http.createServer((request, response) => {
    const chunks = [];
    request.on('data', (chunk) => chunks.push(chunk));
    request.on('end', () => {
      const header = request.headers.authorization || '';
      const bearer = header.startsWith('Bearer ') ? header.slice(7) : '';
      const body = Buffer.concat(chunks).toString('utf8');
      const refuse = rejectAll || bearer === '' || rejected.has(bearer);
      const record = {
        method: request.method,
        url: request.url,
        token: sha256(bearer),
        authorizations: request.headersDistinct
          ? request.headersDistinct.authorization || []
          : [header],
        accountId: request.headers['chatgpt-account-id'] ?? null,
        custom: request.headers['x-custom'] ?? null,
        body,
        status: refuse ? 401 : 200,
      };
      requests.push(record);
      response.writeHead(record.status, { 'content-type': 'application/json' });
      response.end(
        JSON.stringify(refuse ? { error: 'unauthorized' } : { ok: true, token: record.token, body }),
      );
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    rejected,
    requests,
    setRejectAll(value) {
      rejectAll = value;
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

module.exports = {
  BOUND,
  PACKAGE_DIR,
  api,
  realBinary,
  tempDir,
  startAuthority,
  homeWith,
  writeAuth,
  readAuth,
  claimsOf,
  fakeJwt,
  withExpiry,
  countingBinary,
  sleepingBinary,
  sameSecret,
  sha256,
  startResourceServer,
};
