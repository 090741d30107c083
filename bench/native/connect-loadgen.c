/*
 * The connect load generator of `npm run bench`, in C: the Node.js load generator saturates its core at about
 * 4,500 connects/s, below what Mosquitto can accept, so connect rates measured with it are a ceiling of the load
 * generator rather than of the broker. This one speaks just enough MQTT 3.1.1 for the two connect scenarios
 * (CONNECT, CONNACK, DISCONNECT) over non-blocking sockets and epoll.
 *
 * It talks to the orchestrator in the same JSON messages as bench/loadgen/main.ts, one per line on stdout
 * (mark / held / result / error), and reads {"type":"release"} on stdin when holding idle connections.
 *
 *   connect-loadgen idle PORT CONNECTIONS CONCURRENCY
 *   connect-loadgen storm PORT DURATION_MS CONCURRENCY [USER PASSWORD]...
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum state { CONNECTING, AWAIT_CONNACK, HELD, AWAIT_CLOSE };

struct conn {
  int fd;
  enum state state;
  int worker; /* storm: which known client this is; idle: connection number */
  uint8_t ack[4];
  int got;
};

static int port;
static int epfd;
static uint16_t keepalive;
static char **credentials; /* user, password pairs */
static int credential_pairs;
static long accepted, refused, failed, connected;
static char errors[5][96];
static int error_count;

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static double cpu_ms(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec * 1e3 + u.ru_utime.tv_usec / 1e3 + u.ru_stime.tv_sec * 1e3 + u.ru_stime.tv_usec / 1e3;
}

static void note_error(const char *text) {
  if (error_count < 5) snprintf(errors[error_count++], sizeof errors[0], "%s", text);
}

static void emit(const char *line) {
  fputs(line, stdout);
  fputc('\n', stdout);
  fflush(stdout);
}

static size_t put_string(uint8_t *out, const char *s) {
  size_t n = strlen(s);
  out[0] = (uint8_t)(n >> 8);
  out[1] = (uint8_t)(n & 0xff);
  memcpy(out + 2, s, n);
  return n + 2;
}

/* An MQTT 3.1.1 CONNECT, clean session, optional user name and password. */
static size_t connect_packet(uint8_t *out, const char *client_id, const char *user, const char *password) {
  uint8_t body[1024];
  size_t n = put_string(body, "MQTT");
  body[n++] = 4;
  body[n++] = 0x02 | (user ? 0x80 : 0) | (password ? 0x40 : 0);
  body[n++] = (uint8_t)(keepalive >> 8);
  body[n++] = (uint8_t)(keepalive & 0xff);
  n += put_string(body + n, client_id);
  if (user) n += put_string(body + n, user);
  if (password) n += put_string(body + n, password);
  size_t h = 0;
  out[h++] = 0x10;
  size_t remaining = n;
  do {
    uint8_t byte = remaining % 128;
    remaining /= 128;
    if (remaining > 0) byte |= 0x80;
    out[h++] = byte;
  } while (remaining > 0);
  memcpy(out + h, body, n);
  return h + n;
}

static struct conn *open_conn(int worker) {
  struct conn *c = calloc(1, sizeof *c);
  c->worker = worker;
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (c->fd < 0) {
    failed++;
    note_error("socket() failed (open-file limit?)");
    free(c);
    return NULL;
  }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  /* Connections come from 16 loopback addresses in turn: from one address, finding a free ephemeral port gets slow
   * once ten thousand or more are taken, and the kernel's search, not either broker, set the pace. */
  static unsigned next_source;
  struct sockaddr_in source = {.sin_family = AF_INET, .sin_port = 0};
  source.sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1 + (next_source++ % 16));
  bind(c->fd, (struct sockaddr *)&source, sizeof source);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  c->state = CONNECTING;
  if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
    failed++;
    note_error("connect() failed");
    close(c->fd);
    free(c);
    return NULL;
  }
  struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
  epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
  return c;
}

static void drop_conn(struct conn *c) {
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  free(c);
}

/* Sends CONNECT once the socket is connected. Returns 0, or -1 if the connection failed. */
static int on_writable(struct conn *c, int storm) {
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) return -1;
  char client_id[64];
  const char *user = NULL, *password = NULL;
  if (storm) {
    snprintf(client_id, sizeof client_id, "storm-%d-%d", (int)getpid(), c->worker);
    if (credential_pairs > 0) {
      user = credentials[2 * (c->worker % credential_pairs)];
      password = credentials[2 * (c->worker % credential_pairs) + 1];
    }
  } else {
    snprintf(client_id, sizeof client_id, "idle-%d-%d", (int)getpid(), c->worker);
  }
  uint8_t packet[1100];
  size_t n = connect_packet(packet, client_id, user, password);
  if (write(c->fd, packet, n) != (ssize_t)n) return -1;
  c->state = AWAIT_CONNACK;
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
  epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
  return 0;
}

/* Reads the CONNACK. Returns its return code, -2 while incomplete, -1 if the connection closed first. */
static int read_connack(struct conn *c) {
  ssize_t r = read(c->fd, c->ack + c->got, sizeof c->ack - (size_t)c->got);
  if (r == 0 || (r < 0 && errno != EAGAIN)) return -1;
  if (r < 0) return -2;
  c->got += (int)r;
  if (c->got < 4) return -2;
  if (c->ack[0] != 0x20 || c->ack[1] != 2) return -1;
  return c->ack[3];
}

/* One readiness event of a handshake: CONNECT once connected, then the CONNACK. Returns the return code, -2 while
 * the handshake goes on, or -1 if the connection failed or closed first. */
static int advance(struct conn *c, int storm) {
  if (c->state == CONNECTING) return on_writable(c, storm) == 0 ? -2 : -1;
  return read_connack(c);
}

static void record_refusal(int rc) {
  char text[64];
  if (rc < 0) snprintf(text, sizeof text, "closed before CONNACK");
  else snprintf(text, sizeof text, "CONNACK %d", rc);
  note_error(text);
}

static void errors_json(char *out, size_t size) {
  size_t n = (size_t)snprintf(out, size, "[");
  for (int i = 0; i < error_count; i++) n += (size_t)snprintf(out + n, size - n, "%s\"%s\"", i ? "," : "", errors[i]);
  snprintf(out + n, size - n, "]");
}

static int run_idle(long connections, int concurrency) {
  struct conn **held = calloc((size_t)connections, sizeof *held);
  long started = 0, finished = 0, in_flight = 0;
  struct epoll_event events[256];
  double cpu0 = cpu_ms();
  emit("{\"type\":\"mark\",\"phase\":\"window-start\"}");
  double t0 = now_ms();
  while (finished < connections) {
    while (in_flight < concurrency && started < connections) {
      if (open_conn((int)started)) in_flight++;
      else finished++;
      started++;
    }
    int n = epoll_wait(epfd, events, 256, 1000);
    for (int i = 0; i < n; i++) {
      struct conn *c = events[i].data.ptr;
      int rc = advance(c, 0);
      if (rc == -2) continue;
      in_flight--;
      finished++;
      if (rc == 0) {
        c->state = HELD;
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        held[connected++] = c;
      } else {
        failed++;
        record_refusal(rc);
        drop_conn(c);
      }
    }
  }
  double connect_ms = now_ms() - t0;
  double cpu = cpu_ms() - cpu0;
  emit("{\"type\":\"mark\",\"phase\":\"window-end\"}");
  char line[512];
  snprintf(line, sizeof line, "{\"type\":\"held\",\"connected\":%ld}", connected);
  emit(line);
  /* Hold until the orchestrator has sampled the broker's memory. */
  char in[256];
  while (fgets(in, sizeof in, stdin) && !strstr(in, "release")) {
  }
  for (long k = 0; k < connected; k++) {
    close(held[k]->fd);
    free(held[k]);
  }
  char errs[600];
  errors_json(errs, sizeof errs);
  char result[1024];
  snprintf(result, sizeof result,
           "{\"type\":\"result\",\"result\":{\"kind\":\"idle\",\"requested\":%ld,\"connected\":%ld,\"failed\":%ld,"
           "\"connectMs\":%.3f,\"connectRate\":%.3f,\"loadgenCpu\":%.4f,\"errors\":%s}}",
           connections, connected, failed, connect_ms, connected * 1000.0 / connect_ms, cpu / connect_ms, errs);
  emit(result);
  return 0;
}

static int run_storm(double duration_ms, int concurrency) {
  static const uint8_t disconnect_packet[2] = {0xe0, 0x00};
  struct epoll_event events[256];
  double cpu0 = cpu_ms();
  emit("{\"type\":\"mark\",\"phase\":\"window-start\"}");
  double t0 = now_ms();
  double deadline = t0 + duration_ms;
  int live = 0;
  for (int w = 0; w < concurrency; w++)
    if (open_conn(w)) live++;
  while (live > 0) {
    int n = epoll_wait(epfd, events, 256, 1000);
    double now = now_ms();
    for (int i = 0; i < n; i++) {
      struct conn *c = events[i].data.ptr;
      int worker = c->worker;
      int rc = advance(c, 1);
      if (rc == -2) continue;
      if (rc == 0) {
        accepted++;
        /* Like the Node load generator's `end(DISCONNECT)`: a clean disconnect, then our side closes. */
        if (write(c->fd, disconnect_packet, 2) != 2) failed++;
      } else {
        if (rc < 0) failed++;
        else refused++;
        record_refusal(rc);
      }
      drop_conn(c);
      live--;
      if (now < deadline && open_conn(worker)) live++;
    }
  }
  double elapsed = now_ms() - t0;
  double cpu = cpu_ms() - cpu0;
  emit("{\"type\":\"mark\",\"phase\":\"window-end\"}");
  char errs[600];
  errors_json(errs, sizeof errs);
  char result[1024];
  snprintf(result, sizeof result,
           "{\"type\":\"result\",\"result\":{\"kind\":\"connect-storm\",\"accepted\":%ld,\"refused\":%ld,"
           "\"failed\":%ld,\"rate\":%.3f,\"loadgenCpu\":%.4f,\"errors\":%s}}",
           accepted, refused, failed, accepted * 1000.0 / elapsed, cpu / elapsed, errs);
  emit(result);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    emit("{\"type\":\"error\",\"message\":\"usage: connect-loadgen idle|storm PORT N CONCURRENCY [USER PASS]...\"}");
    return 2;
  }
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  port = atoi(argv[2]);
  epfd = epoll_create1(0);
  int concurrency = atoi(argv[4]);
  if (strcmp(argv[1], "idle") == 0) {
    keepalive = 600;
    return run_idle(atol(argv[3]), concurrency);
  }
  keepalive = 60;
  credentials = argv + 5;
  credential_pairs = (argc - 5) / 2;
  return run_storm(atof(argv[3]), concurrency);
}
