/** Worker thread: digests benchmark streams with one algorithm, away from the measuring thread. */
import { createHash } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';

import { streamChunks, type StreamSpec } from './data-source.js';

export interface HashJob {
  algo: string;
  streams: StreamSpec[];
}

const job = workerData as HashJob;
const digests = job.streams.map((spec) => {
  const hash = createHash(job.algo);
  for (const chunk of streamChunks(spec)) hash.update(chunk);
  return hash.digest('hex');
});
parentPort?.postMessage(digests);
