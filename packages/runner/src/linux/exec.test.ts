import { describe, expect, it } from 'vitest';
import { ExecError, exec } from './exec.js';

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
});
