#!/usr/bin/env node
'use strict';
// The `authstore` command: runs this platform's binary with the same arguments and stdio, passes
// on the signals this process gets, and ends the way the binary ended (its exit code, or the
// same signal).

const { spawn } = require('node:child_process');
const { binaryPath } = require('../lib/binary.js');

let binary;
try {
  binary = binaryPath();
} catch (error) {
  process.stderr.write(`${error.message}\n`);
  process.exit(1);
}

const child = spawn(binary, process.argv.slice(2), { stdio: 'inherit', windowsHide: false });

const forwarded = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'].filter(
  (signal) => process.platform !== 'win32' || signal !== 'SIGQUIT',
);
const handlers = {};
for (const signal of forwarded) {
  handlers[signal] = () => {
    // A terminal's Ctrl-C reaches the whole process group, the binary included; kill() for
    // the rest (`kill PID` of this launcher).
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  process.on(signal, handlers[signal]);
}

child.on('error', (error) => {
  process.stderr.write(`authstore: cannot run ${binary}: ${error.message}\n`);
  process.exit(1);
});

child.on('exit', (code, signal) => {
  for (const name of Object.keys(handlers)) process.removeListener(name, handlers[name]);
  if (signal) {
    // End with the same signal, so that the caller sees what the binary's caller would.
    process.kill(process.pid, signal);
    return;
  }
  process.exit(code === null ? 1 : code);
});
