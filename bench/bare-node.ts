/**
 * The ceiling of the metadata scenarios on this machine: a bare node:http server that answers
 * every request with a small JSON body, loaded by the same client at the same concurrency. No
 * service on Node can answer more requests per second than this on the same cores, so the
 * throughput targets read best as shares of it (and machines of one kind differ: the targets
 * were set on one where this ceiling was about 24,000 req/s).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';

import { runLoad, type LoadResult } from './load.js';
import { freePort } from './server-process.js';

const SERVER_SOURCE = `
const body = JSON.stringify({ id: '00000000-0000-0000-0000-000000000000', status: 'active' });
require('node:http')
  .createServer((request, response) => {
    response.writeHead(200, { 'content-type': 'application/json' });
    response.end(body);
  })
  .listen(Number(process.env.PORT), '127.0.0.1', () => process.send?.('ready'));
`;

export async function bareNodeCeiling(
  connections: number,
  durationSeconds: number,
): Promise<LoadResult> {
  const port = await freePort();
  const child = spawn(process.execPath, ['-e', SERVER_SOURCE], {
    env: { ...process.env, PORT: String(port) },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  try {
    await once(child, 'message');
    return await runLoad({
      url: `http://127.0.0.1:${port}`,
      connections,
      durationSeconds,
      requests: [{ method: 'GET', path: '/' }],
      serverPid: child.pid ?? -1,
      databaseCommand: null,
    });
  } finally {
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await exited;
  }
}
