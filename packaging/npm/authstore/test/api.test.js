'use strict';
// The API points one by one, in one process: token(), credentials(), unauthorized(), status(),
// the cache, per-call options, errors and aborts.

const assert = require('node:assert/strict');
const { after, before, describe, test } = require('node:test');
const util = require('node:util');
const h = require('./helpers.js');

const { api } = h;

let authority;
before(async () => {
  authority = await h.startAuthority();
});
after(async () => {
  await authority.close();
});

/** Options for `home` against the test authority, through a run-counting binary. */
function setup(document) {
  const home = h.homeWith(document);
  const binary = h.countingBinary();
  return { home, binary, options: { codexHome: home, tokenUrl: authority.tokenUrl, binary: binary.path } };
}

async function refreshCalls() {
  return (await authority.stats()).refresh_calls;
}

/** Every string of `value` (an error) as util.inspect and the message show it. */
function shown(error) {
  return `${error.message}\n${util.inspect(error, { depth: 5, showHidden: true })}\n${String(error.stack)}`;
}

describe('token() and credentials()', () => {
  test('a fresh token is read once, then served from the cache with no spawn', async () => {
    const document = await authority.login('acct-a', 'user-a');
    const { binary, options } = setup(document);
    const before = await refreshCalls();

    const creds = await api.credentials(options);
    h.sameSecret(creds.accessToken, document.tokens.access_token);
    assert.equal(creds.accountId, 'acct-a');
    assert.ok(creds.expiresAt instanceof Date && creds.expiresAt > new Date());
    h.sameSecret(creds.headers.Authorization, `Bearer ${document.tokens.access_token}`);
    assert.equal(creds.headers['ChatGPT-Account-Id'], 'acct-a');
    assert.equal(binary.runs(), 1);

    for (let i = 0; i < 20; i += 1) {
      h.sameSecret(await api.token(options), document.tokens.access_token);
    }
    const many = await Promise.all(Array.from({ length: 20 }, () => api.credentials(options)));
    assert.ok(many.every((c) => c.accessToken === document.tokens.access_token));
    assert.equal(binary.runs(), 1, 'a fresh token costs no spawn');
    assert.equal(await refreshCalls(), before);

    // What the caller gets is a copy: changing it changes nothing cached.
    creds.headers.Authorization = 'changed';
    h.sameSecret((await api.credentials(options)).headers.Authorization, `Bearer ${document.tokens.access_token}`);
  });

  test('a stale token is refreshed once for concurrent callers, then cached', async () => {
    const stale = h.withExpiry(await authority.login('acct-b', 'user-b'), -60);
    const { home, binary, options } = setup(stale);
    const before = await refreshCalls();

    const all = await Promise.all(Array.from({ length: 10 }, () => api.token(options)));
    const onDisk = h.readAuth(home).tokens.access_token;
    assert.ok(onDisk !== stale.tokens.access_token, 'refreshed');
    assert.ok(all.every((t) => t === onDisk), 'every caller gets the new token');
    assert.equal(binary.runs(), 1, 'one spawn for ten concurrent callers');
    assert.equal((await refreshCalls()) - before, 1);
    await api.token(options);
    assert.equal(binary.runs(), 1);
  });

  test('refreshWindow: a token with less than the window left is refreshed, the default keeps it', async () => {
    // Ten minutes left: fresh by the default 300 s, stale for a 900 s window.
    const document = h.withExpiry(await authority.login('acct-w', 'user-w'), 600);
    const { binary, options } = setup(document);
    const before = await refreshCalls();
    h.sameSecret(await api.token(options), document.tokens.access_token);
    assert.equal(binary.runs(), 1);
    const renewed = await api.token({ ...options, refreshWindow: 900 });
    assert.ok(renewed !== document.tokens.access_token);
    assert.equal((await refreshCalls()) - before, 1);
    assert.equal(binary.runs(), 2);
  });

  test('the same home through two token URLs never shares a cache entry', async () => {
    const document = await authority.login('acct-c', 'user-c');
    const { binary, options } = setup(document);
    await api.token(options);
    await api.token({ ...options, tokenUrl: `${authority.tokenUrl}?other` });
    await api.token({ ...options, clientId: 'app_other' });
    assert.equal(binary.runs(), 3);
    await api.token(options);
    assert.equal(binary.runs(), 3);
    api.clearCache(options);
    await api.token(options);
    assert.equal(binary.runs(), 4);
  });
});

describe('unauthorized()', () => {
  test('the store still holding the rejected token: one refresh, however many callers report it', async () => {
    const document = await authority.login('acct-d', 'user-d');
    const { home, binary, options } = setup(document);
    const rejected = await api.credentials(options);
    const before = await refreshCalls();

    const answers = await Promise.all(
      Array.from({ length: 8 }, (_, i) => api.unauthorized(i % 2 ? rejected : rejected.accessToken, options)),
    );
    const onDisk = h.readAuth(home).tokens.access_token;
    assert.ok(onDisk !== rejected.accessToken);
    assert.ok(answers.every((c) => c.accessToken === onDisk));
    h.sameSecret(answers[0].headers.Authorization, `Bearer ${onDisk}`);
    assert.equal((await refreshCalls()) - before, 1);
    assert.equal(binary.runs(), 2, 'one spawn for the token, one for the eight reports');
    // The replacement is cached, and a late report of the same token costs nothing.
    h.sameSecret(await api.token(options), onDisk);
    h.sameSecret((await api.unauthorized(rejected, options)).accessToken, onDisk);
    assert.equal(binary.runs(), 2);
  });

  test('a newer token of the same account and user in the store: that one, no authority call', async () => {
    const first = await authority.login('acct-e', 'user-e');
    const { home, options } = setup(first);
    const newer = await authority.login('acct-e', 'user-e');
    h.writeAuth(home, newer);
    const before = await refreshCalls();
    const answer = await api.unauthorized(first.tokens.access_token, options);
    h.sameSecret(answer.accessToken, newer.tokens.access_token);
    assert.equal(await refreshCalls(), before);
  });

  test('another account or user in the store: ReloginRequired (identity_changed), nothing handed out', async () => {
    for (const [account, user] of [
      ['acct-f', 'user-other'],
      ['acct-other', 'user-f'],
    ]) {
      const mine = await authority.login('acct-f', 'user-f');
      const { home, options } = setup(mine);
      const theirs = await authority.login(account, user);
      h.writeAuth(home, theirs);
      const before = await refreshCalls();
      const error = await api.unauthorized(mine.tokens.access_token, options).then(
        () => assert.fail('another identity was handed out'),
        (e) => e,
      );
      assert.ok(error instanceof api.ReloginRequired);
      assert.ok(error instanceof api.AuthstoreError);
      assert.equal(error.exitCode, 4);
      assert.equal(error.kind, 'relogin_required');
      assert.equal(error.reason, 'identity_changed');
      const text = shown(error);
      for (const secret of [mine.tokens.access_token, theirs.tokens.access_token, theirs.tokens.refresh_token]) {
        assert.ok(!text.includes(secret), 'no token in the error');
      }
      assert.equal(await refreshCalls(), before);
      h.sameSecret(h.readAuth(home).tokens.access_token, theirs.tokens.access_token);
    }
  });

  test('a missing or empty token is a UsageError, before any spawn', async () => {
    const { binary, options } = setup(await authority.login());
    for (const bad of ['', undefined, null, {}, { accessToken: 42 }]) {
      await assert.rejects(api.unauthorized(bad, options), (e) => e instanceof api.UsageError && e.exitCode === 2);
    }
    assert.equal(binary.runs(), 0);
    // A token the command refuses (two lines) is its usage error, exit code 2; not shown.
    const error = await api.unauthorized('secret-part\nmore', options).catch((e) => e);
    assert.ok(error instanceof api.UsageError, String(error));
    assert.ok(!shown(error).includes('secret-part'));
  });
});

describe('status()', () => {
  test('who is logged in, never a secret; nobody logged in is loggedIn: false', async () => {
    const document = await authority.login('acct-s', 'user-s');
    const { options } = setup(document);
    const answer = await api.status(options);
    assert.equal(answer.loggedIn, true);
    assert.equal(answer.accountId, 'acct-s');
    assert.equal(answer.userId, 'user-s');
    assert.equal(answer.email, 'user-s@example.com');
    assert.ok(answer.expiresAt instanceof Date);
    const text = JSON.stringify(answer);
    for (const secret of [document.tokens.access_token, document.tokens.refresh_token]) {
      assert.ok(!text.includes(secret));
    }
    const empty = await api.status({ ...options, codexHome: h.homeWith() });
    assert.equal(empty.loggedIn, false);
  });
});

describe('errors', () => {
  test('one class per exit code, with the exit code and the kind, and no secret', async () => {
    const notLoggedIn = await api.token({ codexHome: h.homeWith(), tokenUrl: authority.tokenUrl }).catch((e) => e);
    assert.ok(notLoggedIn instanceof api.NotLoggedIn, String(notLoggedIn));
    assert.equal(notLoggedIn.exitCode, 3);
    assert.equal(notLoggedIn.kind, 'not_logged_in');
    assert.equal(notLoggedIn.name, 'NotLoggedIn');

    const invalid = h.homeWith();
    require('node:fs').writeFileSync(`${invalid}/auth.json`, '{"tokens": 42', { mode: 0o600 });
    const invalidFile = await api.token({ codexHome: invalid }).catch((e) => e);
    assert.ok(invalidFile instanceof api.InvalidFile, String(invalidFile));
    assert.equal(invalidFile.exitCode, 6);
    assert.equal(invalidFile.kind, 'invalid_file');

    // A stale token and an endpoint nobody listens on: temporarily unavailable.
    const stale = h.withExpiry(await authority.login('acct-u', 'user-u'), -60);
    const closed = await h.startResourceServer();
    await closed.close();
    const unavailable = await api
      .token({ codexHome: h.homeWith(stale), tokenUrl: `${closed.url}/oauth/token`, requestTimeout: 5 })
      .catch((e) => e);
    assert.ok(unavailable instanceof api.Unavailable, String(unavailable));
    assert.equal(unavailable.exitCode, 5);
    assert.equal(unavailable.kind, 'unavailable');

    const usage = await api.token({ lockTimeout: -1 }).catch((e) => e);
    assert.ok(usage instanceof api.UsageError);

    for (const error of [notLoggedIn, invalidFile, unavailable]) {
      const text = shown(error);
      for (const secret of [stale.tokens.access_token, stale.tokens.refresh_token, stale.tokens.id_token]) {
        assert.ok(!text.includes(secret), 'no token in any error');
      }
      assert.ok(error.message.length > 10, 'the command says what happened');
    }
  });

  test('lockTimeout: a transaction held elsewhere past the deadline is Unavailable', async (t) => {
    const { spawnSync, spawn } = require('node:child_process');
    if (spawnSync('flock', ['--version']).status !== 0) {
      t.skip('flock(1) is not installed');
      return;
    }
    const stale = h.withExpiry(await authority.login('acct-l', 'user-l'), -60);
    const { home, options } = setup(stale);
    // Another process holds Codex's transaction lock (flock, as Codex and the command take it).
    const holder = spawn('flock', ['--exclusive', `${home}/auth.lock`, 'sleep', '30'], { stdio: 'ignore' });
    try {
      const fs = require('node:fs');
      const deadline = Date.now() + h.BOUND;
      while (spawnSync('flock', ['--nonblock', `${home}/auth.lock`, 'true']).status === 0) {
        assert.ok(Date.now() < deadline, 'the holder took the lock');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.ok(fs.existsSync(`${home}/auth.lock`));
      const started = Date.now();
      const error = await api.token({ ...options, lockTimeout: 0.5 }).catch((e) => e);
      assert.ok(error instanceof api.Unavailable, String(error));
      assert.equal(error.exitCode, 5);
      assert.match(error.message, /auth\.lock/);
      assert.ok(Date.now() - started < 20_000);
    } finally {
      holder.kill();
    }
  });

  test('a missing platform binary is BinaryNotFound, naming the package to install', async () => {
    // The package's lib/ alone, where no per-platform package can be resolved, in a process
    // without AUTHSTORE_BINARY.
    const fs = require('node:fs');
    const path = require('node:path');
    const dir = h.tempDir('authstore-nobin-');
    fs.cpSync(path.join(h.PACKAGE_DIR, 'lib'), path.join(dir, 'lib'), { recursive: true });
    const { execFileSync } = require('node:child_process');
    const env = { ...process.env };
    delete env.AUTHSTORE_BINARY;
    delete env.NODE_PATH;
    const script = `
      const api = require(${JSON.stringify(path.join(dir, 'lib', 'index.js'))});
      api.token({ codexHome: ${JSON.stringify(dir)} }).then(
        () => console.log(JSON.stringify({ ok: true })),
        (e) => console.log(JSON.stringify({ name: e.name, kind: e.kind, exitCode: e.exitCode, message: e.message,
          isBase: e instanceof api.AuthstoreError })));`;
    const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { env, cwd: dir, encoding: 'utf8', timeout: h.BOUND }));
    assert.equal(out.name, 'BinaryNotFound');
    assert.equal(out.kind, 'binary_not_found');
    assert.equal(out.exitCode, 1);
    assert.equal(out.isBase, true);
    const expected = { 'linux-x64': '@authstore/linux-x64', 'linux-arm64': '@authstore/linux-arm64' }[
      `${process.platform}-${process.arch}`
    ];
    assert.ok(out.message.includes(expected), out.message);

    const gone = await api.token({ codexHome: dir, binary: path.join(dir, 'no-such-authstore') }).catch((e) => e);
    assert.ok(gone instanceof api.BinaryNotFound, String(gone));
    assert.match(gone.message, /AUTHSTORE_BINARY/);
  });
});

describe('signal', () => {
  test('an aborted call rejects with the abort reason and kills the command', async () => {
    const home = h.homeWith(await authority.login('acct-g', 'user-g'));
    const options = { codexHome: home, binary: h.sleepingBinary() };
    const controller = new AbortController();
    const started = Date.now();
    const pending = api.token({ ...options, signal: controller.signal });
    setTimeout(() => controller.abort(), 100);
    await assert.rejects(pending, (e) => e.name === 'AbortError');
    assert.ok(Date.now() - started < 10_000, 'the call ended with the abort, not the command');

    // Already aborted: no spawn at all.
    const counting = h.countingBinary();
    await assert.rejects(
      api.token({ codexHome: home, binary: counting.path, signal: AbortSignal.abort() }),
      (e) => e.name === 'AbortError',
    );
    await assert.rejects(
      api.unauthorized('x.y.z', { codexHome: home, binary: counting.path, signal: AbortSignal.abort() }),
      (e) => e.name === 'AbortError',
    );
    assert.equal(counting.runs(), 0);
  });

  test('one caller aborting does not fail another waiting for the same command', async () => {
    const stale = h.withExpiry(await authority.login('acct-h', 'user-h'), -60);
    const { options } = setup(stale);
    const controller = new AbortController();
    const aborted = api.token({ ...options, signal: controller.signal });
    const patient = api.token(options);
    controller.abort();
    await assert.rejects(aborted, (e) => e.name === 'AbortError');
    const value = await patient;
    assert.ok(typeof value === 'string' && value !== stale.tokens.access_token);
  });
});
