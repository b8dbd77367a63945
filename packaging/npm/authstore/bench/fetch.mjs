// The cost of createFetch (not shipped): per request, over a local HTTP server, against bare
// fetch, once warm (the credentials cached); and the cost of the spawn when the cache cannot
// answer: a fresh token read by the command, a refresh that is due, the 401 path.
//
//   node packaging/npm/authstore/bench/fetch.mjs [--quick]
//
// The binary: AUTHSTORE_BINARY, else the package's bundled one (a release build gives the
// figures users see: cargo build --release -p authstore-cli). The embedded token authority
// (`authstore authority`) and the resource server listen on loopback; tokens are fake JWTs.
// Variants alternate batch by batch so that a slow moment of the machine hits both.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const api = require(process.env.AUTHSTORE_PACKAGE_DIR || path.join(here, '..'));

const quick = process.argv.includes('--quick');
const BATCHES = quick ? 6 : 40;
const PER_BATCH = 250;
const WARMUP = quick ? 300 : 2000;
const SPAWNS = quick ? 7 : 31;

function quantile(sorted, q) {
  const index = Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))));
  return sorted[index];
}

function summary(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    n: sorted.length,
    median: quantile(sorted, 0.5),
    p10: quantile(sorted, 0.1),
    p90: quantile(sorted, 0.9),
    p99: quantile(sorted, 0.99),
  };
}

async function startAuthority(accessTtl) {
  const child = spawn(api.binaryPath(), ['authority', '--port', '0', '--access-ttl', String(accessTtl)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error('the authority did not start')), 60_000);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      text += chunk;
      if (text.includes('\n')) {
        clearTimeout(timer);
        resolve(text.slice(0, text.indexOf('\n')));
      }
    });
  });
  child.stdout.resume();
  const baseUrl = /^listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(line)[1];
  return {
    tokenUrl: `${baseUrl}/oauth/token`,
    async stats() {
      return (await fetch(`${baseUrl}/sim/stats`)).json();
    },
    async login(account, user) {
      const response = await fetch(`${baseUrl}/sim/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ account_id: account, user_id: user, email: `${user}@example.com`, plan: 'plus' }),
      });
      return response.json();
    },
    close() {
      return new Promise((resolve) => {
        child.once('exit', resolve);
        child.kill('SIGINT');
      });
    },
  };
}

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'authstore-bench-'));
process.on('exit', () => fs.rmSync(scratch, { recursive: true, force: true }));

function home(name, document) {
  const dir = path.join(scratch, name);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'auth.json'), JSON.stringify(document, null, 2), { mode: 0o600 });
  return dir;
}

const server = http.createServer((request, response) => {
  request.resume();
  request.on('end', () => {
    const ok = (request.headers.authorization || '').startsWith('Bearer ');
    response.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' });
    response.end('{"ok":true}');
  });
});
server.keepAliveTimeout = 60_000;
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const url = `http://127.0.0.1:${server.address().port}/v1/ping`;

const fresh = await startAuthority(3600);
const freshHome = home('fresh', await fresh.login('acct-bench', 'user-bench'));
const options = { codexHome: freshHome, tokenUrl: fresh.tokenUrl };
const authFetch = api.createFetch(options);

async function one(fetchFunction) {
  const start = process.hrtime.bigint();
  // The same init for both: bare fetch with a bearer header as a caller would set it;
  // createFetch replaces it with the cached credentials.
  const response = await fetchFunction(url, {
    method: 'POST',
    headers: { authorization: 'Bearer static', 'content-type': 'application/json' },
    body: '{"n":1}',
  });
  await response.arrayBuffer();
  const elapsed = Number(process.hrtime.bigint() - start) / 1e6;
  if (response.status !== 200) throw new Error(`status ${response.status}`);
  return elapsed;
}

// Warm: connections open, JIT settled, the credentials cached (one spawn).
for (let i = 0; i < WARMUP; i += 1) {
  await one(fetch);
  await one(authFetch);
}
const bare = [];
const wrapped = [];
for (let batch = 0; batch < BATCHES; batch += 1) {
  const order = batch % 2 ? [[authFetch, wrapped], [fetch, bare]] : [[fetch, bare], [authFetch, wrapped]];
  for (const [fetchFunction, samples] of order) {
    for (let i = 0; i < PER_BATCH; i += 1) samples.push(await one(fetchFunction));
  }
}

async function timed(action) {
  const start = process.hrtime.bigint();
  await action();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

// A fresh token that the cache does not hold: one `authstore token --format json`, no refresh.
const readSamples = [];
for (let i = 0; i < SPAWNS; i += 1) {
  api.clearCache(options);
  readSamples.push(await timed(() => api.credentials(options)));
}

// A refresh due: an authority whose tokens live 60 s (under the 300 s window), so that every
// call finds its token stale and refreshes through the transaction (lock, re-read, POST, write).
const shortLived = await startAuthority(60);
const dueHome = home('due', await shortLived.login('acct-due', 'user-due'));
const dueOptions = { codexHome: dueHome, tokenUrl: shortLived.tokenUrl };
const before = (await shortLived.stats()).refresh_calls;
const dueSamples = [];
for (let i = 0; i < SPAWNS; i += 1) dueSamples.push(await timed(() => api.credentials(dueOptions)));
const dueCalls = (await shortLived.stats()).refresh_calls - before;

// The 401 path: unauthorized() with the current token, which the store still holds: a refresh.
const rejectedSamples = [];
for (let i = 0; i < SPAWNS; i += 1) {
  const current = await api.credentials(options);
  rejectedSamples.push(await timed(() => api.unauthorized(current, options)));
}

server.closeAllConnections();
server.close();
await fresh.close();
await shortLived.close();

const rows = [
  ['bare fetch (baseline)', summary(bare)],
  ['createFetch, token cached', summary(wrapped)],
];
const spawnRows = [
  ['credentials(), fresh token, cache empty', summary(readSamples)],
  ['credentials(), refresh due', summary(dueSamples)],
  ['unauthorized(), store holds that token', summary(rejectedSamples)],
];
const ms = (value) => `${value.toFixed(3)} ms`;
const pad = (text, width) => text.padEnd(width);
console.log(`per request, warm, POST over loopback keep-alive (${BATCHES} x ${PER_BATCH} each, alternating)`);
console.log(`${pad('', 32)}${pad('median', 12)}${pad('p10', 12)}${pad('p90', 12)}p99`);
for (const [name, s] of rows) {
  console.log(`${pad(name, 32)}${pad(ms(s.median), 12)}${pad(ms(s.p10), 12)}${pad(ms(s.p90), 12)}${ms(s.p99)}`);
}
const overhead = rows[1][1].median - rows[0][1].median;
console.log(`createFetch - fetch, medians: ${(overhead * 1000).toFixed(1)} us (target: within 100 us)`);
console.log('');
console.log(`when the cache cannot answer (one run of the binary each, ${SPAWNS} runs)`);
console.log(`${pad('', 42)}${pad('median', 12)}${pad('p10', 12)}p90`);
for (const [name, s] of spawnRows) {
  console.log(`${pad(name, 42)}${pad(ms(s.median), 12)}${pad(ms(s.p10), 12)}${ms(s.p90)}`);
}
console.log(`authority calls for ${SPAWNS} credentials() with a refresh due: ${dueCalls}`);
console.log(
  JSON.stringify({
    node: process.version,
    binary: api.binaryPath(),
    cpus: os.cpus().length,
    loadavg: os.loadavg(),
    perRequest: Object.fromEntries(rows),
    overheadMedianMs: overhead,
    spawn: Object.fromEntries(spawnRows),
    dueCalls,
  }),
);
