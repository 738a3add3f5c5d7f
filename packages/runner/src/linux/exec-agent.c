/* warren-init: an environment container's pid 1 (init) and exec agent.
 *
 * Usage: warren-init [--socket PATH] [--uid N --gid N [--groups G1,G2,...]] [-- COMMAND [ARG...]]
 *
 * Init (as tini / `docker run --init`): with a COMMAND it forks it (in its own process group, as the given
 * user when --uid is set), forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to it, reaps every
 * zombie (it is pid 1, or a child subreaper when run elsewhere: prctl(2) PR_SET_CHILD_SUBREAPER) and exits
 * with the command's status (its exit code, or 128 + n when killed by signal n). Without a COMMAND it only
 * reaps and serves execs, and exits 0 on SIGTERM or SIGINT. Signals are taken through a signalfd(2) while
 * blocked: a blocked signal is queued even for a pid 1 that has no handler (signal(7), pid_namespaces(7)).
 *
 * Exec agent: it listens on a unix stream socket (default /dev/.warren/exec.sock, made atomically: bound to
 * PATH.new, then renamed) and starts processes for the runner. Node cannot pass file descriptors over
 * unix sockets, so one exec uses four connections, each opened with a 21-byte header:
 *   "WXA1" | kind (1 byte: 0 control, 1 stdin, 2 stdout, 3 stderr) | id (16 bytes chosen by the runner)
 * The control connection then carries a u32 length (at most 4 MiB) and the request (integers are
 * big-endian u32; a string is a u32 length and that many bytes, no NUL byte):
 *   uid | gid | ngroups | ngroups x gid | cwd (absolute) | argc (>= 1) | argc x string | envc | envc x string
 * When all four connections with one id have arrived, the agent forks a child that calls setsid(2),
 * dup2(2)s the three stdio connections onto fds 0, 1, 2 (blocking), closes every other fd, sets umask 022,
 * setgroups(2), setgid(2), setuid(2) (from root to another uid without SECBIT_KEEP_CAPS this clears the
 * permitted and effective capabilities: capabilities(7)), chdir(2)s to cwd, sets environ to the request's
 * env and execvp(3)s argv (PATH from that env).
 *   agent -> runner on control: 'X' i32 status              the process exited (code, or 128 + signal)
 *                               'F' i32 status u32 n msg    it could not start (127 exec ENOENT, 126 other
 *                                                           exec/chdir/credential errors, 255 bad request)
 *   and then the agent closes the connection.
 *   runner -> agent on control: 'K' u32 signal              signal the process group (1..64)
 *   The control connection closing before the process exits (runner gone) SIGKILLs the process group.
 * A connection that does not complete its header/request within 10 s is closed. A bad request or a
 * misbehaving client only loses its own exec: the agent never exits for one (lengths are checked, reads
 * and writes never block, EINTR/EAGAIN are retried or waited for with poll(2)).
 * Built static (`cc -static -O2`) by exec-agent.ts, so it runs in any image (no libc needed inside); it
 * uses no NSS (user names are resolved by the runner).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

enum { KIND_CONTROL = 0, KIND_STDIN = 1, KIND_STDOUT = 2, KIND_STDERR = 3 };
enum { STAGE_SETGROUPS = 1, STAGE_SETGID, STAGE_SETUID, STAGE_CHDIR, STAGE_EXEC };

#define MAGIC "WXA1"
#define ID_LEN 16
#define HEADER_LEN (4 + 1 + ID_LEN)
#define MAX_REQUEST (4u << 20)
#define MAX_GROUPS 65536u
#define MAX_PENDING 512
#define MAX_SESSIONS 1024
#define PENDING_TIMEOUT_MS 10000
#define DEFAULT_SOCKET "/dev/.warren/exec.sock"

/* A connection whose header (and, for control, request) is still arriving or waiting for its peers. */
struct pending {
  int fd; /* -1: free */
  unsigned char header[HEADER_LEN];
  size_t header_got;
  unsigned char length[4];
  size_t length_got;
  uint32_t request_len;
  unsigned char *request;
  size_t request_got;
  int ready;
  long long since_ms;
};

/* A started exec. */
struct session {
  int used;
  int control; /* -1 once the runner closed it */
  pid_t pid;
  int error_pipe;
  unsigned char message[5];
  size_t message_got;
  char *argv0; /* for messages, at most 255 bytes (malloc'd; NULL when out of memory) */
  char *cwd;
};

struct request {
  uint32_t uid, gid, ngroups;
  gid_t *groups;
  char *cwd;
  char **argv;
  char **envp;
  char *strings;
};

static struct pending pending[MAX_PENDING];
static struct session sessions[MAX_SESSIONS];
static pid_t main_pid = -1;
static int listener = -1;
static int signals = -1;

static void note(const char *format, ...) {
  char line[512];
  va_list args;
  va_start(args, format);
  int n = vsnprintf(line, sizeof line - 1, format, args);
  va_end(args);
  if (n < 0) return;
  if ((size_t)n > sizeof line - 2) n = (int)sizeof line - 2;
  line[n++] = '\n';
  /* fd 2 is the container's log; a short or failed write loses a diagnostic, nothing else. */
  ssize_t ignored = write(2, "warren-init: ", 13);
  ignored = write(2, line, (size_t)n);
  (void)ignored;
}

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t get_be32(const unsigned char *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static void put_be32(unsigned char *p, uint32_t value) {
  p[0] = (unsigned char)(value >> 24);
  p[1] = (unsigned char)(value >> 16);
  p[2] = (unsigned char)(value >> 8);
  p[3] = (unsigned char)value;
}

/* Best effort, never blocking: control messages are a few bytes on an otherwise idle connection. */
static void send_message(int fd, const unsigned char *bytes, size_t length) {
  while (length > 0) {
    ssize_t n = send(fd, bytes, length, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    bytes += n;
    length -= (size_t)n;
  }
}

static void send_exit(int fd, int status) {
  unsigned char message[5] = {'X'};
  put_be32(message + 1, (uint32_t)status);
  send_message(fd, message, sizeof message);
}

static void send_failure(int fd, int status, const char *text) {
  unsigned char message[9 + 512];
  size_t length = strlen(text);
  if (length > 512) length = 512;
  message[0] = 'F';
  put_be32(message + 1, (uint32_t)status);
  put_be32(message + 5, (uint32_t)length);
  memcpy(message + 9, text, length);
  send_message(fd, message, 9 + length);
}

/* ------------------------------------------------------------------ children */

static void reset_signals(void) {
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    sigaction(sig, &action, NULL);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Closes every fd from `first` up: close_range(2), else each entry of /proc/self/fd. */
static void close_from(int first) {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, (unsigned)first, ~0u, 0u) == 0) return;
#endif
  DIR *dir = opendir("/proc/self/fd");
  if (dir) {
    int own = dirfd(dir);
    int fds[1024];
    size_t count = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL && count < 1024) {
      int fd = atoi(entry->d_name);
      if (entry->d_name[0] >= '0' && entry->d_name[0] <= '9' && fd >= first && fd != own) fds[count++] = fd;
    }
    closedir(dir);
    for (size_t i = 0; i < count; i++) close(fds[i]);
    if (count < 1024) return;
  }
  for (int fd = first; fd < 65536; fd++) close(fd);
}

static void set_blocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags >= 0 && (flags & O_NONBLOCK)) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
}

/* In an exec child: reports the failed stage and errno on fd 3 and exits like a shell would. */
static void child_fail(int stage) {
  int report[2] = {stage, errno};
  ssize_t ignored = write(3, report, sizeof report);
  (void)ignored;
  _exit(stage == STAGE_EXEC && report[1] == ENOENT ? 127 : 126);
}

static void exec_child(const struct request *request, int in, int out, int err, int error_pipe) {
  reset_signals();
  setsid();
  if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) _exit(126);
  if (error_pipe != 3) {
    if (dup2(error_pipe, 3) < 0) _exit(126);
  }
  fcntl(3, F_SETFD, FD_CLOEXEC);
  close_from(4);
  for (int fd = 0; fd < 3; fd++) set_blocking(fd);
  umask(022);
  if (setgroups(request->ngroups, request->groups) < 0) child_fail(STAGE_SETGROUPS);
  if (setgid(request->gid) < 0) child_fail(STAGE_SETGID);
  if (setuid(request->uid) < 0) child_fail(STAGE_SETUID);
  if (chdir(request->cwd) < 0) child_fail(STAGE_CHDIR);
  environ = request->envp;
  execvp(request->argv[0], request->argv);
  child_fail(STAGE_EXEC);
}

struct identity {
  int set;
  uid_t uid;
  gid_t gid;
  size_t ngroups;
  gid_t groups[256];
};

static pid_t spawn_main(char **command, const struct identity *identity) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  reset_signals();
  setpgid(0, 0);
  close_from(3);
  if (identity->set) {
    if (setgroups(identity->ngroups, identity->groups) < 0 || setgid(identity->gid) < 0 || setuid(identity->uid) < 0) {
      note("switching to uid %u gid %u: %s", (unsigned)identity->uid, (unsigned)identity->gid, strerror(errno));
      _exit(126);
    }
  }
  execvp(command[0], command);
  int error = errno;
  note("exec %s: %s", command[0], strerror(error));
  _exit(error == ENOENT ? 127 : 126);
}

/* ------------------------------------------------------------------ requests */

struct reader {
  const unsigned char *bytes;
  size_t length, offset;
  char *strings;
  size_t strings_used;
};

static int read_u32(struct reader *reader, uint32_t *value) {
  if (reader->length - reader->offset < 4) return -1;
  *value = get_be32(reader->bytes + reader->offset);
  reader->offset += 4;
  return 0;
}

static int read_string(struct reader *reader, char **value) {
  uint32_t length;
  if (read_u32(reader, &length) < 0 || reader->length - reader->offset < length) return -1;
  const unsigned char *start = reader->bytes + reader->offset;
  if (memchr(start, 0, length) != NULL) return -1;
  char *copy = reader->strings + reader->strings_used;
  memcpy(copy, start, length);
  copy[length] = '\0';
  reader->strings_used += (size_t)length + 1;
  reader->offset += length;
  *value = copy;
  return 0;
}

static void free_request(struct request *request) {
  free(request->groups);
  free(request->argv);
  free(request->envp);
  free(request->strings);
  memset(request, 0, sizeof *request);
}

/* Parses a request (see the header comment). @returns 0, or -1 with `*problem` set. */
static int parse_request(const unsigned char *bytes, size_t length, struct request *request, const char **problem) {
  memset(request, 0, sizeof *request);
  /* Every string costs at least its 4-byte length, so length/4 bounds the count, and the copies
   * (bytes plus one NUL each) fit in length + length/4 + 1. */
  struct reader reader = {bytes, length, 0, malloc(length + length / 4 + 1), 0};
  request->strings = reader.strings;
  *problem = "truncated request";
  if (!reader.strings) goto fail_memory;
  if (read_u32(&reader, &request->uid) < 0 || read_u32(&reader, &request->gid) < 0 || read_u32(&reader, &request->ngroups) < 0) goto fail;
  if (request->uid == (uint32_t)-1 || request->gid == (uint32_t)-1) {
    *problem = "invalid uid or gid";
    goto fail;
  }
  if (request->ngroups > MAX_GROUPS || request->ngroups > (length - reader.offset) / 4) {
    *problem = "too many groups";
    goto fail;
  }
  request->groups = calloc(request->ngroups + 1, sizeof(gid_t));
  if (!request->groups) goto fail_memory;
  for (uint32_t i = 0; i < request->ngroups; i++) {
    uint32_t gid;
    if (read_u32(&reader, &gid) < 0) goto fail;
    if (gid == (uint32_t)-1) {
      *problem = "invalid group";
      goto fail;
    }
    request->groups[i] = gid;
  }
  if (read_string(&reader, &request->cwd) < 0) goto fail;
  if (request->cwd[0] != '/') {
    *problem = "cwd must be an absolute path";
    goto fail;
  }
  uint32_t argc, envc;
  if (read_u32(&reader, &argc) < 0) goto fail;
  if (argc == 0 || argc > (length - reader.offset) / 4) {
    *problem = "argv must hold 1 or more strings";
    goto fail;
  }
  request->argv = calloc((size_t)argc + 1, sizeof(char *));
  if (!request->argv) goto fail_memory;
  for (uint32_t i = 0; i < argc; i++) {
    if (read_string(&reader, &request->argv[i]) < 0) goto fail;
  }
  if (request->argv[0][0] == '\0') {
    *problem = "empty command";
    goto fail;
  }
  if (read_u32(&reader, &envc) < 0) goto fail;
  if (envc > (length - reader.offset) / 4) goto fail;
  request->envp = calloc((size_t)envc + 1, sizeof(char *));
  if (!request->envp) goto fail_memory;
  for (uint32_t i = 0; i < envc; i++) {
    if (read_string(&reader, &request->envp[i]) < 0) goto fail;
  }
  if (reader.offset != length) {
    *problem = "trailing bytes after the request";
    goto fail;
  }
  return 0;
fail_memory:
  *problem = "out of memory";
fail:
  free_request(request);
  return -1;
}

/* ------------------------------------------------------------------ connections and sessions */

static void drop_pending(struct pending *p) {
  if (p->fd >= 0) close(p->fd);
  free(p->request);
  memset(p, 0, sizeof *p);
  p->fd = -1;
}

static int kind_of(const struct pending *p) { return p->header[4]; }

static void signal_group(pid_t pid, int sig) {
  if (pid <= 0) return;
  if (kill(-pid, sig) < 0 && errno == ESRCH) kill(pid, sig);
}

static const char *stage_name(int stage) {
  switch (stage) {
    case STAGE_SETGROUPS: return "setgroups";
    case STAGE_SETGID: return "setgid";
    case STAGE_SETUID: return "setuid";
    case STAGE_CHDIR: return "chdir";
    default: return "exec";
  }
}

static void finish_session(struct session *s, int status) {
  int report[2];
  ssize_t n;
  do n = read(s->error_pipe, report, sizeof report);
  while (n < 0 && errno == EINTR);
  if (s->control >= 0) {
    if (n == (ssize_t)sizeof report) {
      char text[600];
      const char *subject = report[0] == STAGE_CHDIR ? s->cwd : report[0] == STAGE_EXEC ? s->argv0 : NULL;
      if (!subject && (report[0] == STAGE_CHDIR || report[0] == STAGE_EXEC)) subject = "?";
      if (subject) snprintf(text, sizeof text, "%s %.255s: %s", stage_name(report[0]), subject, strerror(report[1]));
      else snprintf(text, sizeof text, "%s: %s", stage_name(report[0]), strerror(report[1]));
      send_failure(s->control, status, text);
    } else {
      send_exit(s->control, status);
    }
    close(s->control);
  }
  close(s->error_pipe);
  free(s->argv0);
  free(s->cwd);
  memset(s, 0, sizeof *s);
  s->control = -1;
  s->error_pipe = -1;
}

static void start_session(struct pending *control, struct pending *in, struct pending *out, struct pending *err) {
  struct request request;
  const char *problem = NULL;
  struct session *s = NULL;
  for (int i = 0; i < MAX_SESSIONS; i++) {
    if (!sessions[i].used) {
      s = &sessions[i];
      break;
    }
  }
  if (!s) {
    send_failure(control->fd, 255, "too many execs in this environment");
  } else if (parse_request(control->request, control->request_len, &request, &problem) < 0) {
    char text[128];
    snprintf(text, sizeof text, "invalid exec request: %s", problem);
    send_failure(control->fd, 255, text);
  } else {
    int error_pipe[2];
    pid_t pid = -1;
    if (pipe2(error_pipe, O_CLOEXEC) == 0) {
      pid = fork();
      if (pid == 0) exec_child(&request, in->fd, out->fd, err->fd, error_pipe[1]);
      close(error_pipe[1]);
      if (pid < 0) close(error_pipe[0]);
    }
    if (pid < 0) {
      char text[128];
      snprintf(text, sizeof text, "fork: %s", strerror(errno));
      send_failure(control->fd, 126, text);
    } else {
      fcntl(error_pipe[0], F_SETFL, O_NONBLOCK);
      s->used = 1;
      s->pid = pid;
      s->control = control->fd;
      s->error_pipe = error_pipe[0];
      s->message_got = 0;
      s->argv0 = strndup(request.argv[0], 255);
      s->cwd = strndup(request.cwd, 255);
      control->fd = -1; /* now the session's */
    }
    free_request(&request);
  }
  drop_pending(control);
  drop_pending(in);
  drop_pending(out);
  drop_pending(err);
}

/* When `p` became ready: drops it if its id and kind are taken, or starts the exec once all four are here. */
static void match(struct pending *p) {
  struct pending *found[4] = {NULL, NULL, NULL, NULL};
  for (int i = 0; i < MAX_PENDING; i++) {
    struct pending *q = &pending[i];
    if (q->fd < 0 || !q->ready || memcmp(q->header + 5, p->header + 5, ID_LEN) != 0) continue;
    int kind = kind_of(q);
    if (q != p && kind == kind_of(p)) {
      drop_pending(p);
      return;
    }
    found[kind] = q;
  }
  if (found[0] && found[1] && found[2] && found[3]) start_session(found[0], found[1], found[2], found[3]);
}

/* Reads what `p` has without blocking; reads stdio connections only up to their header. */
static void read_pending(struct pending *p) {
  for (;;) {
    unsigned char *target;
    size_t want;
    if (p->header_got < HEADER_LEN) {
      target = p->header + p->header_got;
      want = HEADER_LEN - p->header_got;
    } else if (p->length_got < 4) {
      target = p->length + p->length_got;
      want = 4 - p->length_got;
    } else {
      target = p->request + p->request_got;
      want = p->request_len - p->request_got;
    }
    ssize_t n = read(p->fd, target, want);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
      drop_pending(p);
      return;
    }
    if (p->header_got < HEADER_LEN) {
      p->header_got += (size_t)n;
      if (p->header_got < HEADER_LEN) continue;
      if (memcmp(p->header, MAGIC, 4) != 0 || kind_of(p) > KIND_STDERR) {
        drop_pending(p);
        return;
      }
      if (kind_of(p) != KIND_CONTROL) {
        p->ready = 1;
        match(p);
        return;
      }
    } else if (p->length_got < 4) {
      p->length_got += (size_t)n;
      if (p->length_got < 4) continue;
      p->request_len = get_be32(p->length);
      if (p->request_len == 0 || p->request_len > MAX_REQUEST) {
        send_failure(p->fd, 255, "invalid exec request: bad length");
        drop_pending(p);
        return;
      }
      p->request = malloc(p->request_len);
      if (!p->request) {
        send_failure(p->fd, 255, "invalid exec request: out of memory");
        drop_pending(p);
        return;
      }
    } else {
      p->request_got += (size_t)n;
      if (p->request_got < p->request_len) continue;
      p->ready = 1;
      match(p);
      return;
    }
  }
}

/* Reads control messages of a running exec; a closed or misbehaving control connection kills it. */
static void read_control(struct session *s) {
  for (;;) {
    ssize_t n = read(s->control, s->message + s->message_got, sizeof s->message - s->message_got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) break;
    s->message_got += (size_t)n;
    if (s->message_got < sizeof s->message) continue;
    s->message_got = 0;
    uint32_t sig = get_be32(s->message + 1);
    if (s->message[0] != 'K' || sig < 1 || sig > 64) break;
    signal_group(s->pid, (int)sig);
  }
  signal_group(s->pid, SIGKILL);
  close(s->control);
  s->control = -1;
}

static void accept_connections(void) {
  for (int accepted = 0; accepted < 64; accepted++) {
    struct pending *slot = NULL;
    for (int i = 0; i < MAX_PENDING; i++) {
      if (pending[i].fd < 0) {
        slot = &pending[i];
        break;
      }
    }
    int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED) note("accept: %s", strerror(errno));
      return;
    }
    if (!slot) {
      close(fd);
      continue;
    }
    memset(slot, 0, sizeof *slot);
    slot->fd = fd;
    slot->since_ms = now_ms();
  }
}

static void reap(int *main_status) {
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid < 0 && errno == EINTR) continue;
    if (pid <= 0) return;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 255;
    if (pid == main_pid) {
      *main_status = code;
      main_pid = -1;
      continue;
    }
    for (int i = 0; i < MAX_SESSIONS; i++) {
      if (sessions[i].used && sessions[i].pid == pid) {
        finish_session(&sessions[i], code);
        break;
      }
    }
  }
}

/* ------------------------------------------------------------------ setup */

static int open_listener(const char *path) {
  struct sockaddr_un address;
  memset(&address, 0, sizeof address);
  address.sun_family = AF_UNIX;
  char temporary[sizeof address.sun_path];
  /* unix(7): sun_path holds 108 bytes including the NUL. */
  if (snprintf(temporary, sizeof temporary, "%s.new", path) >= (int)sizeof temporary) {
    note("socket path too long: %s", path);
    return -1;
  }
  memcpy(address.sun_path, temporary, strlen(temporary) + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    note("socket: %s", strerror(errno));
    return -1;
  }
  unlink(temporary);
  mode_t previous = umask(0177);
  int bound = bind(fd, (struct sockaddr *)&address, sizeof address);
  umask(previous);
  if (bound < 0 || listen(fd, 128) < 0 || rename(temporary, path) < 0) {
    note("listening on %s: %s", path, strerror(errno));
    unlink(temporary);
    close(fd);
    return -1;
  }
  return fd;
}

static int parse_number(const char *text, uint32_t *value) {
  char *end = NULL;
  errno = 0;
  unsigned long parsed = strtoul(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || parsed >= 0xffffffffUL || text[0] == '-') return -1;
  *value = (uint32_t)parsed;
  return 0;
}

static int parse_groups(const char *text, struct identity *identity) {
  identity->ngroups = 0;
  while (*text) {
    char item[16];
    size_t length = strcspn(text, ",");
    uint32_t gid;
    if (length == 0 || length >= sizeof item || identity->ngroups >= 256) return -1;
    memcpy(item, text, length);
    item[length] = '\0';
    if (parse_number(item, &gid) < 0) return -1;
    identity->groups[identity->ngroups++] = gid;
    text += length;
    if (*text == ',') text++;
  }
  return 0;
}

int main(int argc, char **argv) {
  const char *socket_path = DEFAULT_SOCKET;
  struct identity identity;
  memset(&identity, 0, sizeof identity);
  int gid_set = 0;
  char **command = NULL;
  for (int i = 1; i < argc; i++) {
    uint32_t value;
    if (strcmp(argv[i], "--") == 0) {
      if (i + 1 < argc) command = argv + i + 1;
      break;
    }
    if (i + 1 >= argc) goto usage;
    if (strcmp(argv[i], "--socket") == 0) socket_path = argv[++i];
    else if (strcmp(argv[i], "--uid") == 0 && parse_number(argv[++i], &value) == 0) identity.set = 1, identity.uid = value;
    else if (strcmp(argv[i], "--gid") == 0 && parse_number(argv[++i], &value) == 0) gid_set = 1, identity.gid = value;
    else if (strcmp(argv[i], "--groups") == 0 && parse_groups(argv[++i], &identity) == 0) continue;
    else goto usage;
  }
  if (identity.set != gid_set) goto usage;

  /* Keep fds 0-2 taken, so accepted connections never land there. */
  for (int fd = 0; fd < 3; fd++) {
    if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) < 0) return 1;
  }
  if (getpid() != 1) prctl(PR_SET_CHILD_SUBREAPER, 1);
  for (int i = 0; i < MAX_PENDING; i++) pending[i].fd = -1;
  for (int i = 0; i < MAX_SESSIONS; i++) sessions[i].control = sessions[i].error_pipe = -1;

  sigset_t handled;
  sigemptyset(&handled);
  int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
  for (size_t i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++) sigaddset(&handled, forwarded[i]);
  sigaddset(&handled, SIGCHLD);
  sigprocmask(SIG_BLOCK, &handled, NULL);
  signal(SIGPIPE, SIG_IGN);
  signals = signalfd(-1, &handled, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signals < 0) {
    note("signalfd: %s", strerror(errno));
    return 1;
  }
  listener = open_listener(socket_path);
  if (command) {
    main_pid = spawn_main(command, &identity);
    if (main_pid < 0) {
      note("fork: %s", strerror(errno));
      return 1;
    }
  }

  struct pollfd fds[2 + MAX_PENDING + MAX_SESSIONS];
  int owner[2 + MAX_PENDING + MAX_SESSIONS]; /* index into pending (>= 0) or -1 - session index */
  int main_status = -1;
  for (;;) {
    int count = 0;
    fds[count++] = (struct pollfd){.fd = signals, .events = POLLIN};
    int listener_index = -1;
    if (listener >= 0) {
      listener_index = count;
      fds[count++] = (struct pollfd){.fd = listener, .events = POLLIN};
    }
    int first_other = count;
    int any_pending = 0;
    for (int i = 0; i < MAX_SESSIONS; i++) {
      if (!sessions[i].used || sessions[i].control < 0) continue;
      owner[count] = -1 - i;
      fds[count++] = (struct pollfd){.fd = sessions[i].control, .events = POLLIN};
    }
    for (int i = 0; i < MAX_PENDING; i++) {
      if (pending[i].fd < 0) continue;
      any_pending = 1;
      owner[count] = i;
      /* A connection waiting for its peers is only watched for hang-up (its data belongs to the exec). */
      fds[count++] = (struct pollfd){.fd = pending[i].fd, .events = pending[i].ready ? 0 : POLLIN};
    }
    int ready = poll(fds, (nfds_t)count, any_pending ? 1000 : -1);
    if (ready < 0) {
      if (errno != EINTR) {
        note("poll: %s", strerror(errno));
        usleep(10000);
      }
      continue;
    }
    if (fds[0].revents) {
      struct signalfd_siginfo info;
      while (read(signals, &info, sizeof info) == (ssize_t)sizeof info) {
        int sig = (int)info.ssi_signo;
        if (sig == SIGCHLD) continue;
        if (main_pid > 0) kill(main_pid, sig);
        else if (!command && (sig == SIGTERM || sig == SIGINT)) return 0;
      }
      reap(&main_status);
      if (main_status >= 0) return main_status;
    }
    for (int k = first_other; k < count; k++) {
      if (!fds[k].revents) continue;
      if (owner[k] < 0) {
        struct session *s = &sessions[-1 - owner[k]];
        if (s->used && s->control == fds[k].fd) read_control(s);
      } else {
        struct pending *p = &pending[owner[k]];
        if (p->fd != fds[k].fd) continue;
        if (fds[k].revents & POLLIN) read_pending(p);
        else drop_pending(p);
      }
    }
    if (listener_index >= 0 && (fds[listener_index].revents & POLLIN)) accept_connections();
    if (any_pending) {
      long long now = now_ms();
      for (int i = 0; i < MAX_PENDING; i++) {
        if (pending[i].fd >= 0 && now - pending[i].since_ms > PENDING_TIMEOUT_MS) drop_pending(&pending[i]);
      }
    }
  }

usage:
  fprintf(stderr, "usage: %s [--socket PATH] [--uid N --gid N [--groups G,...]] [-- COMMAND [ARG...]]\n", argv[0]);
  return 2;
}
