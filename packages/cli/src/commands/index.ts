// The CLI's commands, one module per group; main.ts registers them on the program.
export { registerAdminCommands } from './admin.js';
export { parseMillicores } from './class-flags.js';
export { parseListen, parseProxyFront, registerDaemonCommands, sanitizeName } from './daemons.js';
export { registerEnvironmentCommands } from './environments.js';
export { registerImageCommands } from './images.js';
export { registerPortCommands } from './ports.js';
export { registerSshCommands } from './ssh.js';
