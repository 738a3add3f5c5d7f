/* warren-proxy-front: the port proxy's native front (docs/design/0008). It listens on the proxy's public address
 * and relays plain HTTP/1.1 requests to the apps in environments itself (epoll, splice(2) for responses); every
 * connection it cannot or may not relay is handed, with the bytes it read, to the runner's Node proxy over a unix
 * socket, prefixed with a PROXY protocol v1 line (haproxy's proxy-protocol.txt §2.1) naming the client.
 *
 * The front decides nothing about auth itself. For a request head it parses strictly (the rules of
 * proxy/request-head.ts, RFC 9112), it asks the runner on stdout, by Host and the values of Warren's session cookie:
 *   ask <qid> <host> [<session value> ...]
 * and the runner answers on stdin, with how long (ms) the answer may be reused for the same Host and values:
 *   grant <qid> <ttl> <environment id> <port> tcp <address>    relay to <address>:<port>
 *   grant <qid> <ttl> <environment id> <port> ns <pid>         relay to 127.0.0.1:<port> in /proc/<pid>/ns/net
 *   deny <qid> <ttl>                                           hand the connection to the runner
 *   flush                                                      forget every answer (environments changed)
 * Every relayed request is checked that way (answers are cached per Host and session values, never longer than
 * the ttl); Warren's cookie is removed and X-Forwarded-* added as proxy/relay.ts does. It reports on stdout:
 *   listening <port>            once bound
 *   failed <errno name> <text>  when it cannot bind (then exits 1)
 *   activity <environment id>   a request was relayed (at most once per second per environment)
 * It exits when stdin ends (the runner is gone). Diagnostics go to stderr.
 *
 * Usage: warren-proxy-front HOST PORT HANDOFF_SOCKET PROTO
 *        warren-proxy-front --rewrite REMOTE PROTO < head   (tests: prints what the front would ask and forward)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Limits, as in proxy/relay.ts. */
#define MAX_HEAD 16384            /* longest request head relayed (Node's maxHeaderSize) */
#define IN_CAP (MAX_HEAD + 4096)  /* client bytes buffered per connection */
#define HEAD_TIMEOUT_MS 60000     /* first request head (Node's headersTimeout) */
#define HAND_OFF_WAIT_MS 10000    /* waiting for the app to finish before a hand-off */
#define LINGER_MS 5000            /* a client keeping its side open after the app closed */
#define MAX_VALUES 8              /* session cookie values per request relayed */
#define MAX_KEY 1024              /* Host + session values */
#define MAX_REST MAX_HEAD         /* a Cookie field's other pairs, rejoined (longer: the runner decides) */
#define CACHE_SLOTS 2048
#define SESSION_COOKIE "warren_proxy_session"
#define TOKEN_PARAMETER "warren-token"

enum phase {
  P_HEAD,       /* reading request heads and bodies, relaying them */
  P_ASKING,     /* a head waits for the runner's answer (client not read) */
  P_CONNECTING, /* the first request is granted; connecting to the app (client not read) */
  P_DRAINING,   /* a request needs the runner: the app finishes earlier responses first (client not read) */
  P_TUNNEL,     /* handed to the runner: bytes both ways, unparsed */
  P_CLOSING,    /* the app closed: the client gets the rest, then LINGER_MS to close its side */
  P_WAITING,    /* the runner's hand-off socket has a full backlog: retried by the sweep (client not read) */
};

struct grant {
  bool deny;
  char env[96];
  int port;
  bool in_namespace; /* connect to 127.0.0.1:port inside /proc/<pid>/ns/net */
  int pid;
  struct sockaddr_storage address;
  socklen_t address_length;
};

struct conn {
  struct conn *prev, *next;
  unsigned long id;
  enum phase phase;
  int client, up; /* up: the app, or the runner's hand-off socket in P_TUNNEL; -1 when none */
  int pipe[2];    /* up -> client */
  size_t piped;
  uint32_t client_events, up_events;
  bool client_registered, up_registered;
  bool up_connected, up_used, up_shut, up_eof, client_eof, client_shut, dead;
  char *in;
  size_t in_length, scanned;
  char *out;
  size_t out_length, out_capacity;
  long long remaining;
  char host[256];
  char env[96];
  int port;
  bool have_grant; /* `answer` applies to the head in `in` (an answer just received) */
  struct grant answer;
  char remote[INET6_ADDRSTRLEN];
  struct sockaddr_storage peer, local;
  long long deadline;
};

struct ask {
  struct ask *next;
  unsigned long qid;
  unsigned long generation; /* `flushes` when asked: an answer computed before a flush is used once, not cached */
  char *key;
  struct conn *conn;
};

struct entry {
  char *key;
  long long expires;
  struct grant grant;
};

static int epoll_fd, listener = -1, host_namespace = -1;
static bool listener_paused;
static const char *hand_off_path, *proto;
static struct conn *conns;
static struct conn *dead; /* closed during this turn of the loop; freed after it, as events may still name them */
static struct ask *asks;
static unsigned long next_id = 1, flushes;
static struct entry cache[CACHE_SLOTS];
static int cache_count;
static struct { char env[96]; long long sent; } activity[256];
static int activity_count;
static char scratch[2 * IN_CAP + 1024];

#define TAG_LISTENER 0
#define TAG_STDIN 2

static long long now_ms(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static void report(const char *format, ...) {
  char line[2048];
  va_list args;
  va_start(args, format);
  int length = vsnprintf(line, sizeof line - 1, format, args);
  va_end(args);
  if (length < 0) return;
  if (length > (int)sizeof line - 2) length = sizeof line - 2;
  line[length++] = '\n';
  for (int done = 0; done < length;) {
    ssize_t written = write(STDOUT_FILENO, line + done, (size_t)(length - done));
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) exit(0); /* the runner is gone */
    done += (int)written;
  }
}

static void warn(const char *what) { fprintf(stderr, "%s: %s\n", what, strerror(errno)); }

/* ------------------------------------------------------------------------------------------ request heads */

/* tchar (RFC 9110 §5.6.2) and the octets of a field value (RFC 9110 §5.5: VCHAR, obs-text, SP, HTAB). */
static uint8_t tchar[256], field_octet[256];

static void init_tables(void) {
  for (const char *c = "!#$%&'*+-.^_`|~"; *c; c++) tchar[(uint8_t)*c] = 1;
  for (int c = '0'; c <= '9'; c++) tchar[c] = 1;
  for (int c = 'A'; c <= 'Z'; c++) tchar[c] = 1;
  for (int c = 'a'; c <= 'z'; c++) tchar[c] = 1;
  for (int c = 0x20; c <= 0xff; c++) field_octet[c] = c != 0x7f;
  field_octet['\t'] = 1;
}

struct head {
  const char *target;
  size_t target_length;
  const char *host, *cookie; /* cookie NULL when there is none */
  size_t host_length, cookie_length;
  long long content_length;
  bool forwarded;
  size_t length;
};

/* Whether data[0, length) is `name` (lower case) ignoring ASCII case; with `underscore`, `_` matches `-`. */
static bool name_is(const char *data, size_t length, const char *name, bool underscore) {
  if (strlen(name) != length) return false;
  for (size_t i = 0; i < length; i++) {
    uint8_t octet = (uint8_t)data[i];
    if (octet >= 'A' && octet <= 'Z') octet |= 0x20;
    else if (underscore && octet == '_') octet = '-';
    if (octet != (uint8_t)name[i]) return false;
  }
  return true;
}

/* Whether a Connection value lists only keep-alive and close (RFC 9110 §7.6.1). */
static bool persistence_only(const char *value, size_t length) {
  size_t start = 0;
  for (size_t i = 0; i <= length; i++) {
    if (i < length && value[i] != ',') continue;
    size_t a = start, b = i;
    while (a < b && (value[a] == ' ' || value[a] == '\t' || (uint8_t)value[a] == 0xa0)) a++;
    while (b > a && (value[b - 1] == ' ' || value[b - 1] == '\t' || (uint8_t)value[b - 1] == 0xa0)) b--;
    if (!name_is(value + a, b - a, "keep-alive", false) && !name_is(value + a, b - a, "close", false)) return false;
    start = i + 1;
  }
  return true;
}

/* Parses the head in data[0, length), length just past the first CRLFCRLF: the rules of parseRequestHead in
 * proxy/request-head.ts, which documents them. Returns false for anything else (the runner handles it). */
static bool parse_head(const char *data, size_t length, struct head *head) {
  const uint8_t *d = (const uint8_t *)data;
  size_t i = 0;
  while (i < length && tchar[d[i]]) i++;
  if (i == 0 || d[i] != ' ') return false;
  size_t target = ++i;
  if (d[i] != '/') return false;
  while (d[i] > ' ' && d[i] < 0x7f) i++;
  head->target = data + target;
  head->target_length = i - target;
  static const char version[] = " HTTP/1.1\r\n";
  if (i + sizeof version - 1 > length || memcmp(d + i, version, sizeof version - 1) != 0) return false;
  i += sizeof version - 1;
  int hosts = 0, cookies = 0, content_lengths = 0;
  head->cookie = NULL;
  head->cookie_length = 0;
  head->content_length = 0;
  head->forwarded = false;
  for (;;) {
    if (d[i] == '\r') {
      if (d[i + 1] == '\n' && i + 2 == length) break;
      return false;
    }
    size_t name = i;
    while (tchar[d[i]]) i++;
    size_t name_length = i - name;
    if (name_length == 0 || d[i] != ':') return false;
    i++;
    while (d[i] == ' ' || d[i] == '\t') i++;
    size_t value = i, value_end = i;
    for (;;) {
      uint8_t octet = d[i];
      if (octet == '\r') break;
      if (!field_octet[octet]) return false;
      i++;
      if (octet != ' ' && octet != '\t') value_end = i;
    }
    if (d[i + 1] != '\n') return false;
    i += 2;
    const char *n = data + name;
    const char *v = data + value;
    size_t v_length = value_end - value;
    switch (name_length) {
    case 2:
      if (name_is(n, 2, "te", false)) return false;
      break;
    case 4:
      if (name_is(n, 4, "host", false)) hosts++, head->host = v, head->host_length = v_length;
      break;
    case 6:
      if (name_is(n, 6, "cookie", false)) cookies++, head->cookie = v, head->cookie_length = v_length;
      break;
    case 7:
      if (name_is(n, 7, "trailer", false) || name_is(n, 7, "upgrade", false)) return false;
      break;
    case 10:
      if (name_is(n, 10, "keep-alive", false)) return false;
      if (name_is(n, 10, "connection", false) && !persistence_only(v, v_length)) return false;
      break;
    case 14:
      if (name_is(n, 14, "content-length", true)) {
        if (++content_lengths > 1 || v_length == 0 || v_length > 15) return false;
        for (size_t at = 0; at < v_length; at++) {
          if (v[at] < '0' || v[at] > '9') return false;
          head->content_length = head->content_length * 10 + (v[at] - '0');
        }
      }
      break;
    case 15:
      if (name_is(n, 15, "x-forwarded-for", false)) head->forwarded = true;
      break;
    case 16:
      if (name_is(n, 16, "proxy-connection", false)) return false;
      if (name_is(n, 16, "x-forwarded-host", false)) head->forwarded = true;
      break;
    case 17:
      if (name_is(n, 17, "transfer-encoding", true)) return false;
      if (name_is(n, 17, "x-forwarded-proto", false)) head->forwarded = true;
      break;
    case 18:
      if (name_is(n, 18, "proxy-authenticate", false)) return false;
      break;
    case 19:
      if (name_is(n, 19, "proxy-authorization", false)) return false;
      break;
    }
  }
  if (hosts != 1 || cookies > 1) return false;
  head->length = length;
  return true;
}

static int hex_value(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Whether the query of a request target has a parameter whose name decodes (as URLSearchParams does:
 * application/x-www-form-urlencoded, `+` is a space, bad `%` escapes stay as they are, and one `?` leading the
 * query is dropped, so `/??warren-token=` names it too) to TOKEN_PARAMETER. */
static bool has_token_parameter(const char *target, size_t length) {
  const char *query = memchr(target, '?', length);
  if (!query) return false;
  const char *end = target + length;
  const char *pair = query + 1;
  if (pair < end && *pair == '?') pair++;
  while (pair <= end) {
    const char *stop = pair;
    while (stop < end && *stop != '&') stop++;
    const char *name_end = memchr(pair, '=', (size_t)(stop - pair));
    if (!name_end) name_end = stop;
    const char *want = TOKEN_PARAMETER;
    size_t matched = 0;
    bool same = true;
    for (const char *c = pair; c < name_end && same; c++) {
      int octet = (uint8_t)*c;
      if (octet == '+') octet = ' ';
      else if (octet == '%' && name_end - c >= 3 && hex_value((uint8_t)c[1]) >= 0 && hex_value((uint8_t)c[2]) >= 0) {
        octet = hex_value((uint8_t)c[1]) * 16 + hex_value((uint8_t)c[2]);
        c += 2;
      }
      same = want[matched] != '\0' && octet == (uint8_t)want[matched];
      matched++;
    }
    if (same && want[matched] == '\0') return true;
    pair = stop + 1;
  }
  return false;
}

static bool trim_octet(uint8_t c) { return c == ' ' || c == '\t' || c == 0xa0; } /* String.prototype.trim on latin1 */

/* Splits a Cookie value as takeSessionCookies (proxy/session.ts) does: the values of Warren's cookie (trimmed,
 * one pair of surrounding quotes removed) into `values`, the other pairs (trimmed) joined by "; " into `rest`
 * (room for MAX_REST octets: rejoining can make it longer than the field, e.g. `a;a;a;...`).
 * Returns the number of values, or -1 when there are more than MAX_VALUES, one has an octet a signed value
 * never has, or `rest` would not fit (then the runner decides the whole request). */
static int split_cookie(const char *cookie, size_t length, const char **values, size_t *value_lengths, char *rest, size_t *rest_length) {
  int count = 0;
  *rest_length = 0;
  size_t start = 0;
  for (size_t i = 0; i <= length; i++) {
    if (i < length && cookie[i] != ';') continue;
    size_t a = start, b = i;
    start = i + 1;
    while (a < b && trim_octet((uint8_t)cookie[a])) a++;
    while (b > a && trim_octet((uint8_t)cookie[b - 1])) b--;
    if (a == b) continue;
    const char *equals = memchr(cookie + a, '=', b - a);
    size_t name_a = a, name_b = equals ? (size_t)(equals - cookie) : b;
    while (name_a < name_b && trim_octet((uint8_t)cookie[name_a])) name_a++;
    while (name_b > name_a && trim_octet((uint8_t)cookie[name_b - 1])) name_b--;
    if (name_b - name_a == sizeof SESSION_COOKIE - 1 && memcmp(cookie + name_a, SESSION_COOKIE, name_b - name_a) == 0) {
      if (count == MAX_VALUES) return -1;
      size_t value_a = equals ? (size_t)(equals - cookie) + 1 : b, value_b = b;
      while (value_a < value_b && trim_octet((uint8_t)cookie[value_a])) value_a++;
      while (value_b > value_a && trim_octet((uint8_t)cookie[value_b - 1])) value_b--;
      if (value_b - value_a >= 2 && cookie[value_a] == '"' && cookie[value_b - 1] == '"') value_a++, value_b--;
      for (size_t at = value_a; at < value_b; at++) {
        char c = cookie[at];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.')) return -1;
      }
      values[count] = cookie + value_a;
      value_lengths[count++] = value_b - value_a;
    } else {
      if (*rest_length + (*rest_length > 0 ? 2 : 0) + (b - a) > MAX_REST) return -1;
      if (*rest_length > 0) memcpy(rest + *rest_length, "; ", 2), *rest_length += 2;
      memcpy(rest + *rest_length, cookie + a, b - a);
      *rest_length += b - a;
    }
  }
  return count;
}

static size_t append(char *out, size_t at, const char *data, size_t length) {
  memcpy(out + at, data, length);
  return at + length;
}

#define APPEND_LITERAL(out, at, text) append(out, at, text, sizeof text - 1)

/* The head for the app, into `out` (room for 2 * head length + 1024): the client's bytes plus X-Forwarded-*, or
 * when Warren's cookie or a client's X-Forwarded-* must go, a rewrite as rewriteHead in proxy/relay.ts does.
 * `strip` says the Cookie field named Warren's cookie; `rest` is what remains of it. */
static size_t forward_head(char *out, const char *data, const struct head *head, bool strip, const char *rest, size_t rest_length, const char *remote, const char *host, size_t host_length) {
  size_t at = 0;
  if (!strip && !head->forwarded) {
    at = append(out, at, data, head->length - 2);
  } else {
    const char *line = data, *end = data + head->length - 4;
    const char *eol = memmem(line, (size_t)(end - line), "\r\n", 2);
    if (!eol) eol = end;
    at = append(out, at, line, (size_t)(eol - line));
    at = APPEND_LITERAL(out, at, "\r\n");
    /* Earlier X-Forwarded-For values are gathered into `prior` (after the head in `out`). */
    char prior[MAX_HEAD];
    size_t prior_length = 0;
    for (line = eol + 2; line < end; line = eol + 2) {
      eol = memmem(line, (size_t)(end - line), "\r\n", 2);
      if (!eol) eol = end;
      const char *colon = memchr(line, ':', (size_t)(eol - line));
      size_t name_length = (size_t)(colon - line);
      if (name_is(line, name_length, "x-forwarded-for", false)) {
        const char *a = colon + 1, *b = eol;
        while (a < b && trim_octet((uint8_t)*a)) a++;
        while (b > a && trim_octet((uint8_t)b[-1])) b--;
        if (a < b) {
          if (prior_length > 0) prior_length = append(prior, prior_length, ", ", 2);
          prior_length = append(prior, prior_length, a, (size_t)(b - a));
        }
      } else if (strip && name_is(line, name_length, "cookie", false)) {
        if (rest_length > 0) {
          at = APPEND_LITERAL(out, at, "cookie: ");
          at = append(out, at, rest, rest_length);
          at = APPEND_LITERAL(out, at, "\r\n");
        }
      } else if (!name_is(line, name_length, "x-forwarded-host", false) && !name_is(line, name_length, "x-forwarded-proto", false)) {
        at = append(out, at, line, (size_t)(eol - line) + 2);
      }
    }
    at = APPEND_LITERAL(out, at, "x-forwarded-for: ");
    if (prior_length > 0) {
      at = append(out, at, prior, prior_length);
      at = APPEND_LITERAL(out, at, ", ");
    }
    at = append(out, at, remote, strlen(remote));
    at = APPEND_LITERAL(out, at, "\r\n");
    goto host;
  }
  at = APPEND_LITERAL(out, at, "x-forwarded-for: ");
  at = append(out, at, remote, strlen(remote));
  at = APPEND_LITERAL(out, at, "\r\n");
host:
  at = APPEND_LITERAL(out, at, "x-forwarded-host: ");
  at = append(out, at, host, host_length);
  at = APPEND_LITERAL(out, at, "\r\nx-forwarded-proto: ");
  at = append(out, at, proto, strlen(proto));
  at = APPEND_LITERAL(out, at, "\r\n\r\n");
  return at;
}

/* What a request asks the runner: the cache key `<host> <value> ...` (also the ask line's tail).
 * Returns false when the request is not one the front asks about (the runner handles it). */
static bool request_key(const struct head *head, char *key, size_t *key_length, bool *strip, char *rest, size_t *rest_length) {
  for (size_t i = 0; i < head->host_length; i++) {
    uint8_t c = (uint8_t)head->host[i];
    if (c <= ' ' || c >= 0x7f) return false;
  }
  if (head->host_length == 0 || head->host_length >= 256 || has_token_parameter(head->target, head->target_length)) return false;
  size_t at = append(key, 0, head->host, head->host_length);
  *strip = head->cookie && memmem(head->cookie, head->cookie_length, SESSION_COOKIE, sizeof SESSION_COOKIE - 1);
  *rest_length = 0;
  if (*strip) {
    const char *values[MAX_VALUES];
    size_t lengths[MAX_VALUES];
    int count = split_cookie(head->cookie, head->cookie_length, values, lengths, rest, rest_length);
    if (count < 0) return false;
    for (int v = 0; v < count; v++) {
      if (at + 1 + lengths[v] >= MAX_KEY) return false;
      key[at++] = ' ';
      at = append(key, at, values[v], lengths[v]);
    }
  }
  key[at] = '\0';
  *key_length = at;
  return true;
}

/* ------------------------------------------------------------------------------------------ answers */

static uint64_t hash_key(const char *key) {
  uint64_t hash = 1469598103934665603ULL;
  for (; *key; key++) hash = (hash ^ (uint8_t)*key) * 1099511628211ULL;
  return hash;
}

static void cache_clear(void) {
  for (int i = 0; i < CACHE_SLOTS; i++) free(cache[i].key), cache[i].key = NULL;
  cache_count = 0;
}

static const struct grant *cache_get(const char *key) {
  long long now = now_ms();
  for (uint64_t i = hash_key(key) % CACHE_SLOTS, probes = 0; cache[i].key && probes < CACHE_SLOTS; i = (i + 1) % CACHE_SLOTS, probes++) {
    if (strcmp(cache[i].key, key) == 0) return cache[i].expires > now ? &cache[i].grant : NULL;
  }
  return NULL;
}

static void cache_put(const char *key, const struct grant *grant, long long ttl) {
  if (ttl <= 0) return;
  if (cache_count >= CACHE_SLOTS / 2) cache_clear();
  uint64_t i = hash_key(key) % CACHE_SLOTS;
  while (cache[i].key && strcmp(cache[i].key, key) != 0) i = (i + 1) % CACHE_SLOTS;
  if (!cache[i].key) {
    cache[i].key = strdup(key);
    if (!cache[i].key) return;
    cache_count++;
  }
  cache[i].grant = *grant;
  cache[i].expires = now_ms() + ttl;
}

static void report_activity(const char *env) {
  long long now = now_ms();
  for (int i = 0; i < activity_count; i++) {
    if (strcmp(activity[i].env, env) != 0) continue;
    if (now - activity[i].sent >= 1000) activity[i].sent = now, report("activity %s", env);
    return;
  }
  if (activity_count == 256) activity_count = 0;
  snprintf(activity[activity_count].env, sizeof activity[0].env, "%s", env);
  activity[activity_count++].sent = now;
  report("activity %s", env);
}

/* ------------------------------------------------------------------------------------------ connections */

static void set_interest(int fd, bool *registered, uint32_t *current, uint32_t wanted, uint64_t tag) {
  if (fd < 0) return;
  struct epoll_event event = { .events = wanted, .data.u64 = tag };
  /* An fd registered with no events still reports EPOLLHUP (level-triggered): such an fd leaves the set. */
  if (wanted == 0) {
    if (*registered) epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, NULL);
    *registered = false;
  } else if (!*registered) {
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event) == 0) *registered = true;
  } else if (*current != wanted) {
    epoll_ctl(epoll_fd, EPOLL_CTL_MOD, fd, &event);
  }
  *current = wanted;
}

static void update_interest(struct conn *c) {
  if (c->dead) return;
  uint32_t client = 0, up = 0;
  /* Once the app ended its side, nothing more is sent to it: its last answers go out and the client is ended. */
  bool reading = ((c->phase == P_HEAD && !c->up_eof) || c->phase == P_TUNNEL) && c->out_length == 0 && c->in_length < IN_CAP;
  if ((reading && !c->client_eof) || (c->phase == P_CLOSING && !c->client_eof)) client |= EPOLLIN;
  if (c->piped > 0) client |= EPOLLOUT;
  if (c->up >= 0) {
    if (c->phase == P_CONNECTING || c->out_length > 0) up |= EPOLLOUT;
    if (c->up_connected && c->piped == 0 && !c->up_eof) up |= EPOLLIN;
  }
  set_interest(c->client, &c->client_registered, &c->client_events, client, (uint64_t)(uintptr_t)c);
  set_interest(c->up, &c->up_registered, &c->up_events, up, (uint64_t)(uintptr_t)c | 1);
}

static void close_up(struct conn *c) {
  if (c->up < 0) return;
  if (c->up_registered) epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c->up, NULL);
  close(c->up);
  c->up = -1;
  c->up_registered = false;
  c->up_events = 0;
  c->up_connected = c->up_used = c->up_shut = c->up_eof = false;
  c->out_length = 0;
}

static void kill_conn(struct conn *c) {
  if (c->dead) return;
  c->dead = true;
  close_up(c);
  close(c->client);
  if (c->pipe[0] >= 0) close(c->pipe[0]), close(c->pipe[1]);
  for (struct ask *a = asks; a; a = a->next) if (a->conn == c) a->conn = NULL;
  if (c->prev) c->prev->next = c->next;
  else conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->next = dead;
  dead = c;
}

static void free_dead(void) {
  while (dead) {
    struct conn *c = dead;
    dead = c->next;
    free(c->in);
    free(c->out);
    free(c);
  }
}

/* Writes to `up` what `out` holds. Returns false when the connection died. */
static bool flush_out(struct conn *c) {
  while (c->out_length > 0) {
    ssize_t written = send(c->up, c->out, c->out_length, MSG_NOSIGNAL);
    if (written < 0 && errno == EINTR) continue;
    if (written < 0 && errno == EAGAIN) return true;
    if (written <= 0) {
      kill_conn(c);
      return false;
    }
    memmove(c->out, c->out + written, c->out_length - (size_t)written);
    c->out_length -= (size_t)written;
  }
  return true;
}

/* Sends bytes to `up` (the app or the runner), keeping what the socket does not take in `out`. */
static bool send_up(struct conn *c, const char *data, size_t length) {
  c->up_used = true;
  if (c->out_length == 0) {
    while (length > 0) {
      ssize_t written = send(c->up, data, length, MSG_NOSIGNAL);
      if (written < 0 && errno == EINTR) continue;
      if (written < 0 && errno == EAGAIN) break;
      if (written <= 0) {
        kill_conn(c);
        return false;
      }
      data += written;
      length -= (size_t)written;
    }
  }
  if (length == 0) return true;
  if (c->out_length + length > c->out_capacity) {
    size_t capacity = c->out_length + length;
    char *grown = realloc(c->out, capacity);
    if (!grown) {
      kill_conn(c);
      return false;
    }
    c->out = grown;
    c->out_capacity = capacity;
  }
  memcpy(c->out + c->out_length, data, length);
  c->out_length += length;
  return true;
}

static void consume(struct conn *c, size_t length) {
  memmove(c->in, c->in + length, c->in_length - length);
  c->in_length -= length;
}

/* Hands the connection to the runner: a PROXY v1 line naming the client, then every byte not yet forwarded. */
static void hand_off(struct conn *c) {
  close_up(c);
  c->have_grant = false;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct sockaddr_un address = { .sun_family = AF_UNIX };
  snprintf(address.sun_path, sizeof address.sun_path, "%s", hand_off_path);
  if (fd < 0 || connect(fd, (struct sockaddr *)&address, sizeof address) < 0) {
    int error = errno;
    if (fd >= 0) close(fd);
    if (fd >= 0 && error == EAGAIN) {
      /* The runner's accept queue is full (a burst while its event loop is busy): try again from the sweep. */
      if (c->phase != P_WAITING) c->deadline = now_ms() + HAND_OFF_WAIT_MS;
      c->phase = P_WAITING;
      update_interest(c);
      return;
    }
    errno = error;
    warn("hand-off connect");
    kill_conn(c);
    return;
  }
  char local[INET6_ADDRSTRLEN] = "", line[160];
  int remote_port = 0, local_port = 0;
  bool six = c->peer.ss_family == AF_INET6;
  if (six) {
    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&c->local)->sin6_addr, local, sizeof local);
    remote_port = ntohs(((struct sockaddr_in6 *)&c->peer)->sin6_port);
    local_port = ntohs(((struct sockaddr_in6 *)&c->local)->sin6_port);
  } else {
    inet_ntop(AF_INET, &((struct sockaddr_in *)&c->local)->sin_addr, local, sizeof local);
    remote_port = ntohs(((struct sockaddr_in *)&c->peer)->sin_port);
    local_port = ntohs(((struct sockaddr_in *)&c->local)->sin_port);
  }
  int length = snprintf(line, sizeof line, "PROXY %s %s %s %d %d\r\n", six ? "TCP6" : "TCP4", c->remote, local, remote_port, local_port);
  c->phase = P_TUNNEL;
  c->up = fd;
  c->up_connected = true;
  c->deadline = 0;
  c->remaining = 0;
  if (c->pipe[0] < 0 && pipe2(c->pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
    c->pipe[0] = c->pipe[1] = -1;
    kill_conn(c);
    return;
  }
  send_up(c, line, (size_t)length);
}

/* A request the front may not relay: to the runner, after the app finished the responses of earlier requests. */
static void to_runner(struct conn *c) {
  if (c->up >= 0 && c->up_used && !c->up_eof) {
    c->phase = P_DRAINING;
    if (!c->up_shut) shutdown(c->up, SHUT_WR), c->up_shut = true;
    c->deadline = now_ms() + HAND_OFF_WAIT_MS;
    return;
  }
  hand_off(c);
}

static void ask(struct conn *c, const char *key) {
  struct ask *a = calloc(1, sizeof *a);
  if (!a || !(a->key = strdup(key))) {
    free(a);
    kill_conn(c);
    return;
  }
  a->qid = next_id++;
  a->generation = flushes;
  a->conn = c;
  a->next = asks;
  asks = a;
  c->phase = P_ASKING;
  report("ask %lu %s", a->qid, key);
}

static void connect_up(struct conn *c, const struct grant *grant) {
  int family = grant->in_namespace ? AF_INET : grant->address.ss_family;
  int fd = -1;
  if (grant->in_namespace) {
    /* The socket belongs to the network namespace it was created in (socket(7), setns(2)). */
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/net", grant->pid);
    int ns = open(path, O_RDONLY | O_CLOEXEC);
    if (ns >= 0 && setns(ns, CLONE_NEWNET) == 0) {
      fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (setns(host_namespace, CLONE_NEWNET) < 0) {
        warn("setns back to the host");
        exit(1); /* never go on in an environment's namespace */
      }
    }
    if (ns >= 0) close(ns);
  } else {
    fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  }
  if (fd < 0) return hand_off(c);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in loopback = { .sin_family = AF_INET, .sin_port = htons((uint16_t)grant->port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
  struct sockaddr_storage target = grant->address;
  socklen_t target_length = grant->address_length;
  if (grant->in_namespace) memcpy(&target, &loopback, sizeof loopback), target_length = sizeof loopback;
  if (connect(fd, (struct sockaddr *)&target, target_length) < 0 && errno != EINPROGRESS) {
    close(fd);
    return hand_off(c);
  }
  c->up = fd;
  c->phase = P_CONNECTING;
  snprintf(c->env, sizeof c->env, "%s", grant->env);
  c->port = grant->port;
}

/* Forwards what `in` holds: bodies, then heads one by one, each routed and checked. */
static void process(struct conn *c) {
  while (!c->dead && c->out_length == 0 && c->in_length > 0) {
    if (c->phase == P_TUNNEL) {
      size_t length = c->in_length;
      c->in_length = 0;
      send_up(c, c->in, length);
      continue;
    }
    if (c->phase != P_HEAD || c->up_eof) break;
    if (c->remaining > 0) {
      size_t length = c->in_length < (size_t)c->remaining ? c->in_length : (size_t)c->remaining;
      c->remaining -= (long long)length;
      if (!send_up(c, c->in, length)) return;
      consume(c, length);
      continue;
    }
    char *end = memmem(c->in + c->scanned, c->in_length - c->scanned, "\r\n\r\n", 4);
    if (!end) {
      if (c->in_length <= MAX_HEAD) {
        c->scanned = c->in_length > 3 ? c->in_length - 3 : 0;
        break;
      }
      to_runner(c); /* in the tunnel, the loop sends what `in` holds */
      continue;
    }
    c->scanned = 0;
    size_t length = (size_t)(end - c->in) + 4;
    struct head head;
    char key[MAX_KEY], rest[MAX_REST];
    size_t key_length, rest_length;
    bool strip;
    if (length > MAX_HEAD || !parse_head(c->in, length, &head) || !request_key(&head, key, &key_length, &strip, rest, &rest_length)) {
      to_runner(c);
      continue;
    }
    if (c->host[0] && (strlen(c->host) != head.host_length || memcmp(c->host, head.host, head.host_length) != 0)) {
      to_runner(c);
      continue;
    }
    const struct grant *grant = c->have_grant ? &c->answer : cache_get(key);
    c->have_grant = false;
    if (!grant) {
      ask(c, key);
      break;
    }
    if (grant->deny) {
      to_runner(c);
      continue;
    }
    if (c->up < 0) {
      memcpy(c->host, head.host, head.host_length);
      c->host[head.host_length] = '\0';
      connect_up(c, grant);
      continue;
    }
    if (strcmp(grant->env, c->env) != 0 || grant->port != c->port) {
      to_runner(c);
      continue;
    }
    size_t forward = forward_head(scratch, c->in, &head, strip, rest, rest_length, c->remote, c->host, strlen(c->host));
    c->remaining = head.content_length;
    if (!send_up(c, scratch, forward)) return;
    consume(c, length);
    report_activity(c->env);
  }
  if (c->dead) return;
  /* The client ended its side and everything it sent is forwarded: so does the app's (or the runner's) input. */
  if (c->client_eof && c->out_length == 0 && (c->phase == P_HEAD || c->phase == P_TUNNEL)) {
    if (c->up < 0) return kill_conn(c);
    if (c->up_connected && !c->up_shut) shutdown(c->up, SHUT_WR), c->up_shut = true;
  }
  update_interest(c);
}

/* The up side ended and its last bytes are with the client. */
static void up_finished(struct conn *c) {
  if (c->phase == P_DRAINING) {
    hand_off(c);
    process(c);
    return;
  }
  if (!c->client_shut) shutdown(c->client, SHUT_WR), c->client_shut = true;
  if (c->client_eof && c->out_length == 0) return kill_conn(c);
  if (c->phase != P_TUNNEL) {
    c->phase = P_CLOSING;
    c->in_length = 0;
  }
  c->deadline = now_ms() + LINGER_MS;
  update_interest(c);
}

static void flush_pipe(struct conn *c) {
  while (c->piped > 0) {
    ssize_t moved = splice(c->pipe[0], NULL, c->client, NULL, c->piped, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (moved < 0 && errno == EINTR) continue;
    if (moved < 0 && errno == EAGAIN) break;
    if (moved <= 0) return kill_conn(c);
    c->piped -= (size_t)moved;
  }
  if (c->piped == 0 && c->up_eof) return up_finished(c);
  update_interest(c);
}

static void on_up(struct conn *c, uint32_t events) {
  if (c->phase == P_CONNECTING) {
    int error = 0;
    socklen_t size = sizeof error;
    if (getsockopt(c->up, SOL_SOCKET, SO_ERROR, &error, &size) < 0 || error != 0) {
      /* Nothing listens: the runner connects again and answers its 502 page. */
      hand_off(c);
      process(c);
      return;
    }
    if (!(events & EPOLLOUT)) return;
    if (pipe2(c->pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
      c->pipe[0] = c->pipe[1] = -1;
      return kill_conn(c);
    }
    c->up_connected = true;
    c->phase = P_HEAD;
    c->deadline = 0;
    process(c);
    return;
  }
  if ((events & EPOLLOUT) && c->out_length > 0) {
    if (!flush_out(c)) return;
    if (c->out_length == 0) process(c);
    if (c->dead) return;
  }
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && c->up_connected && c->piped == 0 && !c->up_eof) {
    ssize_t moved = splice(c->up, NULL, c->pipe[1], NULL, 1 << 20, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (moved < 0 && (errno == EAGAIN || errno == EINTR)) return update_interest(c);
    if (moved < 0) return kill_conn(c);
    if (moved == 0) c->up_eof = true;
    c->piped += (size_t)moved;
    flush_pipe(c);
  } else if (events & EPOLLERR) {
    kill_conn(c);
  } else {
    update_interest(c);
  }
}

static void on_client(struct conn *c, uint32_t events) {
  if ((events & EPOLLOUT) && c->piped > 0) {
    flush_pipe(c);
    if (c->dead) return;
  }
  if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
  if (!(c->client_events & EPOLLIN)) {
    if (events & EPOLLERR) kill_conn(c);
    return;
  }
  ssize_t got = read(c->client, c->in + c->in_length, IN_CAP - c->in_length);
  if (got < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (got < 0) return kill_conn(c);
  if (got == 0) {
    c->client_eof = true;
    if (c->phase == P_CLOSING || (c->phase == P_TUNNEL && c->up_eof && c->piped == 0)) return kill_conn(c);
  } else if (c->phase == P_CLOSING) {
    return; /* discarded: the app is gone */
  } else {
    c->in_length += (size_t)got;
    /* Until the first request is relayed, HEAD_TIMEOUT_MS is an idle timeout, as the Node relay's. */
    if (c->phase == P_HEAD && !c->up_connected) c->deadline = now_ms() + HEAD_TIMEOUT_MS;
  }
  process(c);
}

static void accept_clients(void) {
  for (;;) {
    struct sockaddr_storage peer;
    socklen_t peer_length = sizeof peer;
    int fd = accept4(listener, (struct sockaddr *)&peer, &peer_length, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        warn("accept");
        epoll_ctl(epoll_fd, EPOLL_CTL_DEL, listener, NULL);
        listener_paused = true; /* taken up again by the next sweep */
      }
      return;
    }
    struct conn *c = calloc(1, sizeof *c);
    if (c) c->in = malloc(IN_CAP);
    if (!c || !c->in) {
      free(c);
      close(fd);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->id = next_id++;
    c->client = fd;
    c->up = c->pipe[0] = c->pipe[1] = -1;
    c->peer = peer;
    socklen_t local_length = sizeof c->local;
    getsockname(fd, (struct sockaddr *)&c->local, &local_length);
    if (peer.ss_family == AF_INET6) inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&peer)->sin6_addr, c->remote, sizeof c->remote);
    else inet_ntop(AF_INET, &((struct sockaddr_in *)&peer)->sin_addr, c->remote, sizeof c->remote);
    c->deadline = now_ms() + HEAD_TIMEOUT_MS;
    c->next = conns;
    if (conns) conns->prev = c;
    conns = c;
    update_interest(c);
  }
}

/* ------------------------------------------------------------------------------------------ the runner */

static bool parse_grant(char *fields[], int count, struct grant *grant) {
  memset(grant, 0, sizeof *grant);
  if (count != 7 || strlen(fields[3]) >= sizeof grant->env) return false;
  snprintf(grant->env, sizeof grant->env, "%s", fields[3]);
  grant->port = atoi(fields[4]);
  if (grant->port < 1 || grant->port > 65535) return false;
  if (strcmp(fields[5], "ns") == 0) {
    grant->in_namespace = true;
    grant->pid = atoi(fields[6]);
    return grant->pid > 0;
  }
  if (strcmp(fields[5], "tcp") != 0) return false;
  struct sockaddr_in *four = (struct sockaddr_in *)&grant->address;
  struct sockaddr_in6 *six = (struct sockaddr_in6 *)&grant->address;
  if (inet_pton(AF_INET, fields[6], &four->sin_addr) == 1) {
    four->sin_family = AF_INET;
    four->sin_port = htons((uint16_t)grant->port);
    grant->address_length = sizeof *four;
    return true;
  }
  if (inet_pton(AF_INET6, fields[6], &six->sin6_addr) == 1) {
    six->sin6_family = AF_INET6;
    six->sin6_port = htons((uint16_t)grant->port);
    grant->address_length = sizeof *six;
    return true;
  }
  return false;
}

static void on_line(char *line) {
  char *fields[8];
  int count = 0;
  for (char *save = NULL, *field = strtok_r(line, " ", &save); field && count < 8; field = strtok_r(NULL, " ", &save)) fields[count++] = field;
  if (count == 0) return;
  if (strcmp(fields[0], "flush") == 0) {
    flushes++;
    return cache_clear();
  }
  if (count < 3 || (strcmp(fields[0], "grant") != 0 && strcmp(fields[0], "deny") != 0)) {
    fprintf(stderr, "unknown command from the runner: %s\n", fields[0]);
    return;
  }
  unsigned long qid = strtoul(fields[1], NULL, 10);
  struct ask **link = &asks, *a = NULL;
  for (; *link; link = &(*link)->next) {
    if ((*link)->qid == qid) {
      a = *link;
      *link = a->next;
      break;
    }
  }
  if (!a) return;
  struct grant grant = { .deny = true };
  if (fields[0][0] == 'g' && !parse_grant(fields, count, &grant)) {
    fprintf(stderr, "malformed grant from the runner\n");
    grant = (struct grant){ .deny = true };
  }
  if (a->generation == flushes) cache_put(a->key, &grant, atoll(fields[2]));
  struct conn *c = a->conn;
  free(a->key);
  free(a);
  if (!c || c->dead || c->phase != P_ASKING) return;
  c->phase = P_HEAD;
  c->answer = grant;
  c->have_grant = true;
  process(c);
}

static void on_stdin(void) {
  static char buffer[65536];
  static size_t length;
  ssize_t got = read(STDIN_FILENO, buffer + length, sizeof buffer - 1 - length);
  if (got < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (got <= 0) exit(0); /* the runner is gone */
  length += (size_t)got;
  char *start = buffer, *newline;
  while ((newline = memchr(start, '\n', (size_t)(buffer + length - start)))) {
    *newline = '\0';
    on_line(start);
    start = newline + 1;
  }
  length = (size_t)(buffer + length - start);
  memmove(buffer, start, length);
  if (length == sizeof buffer - 1) length = 0; /* a line this long is no command */
}

static void sweep(void) {
  long long now = now_ms();
  for (struct conn *c = conns, *next; c; c = next) {
    next = c->next;
    if (c->deadline && now >= c->deadline) {
      if (c->phase == P_WAITING) warn("hand-off connect (gave up)");
      kill_conn(c);
    } else if (c->phase == P_WAITING) {
      hand_off(c);
      if (!c->dead && c->phase == P_TUNNEL) process(c);
    }
  }
  if (listener_paused) {
    struct epoll_event event = { .events = EPOLLIN, .data.u64 = TAG_LISTENER };
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listener, &event) == 0) listener_paused = false;
  }
}

static int listen_on(const char *host, const char *port) {
  struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV }, *found;
  int status = getaddrinfo(host, port, &hints, &found);
  if (status != 0) {
    report("failed EAI %s", gai_strerror(status));
    exit(1);
  }
  int fd = socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd < 0 || bind(fd, found->ai_addr, found->ai_addrlen) < 0 || listen(fd, 511) < 0) {
    report("failed %s %s", errno == EADDRINUSE ? "EADDRINUSE" : errno == EACCES ? "EACCES" : errno == EADDRNOTAVAIL ? "EADDRNOTAVAIL" : "EIO", strerror(errno));
    exit(1);
  }
  freeaddrinfo(found);
  struct sockaddr_storage bound;
  socklen_t bound_length = sizeof bound;
  getsockname(fd, (struct sockaddr *)&bound, &bound_length);
  report("listening %d", ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port : ((struct sockaddr_in *)&bound)->sin_port));
  return fd;
}

/* Tests: reads one request head from stdin and prints `runner` (not the front's), or `ask <key>` and the head the
 * app would get. */
static int rewrite_test(const char *remote, const char *test_proto) {
  static char data[IN_CAP];
  size_t length = fread(data, 1, sizeof data, stdin);
  proto = test_proto;
  char *end = memmem(data, length, "\r\n\r\n", 4);
  struct head head;
  char key[MAX_KEY], rest[MAX_REST];
  size_t key_length, rest_length;
  bool strip;
  if (!end || (size_t)(end - data) + 4 > MAX_HEAD || !parse_head(data, (size_t)(end - data) + 4, &head) || !request_key(&head, key, &key_length, &strip, rest, &rest_length)) {
    printf("runner\n");
    return 0;
  }
  printf("ask %s\n", key);
  size_t forward = forward_head(scratch, data, &head, strip, rest, rest_length, remote, head.host, head.host_length);
  fwrite(scratch, 1, forward, stdout);
  return 0;
}

int main(int argc, char **argv) {
  init_tables();
  if (argc == 4 && strcmp(argv[1], "--rewrite") == 0) return rewrite_test(argv[2], argv[3]);
  if (argc != 5) {
    fprintf(stderr, "usage: warren-proxy-front HOST PORT HANDOFF_SOCKET PROTO\n");
    return 2;
  }
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  signal(SIGPIPE, SIG_IGN);
  struct rlimit files;
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  hand_off_path = argv[3];
  proto = argv[4];
  host_namespace = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (host_namespace < 0) {
    report("failed EIO cannot open /proc/self/ns/net: %s", strerror(errno));
    return 1;
  }
  epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  listener = listen_on(argv[1], argv[2]);
  fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
  struct epoll_event event = { .events = EPOLLIN, .data.u64 = TAG_LISTENER };
  epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listener, &event);
  event.data.u64 = TAG_STDIN;
  epoll_ctl(epoll_fd, EPOLL_CTL_ADD, STDIN_FILENO, &event);
  long long next_sweep = now_ms() + 250;
  struct epoll_event events[128];
  for (;;) {
    int count = epoll_wait(epoll_fd, events, 128, 250);
    for (int i = 0; i < count; i++) {
      uint64_t tag = events[i].data.u64;
      if (tag == TAG_LISTENER) accept_clients();
      else if (tag == TAG_STDIN) on_stdin();
      else {
        struct conn *c = (struct conn *)(uintptr_t)(tag & ~(uint64_t)1);
        if (c->dead) continue;
        if (tag & 1) on_up(c, events[i].events);
        else on_client(c, events[i].events);
      }
    }
    free_dead();
    if (now_ms() >= next_sweep) {
      sweep();
      free_dead();
      next_sweep = now_ms() + 250;
    }
  }
}
