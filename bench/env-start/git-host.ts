// The bench's git host in a worker thread: the e2e fixture's smart-HTTP git server (git http-backend CGI) with its
// own event loop, as a real git host would be, so its request handling does not queue behind the server and runner
// the bench measures (they share the main thread). CPU is still shared, as on one machine.
import { parentPort, workerData } from 'node:worker_threads';
import { startGitServer } from '../../e2e/fixtures/git-server.js';

/** What the main thread passes: the repository to create. */
export interface GitHostInput {
  name: string;
  files: Record<string, string>;
}

if (parentPort) {
  const port = parentPort;
  const input = workerData as GitHostInput;
  const git = await startGitServer();
  const repo = await git.createRepo(input.name, input.files);
  port.on('message', (message: unknown) => {
    if (message === 'stop') void git.stop().finally(() => port.close());
  });
  port.postMessage({ url: repo.url });
}
