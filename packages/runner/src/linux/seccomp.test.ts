import { describe, expect, it } from 'vitest';
import { DOCKER_DEFAULT_CAPABILITIES } from './oci-spec.js';
import { dockerDefaultSeccomp, type OciSeccomp } from './seccomp.js';

function rulesFor(profile: OciSeccomp, name: string) {
  return profile.syscalls.filter((rule) => rule.names.includes(name));
}

describe('dockerDefaultSeccomp', () => {
  const profile = dockerDefaultSeccomp(DOCKER_DEFAULT_CAPABILITIES, 'x64');

  it('denies by default with EPERM on x86-64 and its compat arches', () => {
    expect(profile.defaultAction).toBe('SCMP_ACT_ERRNO');
    expect(profile.defaultErrnoRet).toBe(1);
    expect(profile.architectures).toEqual(['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
  });

  it('allows ordinary syscalls and the amd64-only ones', () => {
    const allowed = new Set(
      profile.syscalls.filter((rule) => rule.action === 'SCMP_ACT_ALLOW' && !rule.args).flatMap((rule) => rule.names),
    );
    for (const name of ['read', 'execve', 'openat', 'chown', 'setuid', 'chroot', 'arch_prctl', 'modify_ldt', 'ptrace', 'io_uring_setup']) {
      expect(allowed, name).toContain(name);
    }
    expect(allowed).not.toContain('set_tls'); // arm only
  });

  it('keeps namespace and mount syscalls denied without CAP_SYS_ADMIN', () => {
    for (const name of ['mount', 'umount2', 'unshare', 'setns', 'open_tree', 'bpf', 'perf_event_open', 'reboot', 'init_module', 'kcmp']) {
      expect(rulesFor(profile, name), name).toEqual([]);
    }
    expect(rulesFor(profile, 'clone')).toEqual([
      { names: ['clone'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 0x7e020000, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }] },
    ]);
    expect(rulesFor(profile, 'clone3')).toEqual([{ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 }]);
    expect(rulesFor(profile, 'socket')[0]?.args).toEqual([{ index: 0, value: 40, op: 'SCMP_CMP_NE' }]);
    expect(rulesFor(profile, 'personality')).toHaveLength(5);
  });

  it('opens the CAP_SYS_ADMIN rules and drops the clone filters when that cap is granted', () => {
    const admin = dockerDefaultSeccomp([...DOCKER_DEFAULT_CAPABILITIES, 'CAP_SYS_ADMIN'], 'x64');
    expect(rulesFor(admin, 'mount')).toHaveLength(1);
    expect(rulesFor(admin, 'clone3')).toEqual([expect.objectContaining({ action: 'SCMP_ACT_ALLOW' }) as unknown]);
    expect(rulesFor(admin, 'clone').every((rule) => !rule.args)).toBe(true);
  });

  it('selects arm rules on arm64', () => {
    const arm = dockerDefaultSeccomp(DOCKER_DEFAULT_CAPABILITIES, 'arm64');
    expect(arm.architectures).toEqual(['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM']);
    expect(rulesFor(arm, 'set_tls')).toHaveLength(1);
    expect(rulesFor(arm, 'arch_prctl')).toEqual([]);
  });
});
