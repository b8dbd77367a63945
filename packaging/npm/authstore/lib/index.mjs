// The ES module entry: the same functions and classes as the CommonJS one (one implementation,
// so that `instanceof` holds across both).
import api from './index.js';

export const {
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
} = api;
