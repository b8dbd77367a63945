'use strict';
// createFetch: the headers, the 401 recovery with a replayed body, a second 401 as a
// response, bodies that cannot be replayed; eight Node processes that all get a 401 for one
// token; two token endpoints in one process.

const assert = require('node:assert/strict');
const { fork } = require('node:child_process');
const path = require('node:path');
const { after, before, describe, test } = require('node:test');
const h = require('./helpers.js');

const { api } = h;

let authority;
let resource;
before(async () => {
  authority = await h.startAuthority();
  resource = await h.startResourceServer();
});
after(async () => {
  await resource.close();
  await authority.close();
});

async function refreshCalls(which = authority) {
  return (await which.stats()).refresh_calls;
}

async function loggedIn(account, user) {
  const document = await authority.login(account, user);
  const home = h.homeWith(document);
  return { document, home, options: { codexHome: home, tokenUrl: authority.tokenUrl } };
}

function since(start) {
  return resource.requests.slice(start);
}

describe('createFetch', () => {
  test('sets Authorization and ChatGPT-Account-Id, replacing the caller\'s, and keeps the rest', async () => {
    const { document, options } = await loggedIn('acct-1', 'user-1');
    const authFetch = api.createFetch(options);
    const start = resource.requests.length;
    const response = await authFetch(`${resource.url}/a`, {
      headers: { Authorization: 'Bearer caller-token', 'chatgpt-account-id': 'caller', 'x-custom': 'kept' },
    });
    assert.equal(response.status, 200);
    const [seen] = since(start);
    assert.equal(seen.token, h.sha256(document.tokens.access_token));
    assert.equal(seen.authorizations.length, 1);
    assert.equal(seen.accountId, 'acct-1');
    assert.equal(seen.custom, 'kept');
    // A Request object's own headers are kept too.
    const start2 = resource.requests.length;
    await authFetch(new Request(`${resource.url}/b`, { headers: { 'x-custom': 'from-request' } }));
    assert.equal(since(start2)[0].custom, 'from-request');
    assert.equal(since(start2)[0].token, h.sha256(document.tokens.access_token));
  });

  test('a 401 recovers with exactly the token it sent and retries once, replaying the body', async () => {
    const bodies = [
      ['none', undefined, ''],
      ['string', 'plain text', 'plain text'],
      ['URLSearchParams', new URLSearchParams({ a: '1', b: 'two' }), 'a=1&b=two'],
      ['ArrayBuffer', new TextEncoder().encode('array buffer').buffer, 'array buffer'],
      ['Uint8Array', new TextEncoder().encode('typed array'), 'typed array'],
    ];
    for (const [kind, body, expected] of bodies) {
      const { document, home, options } = await loggedIn('acct-2', `user-${kind}`);
      const authFetch = api.createFetch(options);
      const sent = document.tokens.access_token;
      resource.rejected.add(sent);
      const before = await refreshCalls();
      const start = resource.requests.length;
      const response = await authFetch(`${resource.url}/r`, {
        method: body === undefined ? 'GET' : 'POST',
        body,
      });
      assert.equal(response.status, 200, kind);
      const renewed = h.readAuth(home).tokens.access_token;
      assert.ok(renewed !== sent, kind);
      const seen = since(start);
      assert.deepEqual(
        seen.map((r) => [r.status, r.token, r.body]),
        [
          [401, h.sha256(sent), expected],
          [200, h.sha256(renewed), expected],
        ],
        kind,
      );
      assert.equal((await refreshCalls()) - before, 1, kind);
    }
  });

  test('a second 401 is returned as the response, never thrown', async () => {
    const { options } = await loggedIn('acct-3', 'user-3');
    const authFetch = api.createFetch(options);
    resource.setRejectAll(true);
    try {
      const start = resource.requests.length;
      const response = await authFetch(`${resource.url}/x`, { method: 'POST', body: 'again' });
      assert.equal(response.status, 401);
      assert.deepEqual(await response.json(), { error: 'unauthorized' });
      assert.equal(since(start).length, 2, 'one retry, no more');
    } finally {
      resource.setRejectAll(false);
    }
  });

  test('a body that cannot be replayed: the 401 is returned, nothing is retried or refreshed', async () => {
    const { document, options } = await loggedIn('acct-4', 'user-4');
    resource.rejected.add(document.tokens.access_token);
    const authFetch = api.createFetch(options);
    const before = await refreshCalls();
    const start = resource.requests.length;
    const stream = new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('streamed'));
        controller.close();
      },
    });
    const response = await authFetch(`${resource.url}/s`, { method: 'POST', body: stream, duplex: 'half' });
    assert.equal(response.status, 401);
    assert.equal(since(start).length, 1);
    assert.equal(await refreshCalls(), before);
  });

  test('a custom fetch is the one used', async () => {
    const { options } = await loggedIn('acct-5', 'user-5');
    const calls = [];
    const authFetch = api.createFetch({
      ...options,
      fetch: async (input, init) => {
        calls.push(new Headers(init.headers).get('authorization'));
        return new Response('{}', { status: 200 });
      },
    });
    assert.equal((await authFetch('http://127.0.0.1:9/never')).status, 200);
    assert.equal(calls.length, 1);
    assert.ok(/^Bearer ./.test(calls[0]), 'a bearer token was set (not shown)');
  });

  test('without a fetch option, the global fetch of the moment is used (a stub of it too)', async () => {
    const { options } = await loggedIn('acct-7', 'user-7');
    const authFetch = api.createFetch(options);
    const original = globalThis.fetch;
    let stubbed = 0;
    globalThis.fetch = async () => {
      stubbed += 1;
      return new Response(null, { status: 204 });
    };
    try {
      assert.equal((await authFetch('http://127.0.0.1:9/never')).status, 204);
    } finally {
      globalThis.fetch = original;
    }
    assert.equal(stubbed, 1);
  });

  test('an aborted request rejects with the abort reason', async () => {
    const { options } = await loggedIn('acct-6', 'user-6');
    const authFetch = api.createFetch({ ...options, binary: h.sleepingBinary() });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    await assert.rejects(authFetch(`${resource.url}/z`, { signal: controller.signal }), (e) => e.name === 'AbortError');
  });
});

describe('processes and endpoints', () => {
  test('eight Node processes whose requests all get a 401 for one token: one authority call', async () => {
    const { document, home } = await loggedIn('acct-8', 'user-8');
    const rejected = document.tokens.access_token;
    resource.rejected.add(rejected);
    const before = await refreshCalls();
    const start = resource.requests.length;
    const workers = Array.from({ length: 8 }, (_, index) =>
      fork(path.join(__dirname, 'fetch-worker.js'), [
        JSON.stringify({
          packageDir: h.PACKAGE_DIR,
          codexHome: home,
          tokenUrl: authority.tokenUrl,
          resourceUrl: resource.url,
          index,
        }),
      ]),
    );
    const message = (child) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('a worker did not answer in time')), h.BOUND);
        child.once('message', (value) => {
          clearTimeout(timer);
          resolve(value);
        });
        child.once('exit', (code) => reject(new Error(`a worker exited with ${code}`)));
      });
    try {
      await Promise.all(workers.map(message));
      const results = workers.map(message);
      for (const child of workers) child.send('go');
      const answers = await Promise.all(results);
      const renewed = h.readAuth(home).tokens.access_token;
      assert.ok(renewed !== rejected);
      for (const answer of answers) {
        assert.equal(answer.error, undefined, answer.error);
        assert.equal(answer.status, 200);
        assert.equal(answer.answer.token, h.sha256(renewed));
      }
      assert.equal((await refreshCalls()) - before, 1, 'one authority call for eight processes');
      const stats = await authority.stats();
      assert.equal(stats.reuse_rejections, 0);
      const seen = since(start);
      assert.equal(seen.filter((r) => r.status === 401).length, 8);
      const retried = seen.filter((r) => r.status === 200);
      assert.equal(retried.length, 8);
      assert.ok(retried.every((r) => r.token === h.sha256(renewed)), 'every retry carries the new token');
      assert.deepEqual(retried.map((r) => JSON.parse(r.body).worker).sort(), [0, 1, 2, 3, 4, 5, 6, 7]);
    } finally {
      for (const child of workers) if (child.exitCode === null) child.kill();
    }
  });

  test('two token endpoints in one process never cross', async () => {
    const second = await h.startAuthority();
    try {
      const one = h.withExpiry(await authority.login('acct-x', 'user-x'), -60);
      const two = h.withExpiry(await second.login('acct-y', 'user-y'), -60);
      const homeOne = h.homeWith(one);
      const homeTwo = h.homeWith(two);
      const beforeOne = await refreshCalls(authority);
      const beforeTwo = await refreshCalls(second);
      const fetchOne = api.createFetch({ codexHome: homeOne, tokenUrl: authority.tokenUrl });
      const fetchTwo = api.createFetch({ codexHome: homeTwo, tokenUrl: second.tokenUrl });
      const start = resource.requests.length;
      const answers = await Promise.all([
        fetchOne(`${resource.url}/one`),
        fetchTwo(`${resource.url}/two`),
        api.token({ codexHome: homeOne, tokenUrl: authority.tokenUrl }),
        api.token({ codexHome: homeTwo, tokenUrl: second.tokenUrl }),
      ]);
      assert.equal(answers[0].status, 200);
      assert.equal(answers[1].status, 200);
      const tokenOne = h.readAuth(homeOne).tokens.access_token;
      const tokenTwo = h.readAuth(homeTwo).tokens.access_token;
      assert.ok(answers[2] === tokenOne && answers[3] === tokenTwo);
      assert.equal((await refreshCalls(authority)) - beforeOne, 1);
      assert.equal((await refreshCalls(second)) - beforeTwo, 1);
      const byUrl = Object.fromEntries(since(start).map((r) => [r.url, r]));
      assert.equal(byUrl['/one'].token, h.sha256(tokenOne));
      assert.equal(byUrl['/two'].token, h.sha256(tokenTwo));
      assert.equal(byUrl['/one'].accountId, 'acct-x');
      assert.equal(byUrl['/two'].accountId, 'acct-y');
    } finally {
      await second.close();
    }
  });
});
