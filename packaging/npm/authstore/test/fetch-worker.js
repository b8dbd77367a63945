'use strict';
// One process of the multi-process test: waits for "go", sends one request through
// createFetch, and reports what came back. Its options arrive as JSON in argv[2].

const config = JSON.parse(process.argv[2]);
const api = require(config.packageDir);

const authFetch = api.createFetch({ codexHome: config.codexHome, tokenUrl: config.tokenUrl });

process.on('message', async (message) => {
  if (message !== 'go') return;
  try {
    const response = await authFetch(`${config.resourceUrl}/v1/work`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ worker: config.index }),
    });
    process.send({ status: response.status, answer: await response.json() });
  } catch (error) {
    process.send({ error: `${error.name}: ${error.message}` });
  }
  process.disconnect();
});
process.send('ready');
