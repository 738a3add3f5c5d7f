// Which mounts of a process's mountinfo are binds of one lxcfs daemon (proc-views-detach.ts).
import { describe, expect, it } from 'vitest';
import { parseMountInfo } from './idmap.js';
import { lxcfsBindsIn } from './proc-views-detach.js';

const CONTAINER_MOUNTINFO = [
  '900 800 0:120 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w',
  '901 900 0:121 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw',
  '902 901 0:60 /proc/meminfo /proc/meminfo ro,nosuid,nodev,noexec,relatime - fuse.lxcfs lxcfs rw,user_id=0,group_id=0',
  '903 901 0:60 /proc/stat /proc/stat ro,nosuid,nodev,noexec,relatime - fuse.lxcfs lxcfs rw,user_id=0,group_id=0',
  // Another runner's lxcfs (another FUSE connection, so another device) is left alone.
  '904 901 0:61 /proc/uptime /proc/uptime ro,nosuid,nodev,noexec,relatime - fuse.lxcfs lxcfs rw,user_id=0,group_id=0',
  '905 900 0:22 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs ro',
  '906 905 0:60 /sys/devices/system/cpu/online /sys/devices/system/cpu/online ro,relatime - fuse.lxcfs lxcfs rw',
].join('\n');

describe('lxcfsBindsIn', () => {
  it('lists the binds of one FUSE connection, topmost first', () => {
    expect(lxcfsBindsIn(parseMountInfo(CONTAINER_MOUNTINFO), '0:60')).toEqual([
      '/sys/devices/system/cpu/online',
      '/proc/stat',
      '/proc/meminfo',
    ]);
  });

  it('finds nothing in a namespace without them', () => {
    expect(lxcfsBindsIn(parseMountInfo(CONTAINER_MOUNTINFO), '0:99')).toEqual([]);
  });
});
