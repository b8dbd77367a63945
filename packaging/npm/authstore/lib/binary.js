'use strict';
// Where the `authstore` binary of this machine is: the per-platform package npm installed as an
// optional dependency (@authstore/linux-x64, @authstore/linux-arm64, @authstore/win32-x64),
// unless AUTHSTORE_BINARY names another one.

const path = require('node:path');

/** The per-platform packages, by `${process.platform}-${process.arch}`. */
const PLATFORM_PACKAGES = {
  'linux-x64': '@authstore/linux-x64',
  'linux-arm64': '@authstore/linux-arm64',
  'win32-x64': '@authstore/win32-x64',
};

function binaryPath() {
  const override = process.env.AUTHSTORE_BINARY;
  if (override) return override;
  const key = `${process.platform}-${process.arch}`;
  const name = PLATFORM_PACKAGES[key];
  if (!name) {
    throw new Error(
      `authstore: no prebuilt binary for ${key} (there are: ${Object.keys(PLATFORM_PACKAGES).join(', ')}); ` +
        'install the command another way (cargo install, pipx) and set AUTHSTORE_BINARY to its path',
    );
  }
  let manifest;
  try {
    manifest = require.resolve(`${name}/package.json`);
  } catch {
    throw new Error(
      `authstore: the package ${name} is not installed; it is an optional dependency of authstore ` +
        'for this platform (reinstall without --omit=optional or --no-optional)',
    );
  }
  const file = process.platform === 'win32' ? 'authstore.exe' : 'authstore';
  return path.join(path.dirname(manifest), 'bin', file);
}

module.exports = { binaryPath, PLATFORM_PACKAGES };
