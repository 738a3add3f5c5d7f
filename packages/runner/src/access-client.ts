// The client side of the runner's access API (exec, logs, terminal) on its own entry point
// (`@warren/runner/access-client`), so that the CLI's everyday commands load it without the whole runner
// (image store, SSH gateway, HTTP servers): `warren env exec` starts in a fraction of the time.
// It is the one second door into access/ (access/index.ts would load the access server too), hence:
/* eslint-disable no-restricted-imports -- a lighter entry point than access/index.ts, on purpose (see above) */
export * from './access/client.js';
export * from './access/terminal-client.js';
