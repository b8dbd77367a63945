// Type-checked by scripts/npm-tests.sh (tsc --strict --noEmit) when TypeScript is at hand:
// the documented API as a TypeScript tool uses it. Never run.
import {
  AuthstoreError,
  createFetch,
  credentials,
  NotLoggedIn,
  ReloginRequired,
  status,
  token,
  unauthorized,
  type Credentials,
  type FetchFunction,
  type ReloginReason,
} from 'authstore';

export async function example(signal: AbortSignal): Promise<void> {
  const options = {
    codexHome: '/tmp/codex',
    tokenUrl: 'http://127.0.0.1:1455/oauth/token',
    clientId: 'app_test',
    refreshWindow: 600,
    lockTimeout: 10,
    signal,
  };
  const bearer: string = await token(options);
  const creds: Credentials = await credentials();
  const header: string | undefined = creds.headers['ChatGPT-Account-Id'];
  const expires: Date | null = creds.expiresAt;
  const replaced: Credentials = await unauthorized(creds, options);
  const again: Credentials = await unauthorized(bearer);
  const who = await status({ codexHome: '/tmp/codex' });
  const email: string | null = who.email;
  const authFetch: FetchFunction = createFetch({ ...options, fetch: globalThis.fetch });
  const response: Response = await authFetch('http://127.0.0.1:1/v1', {
    method: 'POST',
    body: new URLSearchParams({ a: '1' }),
  });
  const plain: typeof fetch = createFetch();
  try {
    await token();
  } catch (error) {
    if (error instanceof ReloginRequired) {
      const reason: ReloginReason = error.reason;
      const code: number = error.exitCode;
      void [reason, code];
    } else if (error instanceof NotLoggedIn) {
      const kind: 'not_logged_in' = error.kind;
      void kind;
    } else if (error instanceof AuthstoreError) {
      void error.kind;
    }
  }
  void [header, expires, replaced, again, email, response, plain];
}
