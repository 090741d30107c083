/*
 * The native load generator of `npm run bench`, in C, for what the Node.js one cannot measure:
 *
 * - connects (`idle`, `storm`): the Node.js load generator saturates its core at about 4,500 connects/s, below
 *   what Mosquitto can accept, so connect rates measured with it are a ceiling of the load generator rather than of
 *   the broker;
 * - latency at a fixed rate (`latency`): Node's timers fire on whole milliseconds, so a publisher driven by them
 *   sends 5,000 msg/s as bursts of about five messages per millisecond, and the time a message waits for its burst
 *   (0 to 1.2 ms) swamps the broker's part of the latency (about 0.1 ms). Worse, a Node publisher that sends what
 *   is due whenever an acknowledgement arrives sends earlier the *slower* the broker acknowledges. This one sends
 *   every message at its own scheduled time, at a pseudo-random point in the first half of its slot (see
 *   `scheduled_at`); with `poll` (what the bench passes when it has a core to itself) it polls rather than sleeps
 *   (see `relax`).
 *
 * It speaks just enough MQTT 3.1.1 for these (CONNECT, CONNACK, SUBSCRIBE, SUBACK, QoS 1 PUBLISH, PUBACK,
 * DISCONNECT) over non-blocking sockets and epoll, and talks to the orchestrator in the same JSON messages as
 * bench/loadgen/main.ts, one per line on stdout (mark / held / result / error); it reads {"type":"release"} on
 * stdin when holding idle connections. Each mark carries the broker's CPU time read at that instant; the
 * orchestrator names the broker's process in the environment variable BENCH_BROKER_PID.
 *
 *   loadgen idle PORT CONNECTIONS CONCURRENCY
 *   loadgen storm PORT DURATION_MS CONCURRENCY [USER PASSWORD]...
 *   loadgen latency PORT[,PORT]... RATE PAYLOAD_BYTES INFLIGHT WARMUP_MS DURATION_MS DRAIN_MS
 *           [poll|sleep [BLOCK_MS [SAMPLES_FILE]...]]
 *
 * With several ports (up to 4 brokers) the one schedule is dealt out to them in blocks of BLOCK_MS (default 2),
 * each broker with its own publisher and subscriber (see `target_of`); each gets RATE while it has the schedule.
 * SAMPLES_FILE, one per port, receives every latency of the window, in milliseconds, one per line in the order the
 * deliveries arrived: what a tail is made of (stall clusters, isolated late messages) shows in their order, not in
 * p99.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
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

/* Whose CPU the window marks read: the orchestrator's BENCH_BROKER_PID (bench/proc.ts reads the same way). */
static int broker_pid;

/*
 * CPU time of all a process's threads in milliseconds, or -1 if it is gone: their schedstat run times (ns) where
 * the kernel keeps schedstats, clock ticks of /proc/PID/stat (10 ms) otherwise, the rule bench/proc.ts follows.
 */
static double process_cpu_ms(int pid) {
  char path[320];
  if (access("/proc/self/schedstat", R_OK) != 0) {
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char stat[1024];
    size_t n = fread(stat, 1, sizeof stat - 1, f);
    fclose(f);
    stat[n] = 0;
    /* The command name may contain spaces and parentheses: fields are counted after the last ')'. */
    char *fields = strrchr(stat, ')');
    unsigned long utime, stime;
    if (!fields || sscanf(fields + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
      return -1;
    return (double)(utime + stime) * 1000.0 / (double)sysconf(_SC_CLK_TCK);
  }
  snprintf(path, sizeof path, "/proc/%d/task", pid);
  DIR *tasks = opendir(path);
  if (!tasks) return -1;
  double ns = 0;
  struct dirent *task;
  while ((task = readdir(tasks))) {
    if (task->d_name[0] == '.') continue;
    snprintf(path, sizeof path, "/proc/%d/task/%s/schedstat", pid, task->d_name);
    FILE *f = fopen(path, "r");
    if (!f) continue; /* the thread ended between the listing and this read */
    unsigned long long run;
    if (fscanf(f, "%llu", &run) == 1) ns += (double)run;
    fclose(f);
  }
  closedir(tasks);
  return ns / 1e6;
}

/* Time a process's main thread was runnable but waited for a CPU, in milliseconds, or -1 without schedstats. */
static double run_queue_wait_ms(int pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task/%d/schedstat", pid, pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  unsigned long long run, wait;
  int ok = fscanf(f, "%llu %llu", &run, &wait) == 2;
  fclose(f);
  return ok ? (double)wait / 1e6 : -1;
}

/*
 * An edge of the measurement window, with its readings taken now rather than whenever the orchestrator gets to
 * the line (WindowReading in bench/loadgen/jobs.ts).
 */
static void mark(const char *phase) {
  double at = now_ms();
  double cpu = broker_pid > 0 ? process_cpu_ms(broker_pid) : -1;
  double broker_wait = broker_pid > 0 ? run_queue_wait_ms(broker_pid) : -1;
  double loadgen_wait = run_queue_wait_ms(getpid());
  char line[320];
  size_t n = (size_t)snprintf(line, sizeof line, "{\"type\":\"mark\",\"phase\":\"%s\",\"reading\":{\"atMs\":%.3f",
                              phase, at);
  if (cpu >= 0) n += (size_t)snprintf(line + n, sizeof line - n, ",\"brokerCpuMs\":%.6f", cpu);
  if (broker_wait >= 0) n += (size_t)snprintf(line + n, sizeof line - n, ",\"brokerWaitMs\":%.6f", broker_wait);
  if (loadgen_wait >= 0) n += (size_t)snprintf(line + n, sizeof line - n, ",\"loadgenWaitMs\":%.6f", loadgen_wait);
  snprintf(line + n, sizeof line - n, "}}");
  emit(line);
}

/* Reports a failure that ends the run; returns the exit status. */
static int emit_error(const char *message) {
  char line[256];
  snprintf(line, sizeof line, "{\"type\":\"error\",\"message\":\"%s\"}", message);
  emit(line);
  return 1;
}

static size_t put_string(uint8_t *out, const char *s) {
  size_t n = strlen(s);
  out[0] = (uint8_t)(n >> 8);
  out[1] = (uint8_t)(n & 0xff);
  memcpy(out + 2, s, n);
  return n + 2;
}

/* MQTT's variable-length "remaining length"; returns the bytes written (1 to 4). */
static size_t put_remaining_length(uint8_t *out, size_t remaining) {
  size_t h = 0;
  do {
    uint8_t byte = remaining % 128;
    remaining /= 128;
    if (remaining > 0) byte |= 0x80;
    out[h++] = byte;
  } while (remaining > 0);
  return h;
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
  out[0] = 0x10;
  size_t h = 1 + put_remaining_length(out + 1, n);
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
  mark("window-start");
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
  mark("window-end");
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
  mark("window-start");
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
  mark("window-end");
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

/* ---- latency: one QoS 1 publisher at a fixed rate and one subscriber per broker, the brokers taking turns ---- */

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* One latency client: a framing buffer for what it reads and what it could not write yet. */
struct peer {
  const char *role;
  int fd;
  int target; /* index into lat.targets */
  uint8_t in[65536];
  size_t in_len;
  uint8_t *out;
  size_t out_len, out_cap;
  int waiting_writable;
};

static int read_exact(int fd, uint8_t *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r <= 0) return -1;
    got += (size_t)r;
  }
  return 0;
}

/* Connects, sends CONNECT (clean session) and waits for CONNACK 0, blocking with a 10 s limit; then non-blocking. */
static int open_session(const char *client_id, char *why, size_t why_size) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    snprintf(why, why_size, "%s: socket() failed", client_id);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct timeval limit = {.tv_sec = 10};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  uint8_t packet[1100], ack[4];
  size_t n = connect_packet(packet, client_id, NULL, NULL);
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || write(fd, packet, n) != (ssize_t)n ||
      read_exact(fd, ack, 4) < 0) {
    snprintf(why, why_size, "%s: no CONNACK", client_id);
    close(fd);
    return -1;
  }
  if (ack[0] != 0x20 || ack[1] != 2 || ack[3] != 0) {
    snprintf(why, why_size, "%s: CONNACK %d", client_id, ack[3]);
    close(fd);
    return -1;
  }
  return fd;
}

/* SUBSCRIBE at QoS 1 and its SUBACK, still blocking. Returns the granted QoS, or -1. */
static int subscribe_qos1(int fd, const char *topic) {
  uint8_t body[300], packet[310];
  size_t n = 0;
  body[n++] = 0;
  body[n++] = 1;
  n += put_string(body + n, topic);
  body[n++] = 1;
  packet[0] = 0x82;
  size_t h = 1 + put_remaining_length(packet + 1, n);
  memcpy(packet + h, body, n);
  uint8_t ack[5];
  if (write(fd, packet, h + n) != (ssize_t)(h + n) || read_exact(fd, ack, 5) < 0) return -1;
  if (ack[0] != 0x90 || ack[1] != 3) return -1;
  return ack[4];
}

static void watch(struct peer *p, int writable) {
  struct epoll_event ev = {.events = EPOLLIN | (writable ? EPOLLOUT : 0), .data.ptr = p};
  epoll_ctl(epfd, p->waiting_writable == -1 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, p->fd, &ev);
  p->waiting_writable = writable;
}

/* Writes what is queued; what the socket does not take waits for EPOLLOUT. Returns -1 if the socket failed. */
static int flush_peer(struct peer *p) {
  while (p->out_len > 0) {
    ssize_t w = write(p->fd, p->out, p->out_len);
    if (w < 0 && errno == EAGAIN) break;
    if (w <= 0) return -1;
    memmove(p->out, p->out + w, p->out_len - (size_t)w);
    p->out_len -= (size_t)w;
  }
  if ((p->out_len > 0) != p->waiting_writable) watch(p, p->out_len > 0);
  return 0;
}

static uint8_t *queue_bytes(struct peer *p, size_t n) {
  if (p->out_len + n > p->out_cap) {
    p->out_cap = (p->out_len + n) * 2;
    p->out = realloc(p->out, p->out_cap);
  }
  uint8_t *at = p->out + p->out_len;
  p->out_len += n;
  return at;
}

/* Reads what the socket has; returns -1 once the broker closed it. */
static int fill_peer(struct peer *p) {
  for (;;) {
    if (p->in_len == sizeof p->in) return -1; /* a packet larger than the buffer: not one of ours */
    ssize_t r = read(p->fd, p->in + p->in_len, sizeof p->in - p->in_len);
    if (r > 0) {
      p->in_len += (size_t)r;
      continue;
    }
    if (r < 0 && errno == EAGAIN) return 0;
    return -1;
  }
}

/* Calls `on_packet` for every complete packet in the buffer and keeps the incomplete rest. */
static void take_packets(struct peer *p, void (*on_packet)(const uint8_t *packet, size_t header, size_t length)) {
  size_t at = 0;
  while (p->in_len - at >= 2) {
    size_t remaining = 0, h = 1;
    int complete = 0;
    for (int shift = 0; h < 5 && at + h < p->in_len; shift += 7) {
      uint8_t byte = p->in[at + h++];
      remaining |= (size_t)(byte & 0x7f) << shift;
      if (!(byte & 0x80)) {
        complete = 1;
        break;
      }
    }
    if (!complete || p->in_len - at < h + remaining) break;
    on_packet(p->in + at, h, h + remaining);
    at += h + remaining;
  }
  memmove(p->in, p->in + at, p->in_len - at);
  p->in_len -= at;
}

/* The most brokers one latency run alternates between. */
#define MAX_TARGETS 4

/* One broker of a latency run: its publisher and subscriber, its in-flight window and its samples. */
struct target {
  int port;
  struct peer pub, sub;
  long sent, received, inflight;
  uint16_t free_ids[65535];
  long free_count;
  uint8_t in_flight[65536];
  double *samples;
  long sample_count;
  /*
   * Messages of the window not sampled because the slot before went to another broker. Such a first message meets
   * caches the other broker's turn has just filled, which no broker running alone meets: in the samples it was late
   * (beyond 0.1 ms) twice as often as the rest for Bulwark, and it is where one broker's trailing work (a scavenge)
   * would fall on another (docs/performance.md, session 24). The second message of a turn was like all the rest.
   */
  long after_switch;
  /* Messages due while the in-flight window was full, oldest first: backlog[backlog_head..backlog_tail). */
  long *backlog;
  long backlog_head, backlog_tail;
  int queued; /* sends of this send_due() waiting in pub.out */
};

static struct {
  struct target targets[MAX_TARGETS];
  int count;
  /* With several targets: how long each takes the schedule before the next does (ns). */
  int64_t block;
  int timer;
  int64_t t0, interval, window_start, window_end;
  long total, next, received, inflight, inflight_limit;
  uint8_t *publish;
  size_t publish_len, id_offset, payload_offset;
  double *lateness;
  long lateness_count, capacity;
  int64_t read_at;
  int poll;
} lat;

/* The target whose packets take_packets() is handing over. */
static struct target *current;

/*
 * What a polling latency run does between two empty polls. A sleeping load generator wakes from a timer for every
 * send and from epoll for every delivery, and on this kind of virtual machine a wake-up costs tens of microseconds
 * that vary from one to the next: its own wake-ups were part of every sample, for every broker alike, and blurred
 * the brokers' own tails (docs/performance.md, session 19). Polling keeps its core busy (it is pinned to a core of
 * its own) and sees a send fall due, or a delivery arrive, within about a microsecond. The pause instructions keep
 * the busy loop from flooding the core with system calls.
 */
static void relax(void) {
  for (int k = 0; k < 50; k++) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
  }
}

static void arm_timer(int64_t at) {
  struct itimerspec when = {.it_value = {.tv_sec = at / 1000000000LL, .tv_nsec = at % 1000000000LL}};
  timerfd_settime(lat.timer, TFD_TIMER_ABSTIME, &when, NULL);
}

/*
 * When message k is due: at a pseudo-random point in the first half of its slot (t0 + k * interval), the same
 * sequence for every broker. On a fixed grid the schedule was phase-locked to the virtual machine's periodic
 * stalls (every 512 ms, a multiple of 0.2 ms), so every stall of a run caught the grid at the same point and the
 * run's p99 depended on that one draw (docs/performance.md, session 15). Each message keeps its own slot, so the
 * rate is exact and two messages are never closer than half an interval.
 */
static int64_t scheduled_at(long k) {
  uint64_t z = (uint64_t)k + 0x9e3779b97f4a7c15ULL; /* splitmix64 */
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  int64_t half = lat.interval / 2;
  return lat.t0 + k * lat.interval + (half > 0 ? (int64_t)(z % (uint64_t)half) : 0);
}

/*
 * Which target message k goes to. One broker at a time, in blocks of `block` ns of the schedule, in an order that
 * rotates a place every cycle (two brokers: A B, B A, A B, ...; so each block of A follows one of B as often as one
 * of A). Brokers measured one after the other, each in its own window of seconds, met different spells of this
 * shared machine's noise, and the p99 of one broker moved by 5× between its own windows. The tail is made of stall
 * episodes of 5-20 ms: blocks of 100 ms still left each episode to one broker, blocks of 2 ms share it
 * (docs/performance.md, session 24).
 */
static int target_of(long k) {
  if (lat.count == 1) return 0;
  long block = (long)(k * lat.interval / lat.block);
  long cycle = block / lat.count;
  return (int)((block % lat.count + cycle) % lat.count);
}

/* Queues message k for its target, stamped with its scheduled time (not the time it leaves): a message held back by
 * a full window still counts its wait (no coordinated omission). */
static void send_one(struct target *t, long k, int64_t now) {
  int64_t scheduled = scheduled_at(k);
  uint16_t id = t->free_ids[--t->free_count];
  t->in_flight[id] = 1;
  t->inflight++;
  lat.inflight++;
  uint8_t *packet = queue_bytes(&t->pub, lat.publish_len);
  memcpy(packet, lat.publish, lat.publish_len);
  packet[lat.id_offset] = (uint8_t)(id >> 8);
  packet[lat.id_offset + 1] = (uint8_t)(id & 0xff);
  memcpy(packet + lat.payload_offset, &scheduled, sizeof scheduled);
  if (scheduled >= lat.window_start && scheduled < lat.window_end && lat.lateness_count < lat.capacity)
    lat.lateness[lat.lateness_count++] = (double)(now - scheduled) / 1e6;
  t->sent++;
  t->queued = 1;
}

/*
 * Sends every message that is due, one write per target. A message whose target's in-flight window is full waits in
 * that target's backlog, in order, until its acknowledgements make room; the other targets' messages go on: one
 * broker's stall must not delay the schedule of another.
 */
static void send_due(void) {
  int64_t now = now_ns();
  for (int j = 0; j < lat.count; j++) {
    struct target *t = &lat.targets[j];
    while (t->backlog_head < t->backlog_tail && t->inflight < lat.inflight_limit)
      send_one(t, t->backlog[t->backlog_head++], now);
  }
  for (; lat.next < lat.total && scheduled_at(lat.next) <= now; lat.next++) {
    struct target *t = &lat.targets[target_of(lat.next)];
    if (t->backlog_head == t->backlog_tail && t->inflight < lat.inflight_limit)
      send_one(t, lat.next, now);
    else
      t->backlog[t->backlog_tail++] = lat.next;
  }
  for (int j = 0; j < lat.count; j++) {
    struct target *t = &lat.targets[j];
    if (!t->queued) continue;
    t->queued = 0;
    if (flush_peer(&t->pub) < 0) note_error("publisher: write failed");
  }
  if (!lat.poll && lat.next < lat.total) arm_timer(scheduled_at(lat.next));
}

static void on_publisher_packet(const uint8_t *packet, size_t header, size_t length) {
  if (packet[0] != 0x40 || length != header + 2) return;
  uint16_t id = (uint16_t)(packet[header] << 8 | packet[header + 1]);
  if (!current->in_flight[id]) {
    note_error("PUBACK for a packet id not in flight");
    return;
  }
  current->in_flight[id] = 0;
  current->free_ids[current->free_count++] = id;
  current->inflight--;
  lat.inflight--;
}

static void on_subscriber_packet(const uint8_t *packet, size_t header, size_t length) {
  if ((packet[0] & 0xf0) != 0x30) return;
  size_t p = header + 2 + (size_t)(packet[header] << 8 | packet[header + 1]);
  if ((packet[0] >> 1) & 3) {
    uint8_t *ack = queue_bytes(&current->sub, 4);
    ack[0] = 0x40;
    ack[1] = 2;
    ack[2] = packet[p];
    ack[3] = packet[p + 1];
    p += 2;
  }
  current->received++;
  lat.received++;
  int64_t scheduled;
  if (length < p + sizeof scheduled) return;
  memcpy(&scheduled, packet + p, sizeof scheduled);
  if (scheduled < lat.window_start || scheduled >= lat.window_end) return;
  long k = (long)((scheduled - lat.t0) / lat.interval);
  if (k > 0 && target_of(k - 1) != target_of(k))
    current->after_switch++;
  else if (current->sample_count < lat.capacity)
    current->samples[current->sample_count++] = (double)(lat.read_at - scheduled) / 1e6;
}

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Nearest rank, as bench/stats.ts: never a value that was not observed. */
static double percentile(const double *sorted, long n, long p) {
  long rank = (p * n + 99) / 100;
  if (rank < 1) rank = 1;
  if (rank > n) rank = n;
  return sorted[rank - 1];
}

/* `"p50Ms":...,"p99Ms":...,"maxMs":...,` of a target's sorted samples into `out`; nothing without samples. */
static void put_percentiles(char *out, size_t size, const struct target *t) {
  if (t->sample_count == 0) return;
  snprintf(out, size, "\"p50Ms\":%.6f,\"p99Ms\":%.6f,\"maxMs\":%.6f,", percentile(t->samples, t->sample_count, 50),
           percentile(t->samples, t->sample_count, 99), t->samples[t->sample_count - 1]);
}

static int run_latency(int argc, char **argv) {
  if (argc < 9) {
    emit("{\"type\":\"error\",\"message\":\"usage: loadgen latency PORT[,PORT]... RATE PAYLOAD_BYTES INFLIGHT "
         "WARMUP_MS DURATION_MS DRAIN_MS [poll|sleep [BLOCK_MS [SAMPLES_FILE]...]]\"}");
    return 2;
  }
  if (argc > 9 && strcmp(argv[9], "poll") != 0 && strcmp(argv[9], "sleep") != 0) {
    emit("{\"type\":\"error\",\"message\":\"latency: the wait is poll or sleep\"}");
    return 2;
  }
  /* Sleeping unless told: polling takes a whole core, which only the orchestrator knows is the load generator's own. */
  lat.poll = argc > 9 && strcmp(argv[9], "poll") == 0;
  for (char *at = argv[2]; lat.count < MAX_TARGETS && *at;) {
    char *end;
    long p = strtol(at, &end, 10);
    if (end == at || p <= 0 || p > 65535 || (*end != ',' && *end != 0)) break;
    lat.targets[lat.count++].port = (int)p;
    at = *end == ',' ? end + 1 : end;
  }
  double block_ms = argc > 10 ? atof(argv[10]) : 2;
  double rate = atof(argv[3]);
  size_t payload_bytes = (size_t)atol(argv[4]);
  lat.inflight_limit = atol(argv[5]);
  int64_t warmup = (int64_t)(atof(argv[6]) * 1e6), duration = (int64_t)(atof(argv[7]) * 1e6);
  int64_t drain = (int64_t)(atof(argv[8]) * 1e6);
  if (rate <= 0 || lat.inflight_limit < 1 || lat.inflight_limit > 65535 || duration <= 0) {
    emit("{\"type\":\"error\",\"message\":\"latency: RATE, INFLIGHT (1 to 65535) and DURATION_MS must be positive\"}");
    return 2;
  }
  if (lat.count == 0 || block_ms <= 0) {
    emit("{\"type\":\"error\",\"message\":\"latency: PORT is 1 to 4 ports separated by commas, BLOCK_MS positive\"}");
    return 2;
  }
  lat.block = (int64_t)(block_ms * 1e6);
  if (payload_bytes < sizeof(int64_t)) payload_bytes = sizeof(int64_t);
  keepalive = 60;
  /* The default timer slack (50 µs) would let the kernel batch our wake-ups: every send would be late by up to it. */
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

  char run[32], topic[64], sub_id[48], pub_id[48], why[128];
  snprintf(run, sizeof run, "l%d", (int)getpid());
  snprintf(topic, sizeof topic, "bench/%s/lat", run);
  snprintf(sub_id, sizeof sub_id, "%s-sub", run);
  snprintf(pub_id, sizeof pub_id, "%s-pub", run);
  for (int j = 0; j < lat.count; j++) {
    struct target *t = &lat.targets[j];
    port = t->port;
    t->sub.role = "subscriber";
    t->pub.role = "publisher";
    t->sub.target = t->pub.target = j;
    t->sub.fd = open_session(sub_id, why, sizeof why);
    if (t->sub.fd < 0) return emit_error(why);
    if (subscribe_qos1(t->sub.fd, topic) != 1) return emit_error("subscriber: QoS 1 not granted");
    t->pub.fd = open_session(pub_id, why, sizeof why);
    if (t->pub.fd < 0) return emit_error(why);
    struct peer *peers[2] = {&t->pub, &t->sub};
    for (int i = 0; i < 2; i++) {
      fcntl(peers[i]->fd, F_SETFL, fcntl(peers[i]->fd, F_GETFL) | O_NONBLOCK);
      peers[i]->waiting_writable = -1;
      watch(peers[i], 0);
    }
    for (long id = lat.inflight_limit; id >= 1; id--) t->free_ids[t->free_count++] = (uint16_t)id;
  }

  /* The PUBLISH every message copies: fixed header, topic, packet id, then the payload, whose first eight bytes
   * carry the scheduled send time. */
  size_t topic_len = strlen(topic);
  size_t remaining = 2 + topic_len + 2 + payload_bytes;
  lat.publish = malloc(5 + remaining);
  lat.publish[0] = 0x32;
  size_t h = 1 + put_remaining_length(lat.publish + 1, remaining);
  h += put_string(lat.publish + h, topic);
  lat.id_offset = h;
  lat.payload_offset = h + 2;
  memset(lat.publish + lat.payload_offset, 'a', payload_bytes);
  lat.publish_len = h + 2 + payload_bytes;

  lat.interval = (int64_t)(1e9 / rate);
  lat.t0 = now_ns() + 1000000;
  lat.window_start = lat.t0 + warmup;
  lat.window_end = lat.window_start + duration;
  lat.total = (long)((lat.window_end - lat.t0 + lat.interval - 1) / lat.interval);
  lat.capacity = (long)(duration / lat.interval) + 2;
  for (int j = 0; j < lat.count; j++) {
    lat.targets[j].samples = malloc(sizeof(double) * (size_t)lat.capacity);
    /* Every message of the run could wait once: a slot is queued at most once. */
    lat.targets[j].backlog = malloc(sizeof(long) * (size_t)lat.total);
  }
  lat.lateness = malloc(sizeof(double) * (size_t)lat.capacity);
  if (!lat.poll) {
    lat.timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct epoll_event timer_event = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lat.timer, &timer_event);
    arm_timer(lat.t0);
  }

  int started = 0, ended = 0, closed = 0;
  double cpu0 = 0, cpu_window = 0;
  long last_received = -1;
  int64_t last_progress = 0;
  struct epoll_event events[8];
  for (;;) {
    int64_t now = now_ns();
    if (!started && now >= lat.window_start) {
      started = 1;
      cpu0 = cpu_ms();
      mark("window-start");
    }
    if (!ended && now >= lat.window_end) {
      ended = 1;
      cpu_window = cpu_ms() - cpu0;
      mark("window-end");
    }
    if (closed || (ended && lat.next >= lat.total && lat.received >= lat.total && lat.inflight == 0)) break;
    if (lat.received != last_received) {
      last_received = lat.received;
      last_progress = now;
    } else if (ended && now - last_progress > drain) {
      break;
    }
    int n = epoll_wait(epfd, events, 8, lat.poll ? 0 : 20);
    if (lat.poll) {
      if (n == 0) relax();
      if (lat.next < lat.total && now_ns() >= scheduled_at(lat.next)) send_due();
    }
    for (int i = 0; i < n && !closed; i++) {
      struct peer *p = events[i].data.ptr;
      if (p == NULL) {
        uint64_t expirations;
        if (read(lat.timer, &expirations, sizeof expirations) < 0) {
        }
        send_due();
        continue;
      }
      if ((events[i].events & EPOLLOUT) && flush_peer(p) < 0) closed = 1;
      if (!(events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
      int gone = fill_peer(p);
      lat.read_at = now_ns();
      current = &lat.targets[p->target];
      int subscriber = p == &current->sub;
      take_packets(p, subscriber ? on_subscriber_packet : on_publisher_packet);
      if (subscriber && flush_peer(p) < 0) gone = 1;
      if (!subscriber) send_due();
      if (gone) {
        char text[64];
        snprintf(text, sizeof text, "%s disconnected by the broker", p->role);
        note_error(text);
        closed = 1;
      }
    }
  }
  if (!ended) {
    cpu_window = cpu_ms() - cpu0;
    mark("window-end");
  }
  static const uint8_t disconnect_packet[2] = {0xe0, 0x00};
  for (int j = 0; j < lat.count; j++) {
    struct peer *peers[2] = {&lat.targets[j].pub, &lat.targets[j].sub};
    for (int i = 0; i < 2; i++) {
      if (write(peers[i]->fd, disconnect_packet, 2) != 2) {
      }
      close(peers[i]->fd);
    }
  }

  /* The schedule's spacing inside the window, from the schedule itself: what the note reports, and what shows the
   * sends are not on a fixed grid. */
  double gap_min = 0, gap_max = 0;
  for (long k = 1, first = 1; k < lat.total; k++) {
    int64_t at = scheduled_at(k), before = scheduled_at(k - 1);
    if (before < lat.window_start || at >= lat.window_end) continue;
    double gap = (double)(at - before) / 1e6;
    if (first || gap < gap_min) gap_min = gap;
    if (first || gap > gap_max) gap_max = gap;
    first = 0;
  }
  /* Each target's samples, in arrival order, then its summary: what a tail is made of shows in the order. */
  char targets[MAX_TARGETS * 200] = "";
  long samples = 0, lost = 0;
  for (int j = 0; j < lat.count; j++) {
    struct target *t = &lat.targets[j];
    if (argc > 11 + j) {
      FILE *out = fopen(argv[11 + j], "w");
      if (out == NULL) note_error("latency: cannot write the samples file");
      for (long i = 0; out != NULL && i < t->sample_count; i++) fprintf(out, "%.6f\n", t->samples[i]);
      if (out != NULL && fclose(out) != 0) note_error("latency: cannot write the samples file");
    }
    qsort(t->samples, (size_t)t->sample_count, sizeof(double), compare_doubles);
    long planned = 0;
    for (long k = 0; k < lat.total; k++) planned += target_of(k) == j;
    long target_lost = planned > t->received ? planned - t->received : 0;
    size_t used = strlen(targets);
    snprintf(targets + used, sizeof targets - used, "%s{\"port\":%d,\"sent\":%ld,\"received\":%ld,\"lost\":%ld,",
             j > 0 ? "," : "", t->port, t->sent, t->received, target_lost);
    used = strlen(targets);
    put_percentiles(targets + used, sizeof targets - used, t);
    used = strlen(targets);
    snprintf(targets + used, sizeof targets - used, "\"samples\":%ld,\"afterSwitch\":%ld}", t->sample_count,
             t->after_switch);
    samples += t->sample_count;
    lost += target_lost;
  }
  qsort(lat.lateness, (size_t)lat.lateness_count, sizeof(double), compare_doubles);
  char summary[384] = "";
  /* One broker: its percentiles at the top level, as before several could be measured at once. */
  if (lat.count == 1) put_percentiles(summary, sizeof summary, &lat.targets[0]);
  if (lat.lateness_count > 0)
    snprintf(summary + strlen(summary), sizeof summary - strlen(summary), "\"sendLateP99Ms\":%.6f,",
             percentile(lat.lateness, lat.lateness_count, 99));
  snprintf(summary + strlen(summary), sizeof summary - strlen(summary),
           "\"scheduleGapMinMs\":%.6f,\"scheduleGapMaxMs\":%.6f,", gap_min, gap_max);
  if (lat.count > 1)
    snprintf(summary + strlen(summary), sizeof summary - strlen(summary), "\"blockMs\":%.3f,", block_ms);
  char errs[600];
  errors_json(errs, sizeof errs);
  char result[2400];
  snprintf(result, sizeof result,
           "{\"type\":\"result\",\"result\":{\"kind\":\"latency\",\"sent\":%ld,\"received\":%ld,\"lost\":%ld,%s"
           "\"samples\":%ld,\"targets\":[%s],\"wait\":\"%s\",\"loadgenCpu\":%.4f,\"errors\":%s}}",
           lat.total, lat.received, lost, summary, samples, targets, lat.poll ? "poll" : "sleep",
           cpu_window / ((double)duration / 1e6), errs);
  emit(result);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    emit("{\"type\":\"error\",\"message\":\"usage: loadgen idle|storm PORT N CONCURRENCY [USER PASS]... | "
         "loadgen latency PORT[,PORT]... RATE PAYLOAD_BYTES INFLIGHT WARMUP_MS DURATION_MS DRAIN_MS "
         "[poll|sleep [BLOCK_MS [SAMPLES_FILE]...]]\"}");
    return 2;
  }
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  const char *broker = getenv("BENCH_BROKER_PID");
  broker_pid = broker ? atoi(broker) : 0;
  port = atoi(argv[2]);
  epfd = epoll_create1(0);
  if (strcmp(argv[1], "latency") == 0) return run_latency(argc, argv);
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
