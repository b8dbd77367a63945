// The ES module entry: the same functions and classes as the CommonJS one (one implementation,
// so that `instanceof` holds across both, and one cache).
import api from './index.js';

export const {
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
} = api;
