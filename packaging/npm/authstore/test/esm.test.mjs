// The ES module entry: the same functions and classes as the CommonJS one.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { test } from 'node:test';

const require = createRequire(import.meta.url);
const h = require('./helpers.js');

test('the ES module entry exports the API, sharing classes with CommonJS', async () => {
  const manifest = require(path.join(h.PACKAGE_DIR, 'package.json'));
  const entry = path.join(h.PACKAGE_DIR, manifest.exports['.'].import);
  const esm = await import(pathToFileURL(entry).href);
  for (const name of Object.keys(h.api)) {
    assert.ok(name in esm, `${name} is exported`);
    assert.equal(esm[name], h.api[name], name);
  }
  const authority = await h.startAuthority();
  try {
    const document = await authority.login('acct-esm', 'user-esm');
    const home = h.homeWith(document);
    h.sameSecret(await esm.token({ codexHome: home, tokenUrl: authority.tokenUrl }), document.tokens.access_token);
    const error = await esm.token({ codexHome: h.homeWith() }).catch((e) => e);
    assert.ok(error instanceof esm.NotLoggedIn && error instanceof h.api.AuthstoreError);
  } finally {
    await authority.close();
  }
});
