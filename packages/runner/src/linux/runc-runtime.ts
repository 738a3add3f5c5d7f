// runc as Warren's OCI runtime: the CLI adapter plus a state read straight from runc's state.json.
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { CliOciRuntime, type CliOciRuntimeOptions, isFrozen, isLiveProcess } from './cli-runtime.js';
import type { ContainerState } from './runtime.js';

/** The fields of runc's `<root>/<id>/state.json` that {@link RuncRuntime.state} reads. */
interface RuncStateFile {
  id?: string;
  init_process_pid?: number;
  init_process_start?: number;
  cgroup_paths?: Record<string, string>;
  config?: { labels?: string[] };
}

/** runc 1.1 (works on cgroup v1, hybrid and v2 hosts). */
export class RuncRuntime extends CliOciRuntime {
  constructor(options: Omit<CliOciRuntimeOptions, 'binary'> = {}) {
    super({ ...options, binary: 'runc' });
  }

  /**
   * Reads the state the way `runc state` derives it, without starting the runc binary (~30 ms of a Go
   * process per call, several calls per reconcile): runc 1.1 libcontainer `refreshState`/`runType`:
   * paused when the freezer says FROZEN (v1 `freezer.state`, v2 `cgroup.freeze`); stopped when the init pid
   * is gone, a zombie, or a different process (start time, proc(5) stat field 22); created while
   * `exec.fifo` exists; otherwise running. `pid` is 0 once stopped and the bundle comes from the `bundle=`
   * label, as in runc's `state` command. runc writes state.json with a rename, so a read never sees half a
   * file. Anything unexpected falls back to `runc state`.
   */
  override async state(id: string): Promise<ContainerState | undefined> {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.+-]*$/.test(id)) return super.state(id);
    const dir = join(this.stateRoot, id);
    let file: RuncStateFile;
    try {
      file = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as RuncStateFile;
    } catch (error) {
      // No state file: the container does not exist (runc says the same), unless it is mid-create.
      if ((error as NodeJS.ErrnoException).code === 'ENOENT' && !existsSync(dir)) return undefined;
      return super.state(id);
    }
    const pid = file.init_process_pid;
    const bundle = file.config?.labels?.find((label) => label.startsWith('bundle='))?.slice('bundle='.length);
    if (typeof pid !== 'number' || typeof file.init_process_start !== 'number' || bundle === undefined) return super.state(id);
    const base = { id: file.id ?? id, bundle };
    if (await isFrozen(file.cgroup_paths ?? {})) return { ...base, status: 'paused', pid };
    if (!(await isLiveProcess(pid, file.init_process_start))) return { ...base, status: 'stopped', pid: 0 };
    const created = await stat(join(dir, 'exec.fifo')).then(
      () => true,
      () => false,
    );
    return { ...base, status: created ? 'created' : 'running', pid };
  }
}
