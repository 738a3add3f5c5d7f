export { exec, spawnLogged, ExecError } from "./linux/exec.js"; export type { ExecOptions, ExecResult } from "./linux/exec.js";
