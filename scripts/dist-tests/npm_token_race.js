'use strict';
// N Node processes call the installed package's token() at once on one stale token
// (scripts/dist-tests.sh):
//
//   node npm_token_race.js PACKAGE_DIR CODEX_HOME AUTHORITY_BASE_URL [N]
//
// Passes when the authority saw exactly one refresh call and no reuse, and every process got the
// access token auth.json then holds. Only SHA-256 prefixes of tokens are ever printed.

const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const digest = (token) => crypto.createHash('sha256').update(token).digest('hex').slice(0, 12);

if (process.argv[2] === '--child') {
  const api = require(process.argv[3]);
  api
    .token({ codexHome: process.argv[4] })
    .then((token) => process.stdout.write(`${digest(token)}\n`))
    .catch((error) => {
      process.stderr.write(`${error.name}: ${error.message} (exit code ${error.exitCode})\n`);
      process.exit(1);
    });
  return;
}

async function stats(base) {
  const answer = await fetch(`${base}/sim/stats`);
  if (!answer.ok) throw new Error(`GET ${base}/sim/stats: ${answer.status}`);
  return answer.json();
}

function child(packageDir, home) {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [__filename, '--child', packageDir, home], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    proc.stdout.on('data', (chunk) => (out += chunk));
    proc.on('error', reject);
    proc.on('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`a process exited with ${code}`))));
  });
}

async function main() {
  const [packageDir, home, baseArg, n = '8'] = process.argv.slice(2);
  const base = baseArg.replace(/\/$/, '');
  const before = await stats(base);
  const digests = await Promise.all(Array.from({ length: Number(n) }, () => child(path.resolve(packageDir), home)));
  const after = await stats(base);
  const stored = JSON.parse(fs.readFileSync(path.join(home, 'auth.json'), 'utf8')).tokens.access_token;

  const calls = after.refresh_calls - before.refresh_calls;
  const failures = [];
  if (calls !== 1) failures.push(`expected 1 refresh call, the authority saw ${calls}`);
  if (after.reuse_rejections !== before.reuse_rejections) failures.push('a refresh token was reused');
  if (after.families_revoked !== before.families_revoked) failures.push('a token family was revoked');
  const distinct = new Set(digests);
  if (distinct.size !== 1) failures.push(`the ${n} processes got ${distinct.size} different tokens`);
  if (!distinct.has(digest(stored))) failures.push('the processes got another token than auth.json holds');
  if (failures.length) {
    console.error(`npm token race: ${failures.join('; ')}`);
    process.exit(1);
  }
  console.log(`npm token race: ${n} processes, 1 refresh call, 0 reused, one token (${[...distinct][0]}…)`);
}

main().catch((error) => {
  console.error(`npm token race: ${error.message}`);
  process.exit(1);
});
