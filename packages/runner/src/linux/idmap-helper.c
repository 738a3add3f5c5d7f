/* warren-idmap: user namespaces for environments and idmapped bind mounts (Linux >= 5.12 mount API).
 *
 * Usage: warren-idmap mount <hostId> <size> <src> <dst> [<src> <dst> ...]
 *        warren-idmap userns <hostId> <size> <userns-file> <netns-file>
 *
 * Both modes create one user namespace mapping container ids [0, size) to host ids
 * [hostId, hostId + size) for both uids and gids (user_namespaces(7)).
 *
 * "mount" (setgroups denied; the namespace only serves as the mount's idmapping) then, for each pair:
 *   open_tree(src, OPEN_TREE_CLONE | AT_RECURSIVE)                      -- open_tree(2)
 *   mount_setattr(fd, AT_RECURSIVE, MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY) -- mount_setattr(2)
 *   move_mount(fd -> dst)                                               -- move_mount(2)
 * so files owned by host uid 0 under src appear owned by hostId under dst. dst must be an existing
 * directory. Exit status 0 on success; on failure 1 with a message on stderr naming the failed step.
 * Pairs already mounted before a failure stay mounted; the caller unmounts them.
 *
 * "userns" (setgroups allowed, so sudo/initgroups work inside) then creates a network namespace owned by
 * that user namespace and bind-mounts both nsfs files onto the existing files <userns-file> and
 * <netns-file>, where they persist until unmounted. A netns owned by the container's user namespace is
 * what lets `runc exec` join it after the userns, lets the container mount sysfs, and makes its
 * CAP_NET_BIND_SERVICE/CAP_NET_RAW count (network_namespaces(7), capabilities(7)).
 * Compiled lazily by idmap.ts (`cc -O2`); kept dependency-free (libc + kernel headers).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MOUNT_ATTR_IDMAP
#define MOUNT_ATTR_IDMAP 0x00100000
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

static pid_t child_pid = -1;

static void cleanup_child(void) {
  if (child_pid > 0) {
    kill(child_pid, SIGKILL);
    waitpid(child_pid, NULL, 0);
    child_pid = -1;
  }
}

static void die(const char *step, const char *arg) {
  fprintf(stderr, "warren-idmap: %s%s%s: %s\n", step, arg ? " " : "", arg ? arg : "", strerror(errno));
  cleanup_child();
  exit(1);
}

static void write_file(pid_t pid, const char *name, const char *content) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) die("open", path);
  ssize_t len = (ssize_t)strlen(content);
  if (write(fd, content, (size_t)len) != len) die("write", path);
  close(fd);
}

static long parse_id(const char *text, const char *what) {
  char *end = NULL;
  errno = 0;
  long value = strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value < 0 || value > 4294967294L) {
    fprintf(stderr, "warren-idmap: invalid %s: %s\n", what, text);
    exit(2);
  }
  return value;
}

int main(int argc, char **argv) {
  int userns_mode = argc == 6 && strcmp(argv[1], "userns") == 0;
  int mount_mode = argc >= 6 && (argc - 4) % 2 == 0 && strcmp(argv[1], "mount") == 0;
  if (!userns_mode && !mount_mode) {
    fprintf(stderr, "usage: %s mount <hostId> <size> <src> <dst> [<src> <dst> ...]\n"
                    "       %s userns <hostId> <size> <userns-file> <netns-file>\n", argv[0], argv[0]);
    return 2;
  }
  argv++;
  argc--;
  long host_id = parse_id(argv[1], "hostId");
  long size = parse_id(argv[2], "size");
  if (size == 0) {
    fprintf(stderr, "warren-idmap: size must be positive\n");
    return 2;
  }

  /* The child unshares a user namespace and reports on `ready`; in userns mode it waits on `go` for its
   * maps, unshares a network namespace and reports again; then it blocks on `hold` until we are done. */
  int ready[2], go[2], hold[2];
  if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0 || pipe2(hold, O_CLOEXEC) < 0) die("pipe", NULL);
  child_pid = fork();
  if (child_pid < 0) die("fork", NULL);
  if (child_pid == 0) {
    close(ready[0]);
    close(go[1]);
    close(hold[1]);
    char status = unshare(CLONE_NEWUSER) == 0 ? 'y' : 'n';
    if (write(ready[1], &status, 1) != 1) _exit(1);
    if (userns_mode) {
      char mapped = 0;
      if (read(go[0], &mapped, 1) != 1) _exit(1);
      status = unshare(CLONE_NEWNET) == 0 ? 'y' : 'n';
      if (write(ready[1], &status, 1) != 1) _exit(1);
    }
    char ignored;
    while (read(hold[0], &ignored, 1) < 0 && errno == EINTR) {
    }
    _exit(0);
  }
  close(ready[1]);
  close(go[0]);
  close(hold[0]);
  char status = 0;
  if (read(ready[0], &status, 1) != 1 || status != 'y') {
    errno = EPERM;
    die("unshare(CLONE_NEWUSER) in child", NULL);
  }

  char map[64];
  snprintf(map, sizeof map, "0 %ld %ld\n", host_id, size);
  if (mount_mode) write_file(child_pid, "setgroups", "deny");
  write_file(child_pid, "uid_map", map);
  write_file(child_pid, "gid_map", map);

  if (userns_mode) {
    if (write(go[1], "y", 1) != 1) die("write", "go pipe");
    if (read(ready[0], &status, 1) != 1 || status != 'y') {
      errno = EPERM;
      die("unshare(CLONE_NEWNET) in child", NULL);
    }
    char ns_file[64];
    snprintf(ns_file, sizeof ns_file, "/proc/%d/ns/user", (int)child_pid);
    if (mount(ns_file, argv[3], NULL, MS_BIND, NULL) < 0) die("bind mount userns onto", argv[3]);
    snprintf(ns_file, sizeof ns_file, "/proc/%d/ns/net", (int)child_pid);
    if (mount(ns_file, argv[4], NULL, MS_BIND, NULL) < 0) die("bind mount netns onto", argv[4]);
    close(hold[1]);
    waitpid(child_pid, NULL, 0);
    child_pid = -1;
    return 0;
  }

  char ns_path[64];
  snprintf(ns_path, sizeof ns_path, "/proc/%d/ns/user", (int)child_pid);
  int userns_fd = open(ns_path, O_RDONLY | O_CLOEXEC);
  if (userns_fd < 0) die("open", ns_path);

  for (int i = 3; i + 1 < argc; i += 2) {
    const char *src = argv[i];
    const char *dst = argv[i + 1];
    int tree = (int)syscall(SYS_open_tree, AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (tree < 0) die("open_tree", src);
    struct mount_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY;
    attr.userns_fd = (__u64)userns_fd;
    if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0)
      die("mount_setattr", src);
    if (syscall(SYS_move_mount, tree, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) < 0) die("move_mount", dst);
    close(tree);
  }

  close(userns_fd);
  close(hold[1]); /* releases the child; the namespace lives on in the mounts that reference it */
  waitpid(child_pid, NULL, 0);
  child_pid = -1;
  return 0;
}
