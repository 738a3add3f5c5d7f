// Public API of the runner's Linux backend: the LinuxBackend facade, its options, and the names it gives host objects.
export { LinuxBackend } from './linux-backend.js';
export type { LinuxBackendOptions } from './context.js';
export { CONTAINER_PREFIX } from './paths.js';
export { KEEP_ALIVE_COMMAND } from './start.js';
