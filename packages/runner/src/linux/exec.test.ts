import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ExecError, exec, spawnLogged } from './exec.js';

describe('exec', () => {
  it('captures stdout and passes stdin', async () => {
    const result = await exec(['cat'], { input: 'hello' });
    expect(result.stdout).toBe('hello');
    expect(result.code).toBe(0);
  });

  it('throws ExecError with the stderr tail on a bad exit code', async () => {
    const failing = exec(['sh', '-c', 'echo boom >&2; exit 3']);
    await expect(failing).rejects.toBeInstanceOf(ExecError);
    await expect(failing).rejects.toThrow(/code 3: boom/);
  });

  it('accepts listed exit codes', async () => {
    const result = await exec(['sh', '-c', 'exit 2'], { okCodes: [0, 2] });
    expect(result.code).toBe(2);
  });

  it('reports a missing binary', async () => {
    await expect(exec(['/nonexistent/tool'])).rejects.toBeInstanceOf(ExecError);
  });

  it('starts the program inside a cgroup: its own pid is written to every cgroup.procs before it runs', async () => {
    // Plain files stand in for cgroup.procs (the kernel would move the writer; here the file keeps the pid).
    const dir = await mkdtemp(join(tmpdir(), 'warren-exec-cgroup-'));
    try {
      const procsFiles = [join(dir, 'cpu.procs'), join(dir, 'blkio.procs')];
      for (const file of procsFiles) await writeFile(file, '');
      const result = await exec(['sh', '-c', 'echo $$; cat "$0"', procsFiles[1]!], { cgroup: { procsFiles } });
      const [pid, seenInside] = result.stdout.trim().split('\n');
      expect(seenInside).toBe(pid);
      for (const file of procsFiles) expect((await readFile(file, 'utf8')).trim()).toBe(pid);
      const child = spawnLogged(['sh', '-c', 'exit 0'], { cgroup: { procsFiles }, stdio: 'ignore' });
      await new Promise((resolve) => child.on('close', resolve));
      for (const file of procsFiles) expect((await readFile(file, 'utf8')).trim()).toBe(String(child.pid));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('still runs the program when the cgroup cannot be joined, saying so on stderr', async () => {
    const result = await exec(['echo', 'ran'], { cgroup: { procsFiles: ['/nonexistent/warren/cgroup.procs'] } });
    expect(result.stdout).toBe('ran\n');
    expect(result.stderr).toContain('could not join cgroup /nonexistent/warren/cgroup.procs');
  });
});
