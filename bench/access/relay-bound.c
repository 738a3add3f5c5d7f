/* bench/access's upper bound for any port proxy on this host: a TCP relay with no HTTP processing at all, in C,
 * moving bytes with splice(2) through one pipe per direction (no copy to user space), epoll, TCP_NODELAY, one
 * upstream connection per client connection. Whatever Warren's proxy does (parse heads, check visibility, strip
 * cookies) comes on top of what this costs, so its throughput relative to direct is the ceiling for the proxy's.
 *
 * Usage: relay-bound LISTEN_PORT UPSTREAM_ADDRESS UPSTREAM_PORT   (listens on 127.0.0.1; prints "ready")
 * A bench tool only: no half-close (both sides close together), blocking connect.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

struct half {
  int from, to, pipe[2];
  size_t buffered;
  struct half *peer;
};

static int ep;

static void watch(int fd, struct half *half) {
  struct epoll_event event = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = half };
  epoll_ctl(ep, EPOLL_CTL_ADD, fd, &event);
}

static void close_pair(struct half *half) {
  struct half *peer = half->peer;
  close(half->from);
  close(half->to);
  close(half->pipe[0]);
  close(half->pipe[1]);
  close(peer->pipe[0]);
  close(peer->pipe[1]);
  half->from = peer->from = -1;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: relay-bound LISTEN_PORT UPSTREAM_ADDRESS UPSTREAM_PORT\n");
    return 2;
  }
  int one = 1;
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
  struct sockaddr_in upstream = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[3])), .sin_addr.s_addr = inet_addr(argv[2]) };
  if (bind(listener, (struct sockaddr *)&address, sizeof address) < 0 || listen(listener, 512) < 0) {
    perror("listen");
    return 1;
  }
  ep = epoll_create1(0);
  struct epoll_event accepting = { .events = EPOLLIN, .data.ptr = NULL };
  epoll_ctl(ep, EPOLL_CTL_ADD, listener, &accepting);
  printf("ready\n");
  fflush(stdout);
  struct epoll_event events[64];
  for (;;) {
    int count = epoll_wait(ep, events, 64, -1);
    for (int i = 0; i < count; i++) {
      struct half *half = events[i].data.ptr;
      if (!half) {
        int client;
        while ((client = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          int server = socket(AF_INET, SOCK_STREAM, 0);
          if (connect(server, (struct sockaddr *)&upstream, sizeof upstream) < 0) {
            close(client);
            close(server);
            continue;
          }
          fcntl(server, F_SETFL, O_NONBLOCK);
          setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          struct half *up = calloc(1, sizeof *up), *down = calloc(1, sizeof *down);
          up->from = client, up->to = server, up->peer = down;
          down->from = server, down->to = client, down->peer = up;
          pipe2(up->pipe, O_NONBLOCK);
          pipe2(down->pipe, O_NONBLOCK);
          watch(client, up);
          watch(server, down);
        }
        continue;
      }
      if (half->from < 0) continue;
      for (;;) {
        ssize_t got = splice(half->from, NULL, half->pipe[1], NULL, 1 << 20, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (got > 0) half->buffered += (size_t)got;
        while (half->buffered > 0) {
          ssize_t sent = splice(half->pipe[0], NULL, half->to, NULL, half->buffered, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
          if (sent <= 0) break;
          half->buffered -= (size_t)sent;
        }
        if (got == 0 || (got < 0 && errno != EAGAIN)) {
          close_pair(half);
          break;
        }
        if (got < 0) break;
      }
    }
  }
}
