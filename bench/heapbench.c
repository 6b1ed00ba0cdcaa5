// heapbench: the C baseline for bench/heaps.py. Each run does one measurement the Python bench
// also does, with the same batching, and prints one JSON line with the per-batch ns/op samples.
//
// Build:  gcc -O2 -static -o heapbench bench/heapbench.c
// Usage:  heapbench OP SOURCE SIZE BATCH_NS BATCHES WARMUP [BUDGET_NS]
//   OP      alloc         allocate a buffer of SIZE bytes from SOURCE and close it
//           write-memset  memset the whole (mapped) buffer, bracketed by DMA_BUF_IOCTL_SYNC
//           write-copy    memcpy from a private buffer into the mapping (bracketed)
//           read-copy     memcpy from the mapping into a private buffer (bracketed)
//           sync          DMA_BUF_IOCTL_SYNC START+END only (the bracket's cost)
//   SOURCE  dmaheap:PATH  a DMA-BUF heap node, e.g. dmaheap:/dev/dma_heap/system
//           udmabuf       memfd_create + ftruncate + F_SEAL_SHRINK + UDMABUF_CREATE
//           memfd         memfd_create + ftruncate, as MemfdHeap does (not a dma-buf: no sync)
//           anon          (bandwidth ops only) private anonymous memory, no sync
//   BATCH_NS  the length one timed batch should have; the number of ops per batch is calibrated
//             after the warm-up so that a batch lasts at least this long
//   BATCHES   how many timed batches to report (at most)
//   WARMUP    ops run (and discarded) before calibration
//   BUDGET_NS stop adding batches once the timed batches took this long, if at least
//             MIN_BATCHES were made (0 or absent: no budget; slow ops under TCG need one)
//
// Environment: HEAPBENCH_CLOCK=cpu times with CLOCK_THREAD_CPUTIME_ID (this thread's CPU time, so
// time other processes take from a busy machine is not counted) instead of CLOCK_MONOTONIC.
//
// Output: {"op":..,"source":..,"size":..,"ops_per_batch":..,"ns_per_op":[..]} on stdout.
// Errors name the call and the source on stderr; the exit status is then 1 (2 for bad arguments).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/dma-buf.h>
#include <linux/dma-heap.h>
#include <linux/udmabuf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif
#ifndef MFD_ALLOW_SEALING
#define MFD_ALLOW_SEALING 0x0002U
#endif
#ifndef F_ADD_SEALS
#define F_ADD_SEALS 1033
#define F_SEAL_SHRINK 0x0002
#endif

#define MIN_BATCHES 3

enum source_kind { SRC_DMAHEAP, SRC_UDMABUF, SRC_MEMFD, SRC_ANON };

struct bench {
  const char *op;
  const char *source;
  enum source_kind kind;
  const char *heap_path;
  size_t size;
  int dev_fd;      // the heap node or /dev/udmabuf
  int buf_fd;      // bandwidth ops: the buffer being accessed (-1 for anon)
  int memfd;       // bandwidth ops on udmabuf: the backing memfd
  unsigned char *map;
  unsigned char *priv;  // write-copy source / read-copy destination
};

static void die(const struct bench *b, const char *call) {
  fprintf(stderr, "heapbench: %s on %s (%zu bytes) failed: %s\n", call, b->source, b->size,
          strerror(errno));
  exit(1);
}

static clockid_t bench_clock = CLOCK_MONOTONIC;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(bench_clock, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

// udmabuf needs a memfd sealed against shrinking; the memfd heap's buffers are not sealed.
static int make_memfd(const struct bench *b, int sealed) {
  unsigned flags = MFD_CLOEXEC | (sealed ? MFD_ALLOW_SEALING : 0);
  int fd = (int)syscall(SYS_memfd_create, "heapbench", flags);
  if (fd < 0) die(b, "memfd_create");
  if (ftruncate(fd, (off_t)b->size) < 0) die(b, "ftruncate");
  if (sealed && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0) die(b, "fcntl(F_ADD_SEALS)");
  return fd;
}

static int dmaheap_alloc(const struct bench *b) {
  struct dma_heap_allocation_data data = {
      .len = b->size, .fd_flags = O_RDWR | O_CLOEXEC, .heap_flags = 0};
  if (ioctl(b->dev_fd, DMA_HEAP_IOCTL_ALLOC, &data) < 0) die(b, "DMA_HEAP_IOCTL_ALLOC");
  return (int)data.fd;
}

static int udmabuf_create(const struct bench *b, int memfd) {
  struct udmabuf_create arg = {
      .memfd = (uint32_t)memfd, .flags = UDMABUF_FLAGS_CLOEXEC, .offset = 0, .size = b->size};
  int fd = ioctl(b->dev_fd, UDMABUF_CREATE, &arg);
  if (fd < 0) die(b, "UDMABUF_CREATE");
  return fd;
}

// One allocation and its release: exactly what the Python loop does per op.
static void op_alloc(struct bench *b) {
  switch (b->kind) {
    case SRC_DMAHEAP:
      close(dmaheap_alloc(b));
      break;
    case SRC_UDMABUF: {
      int memfd = make_memfd(b, 1);
      int fd = udmabuf_create(b, memfd);
      close(memfd);
      close(fd);
      break;
    }
    case SRC_MEMFD:
      close(make_memfd(b, 0));
      break;
    case SRC_ANON:
      break;
  }
}

static void sync_ioctl(const struct bench *b, uint64_t flags) {
  if (b->buf_fd < 0 || b->kind == SRC_MEMFD) return;
  struct dma_buf_sync s = {.flags = flags};
  while (ioctl(b->buf_fd, DMA_BUF_IOCTL_SYNC, &s) < 0) {
    if (errno != EINTR && errno != EAGAIN) die(b, "DMA_BUF_IOCTL_SYNC");
  }
}

static void op_write_memset(struct bench *b) {
  sync_ioctl(b, DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE);
  memset(b->map, 0x5a, b->size);
  sync_ioctl(b, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE);
}

static void op_write_copy(struct bench *b) {
  sync_ioctl(b, DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE);
  memcpy(b->map, b->priv, b->size);
  sync_ioctl(b, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE);
}

static void op_read_copy(struct bench *b) {
  sync_ioctl(b, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ);
  memcpy(b->priv, b->map, b->size);
  sync_ioctl(b, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ);
  // Keep the compiler from treating the copy as dead.
  __asm__ volatile("" : : "r"(b->priv) : "memory");
}

static void op_sync(struct bench *b) {
  sync_ioctl(b, DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE);
  sync_ioctl(b, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE);
}

// Bandwidth ops work on one buffer, allocated and mapped once (as Buffer keeps one mapping).
static void setup_mapping(struct bench *b) {
  b->buf_fd = -1;
  b->memfd = -1;
  switch (b->kind) {
    case SRC_DMAHEAP:
      b->buf_fd = dmaheap_alloc(b);
      break;
    case SRC_UDMABUF:
      b->memfd = make_memfd(b, 1);
      b->buf_fd = udmabuf_create(b, b->memfd);
      break;
    case SRC_MEMFD:
      b->buf_fd = make_memfd(b, 0);
      break;
    case SRC_ANON:
      break;
  }
  void *m;
  if (b->kind == SRC_ANON)
    m = mmap(NULL, b->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  else
    m = mmap(NULL, b->size, PROT_READ | PROT_WRITE, MAP_SHARED, b->buf_fd, 0);
  if (m == MAP_FAILED) die(b, "mmap");
  b->map = m;
  // Touch every page first (a never-written private page would read the shared zero page).
  sync_ioctl(b, DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE);
  memset(b->map, 0x11, b->size);
  sync_ioctl(b, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE);
  b->priv = malloc(b->size);
  if (b->priv == NULL) die(b, "malloc");
  memset(b->priv, 0xa5, b->size);
}

static long parse_long(const char *s, const char *what) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 0);
  if (errno || *end || v < 0) {
    fprintf(stderr, "heapbench: %s must be a non-negative integer, not '%s'\n", what, s);
    exit(2);
  }
  return v;
}

int main(int argc, char **argv) {
  if (argc != 7 && argc != 8) {
    fprintf(stderr,
            "usage: heapbench OP SOURCE SIZE BATCH_NS BATCHES WARMUP [BUDGET_NS]\n"
            "  OP: alloc | write-memset | write-copy | read-copy | sync\n"
            "  SOURCE: dmaheap:PATH | udmabuf | memfd | anon\n");
    return 2;
  }
  const char *clock_name = getenv("HEAPBENCH_CLOCK");
  if (clock_name != NULL && strcmp(clock_name, "cpu") == 0) bench_clock = CLOCK_THREAD_CPUTIME_ID;
  struct bench b = {.op = argv[1], .source = argv[2], .dev_fd = -1, .buf_fd = -1, .memfd = -1};
  b.size = (size_t)parse_long(argv[3], "SIZE");
  uint64_t batch_ns = (uint64_t)parse_long(argv[4], "BATCH_NS");
  long batches = parse_long(argv[5], "BATCHES");
  long warmup = parse_long(argv[6], "WARMUP");
  uint64_t budget_ns = argc == 8 ? (uint64_t)parse_long(argv[7], "BUDGET_NS") : 0;
  if (b.size == 0 || batches == 0) {
    fprintf(stderr, "heapbench: SIZE and BATCHES must be positive\n");
    return 2;
  }

  if (strncmp(b.source, "dmaheap:", 8) == 0) {
    b.kind = SRC_DMAHEAP;
    b.heap_path = b.source + 8;
    b.dev_fd = open(b.heap_path, O_RDONLY | O_CLOEXEC);
    if (b.dev_fd < 0) die(&b, "open");
  } else if (strcmp(b.source, "udmabuf") == 0) {
    b.kind = SRC_UDMABUF;
    b.dev_fd = open("/dev/udmabuf", O_RDWR | O_CLOEXEC);
    if (b.dev_fd < 0) die(&b, "open /dev/udmabuf");
  } else if (strcmp(b.source, "memfd") == 0) {
    b.kind = SRC_MEMFD;
  } else if (strcmp(b.source, "anon") == 0) {
    b.kind = SRC_ANON;
  } else {
    fprintf(stderr, "heapbench: unknown SOURCE '%s'\n", b.source);
    return 2;
  }

  void (*op)(struct bench *);
  if (strcmp(b.op, "alloc") == 0) {
    if (b.kind == SRC_ANON) {
      fprintf(stderr, "heapbench: alloc needs a dmaheap:, udmabuf or memfd source\n");
      return 2;
    }
    op = op_alloc;
  } else {
    if (strcmp(b.op, "write-memset") == 0)
      op = op_write_memset;
    else if (strcmp(b.op, "write-copy") == 0)
      op = op_write_copy;
    else if (strcmp(b.op, "read-copy") == 0)
      op = op_read_copy;
    else if (strcmp(b.op, "sync") == 0)
      op = op_sync;
    else {
      fprintf(stderr, "heapbench: unknown OP '%s'\n", b.op);
      return 2;
    }
    setup_mapping(&b);
  }

  for (long i = 0; i < warmup; i++) op(&b);

  // Calibrate: double the count until a run lasts a tenth of a batch, then scale up.
  uint64_t n = 1, elapsed = 0;
  for (;;) {
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) op(&b);
    elapsed = now_ns() - t0;
    if (elapsed * 10 >= batch_ns || n >= (1u << 24)) break;
    n *= 2;
  }
  uint64_t per_batch = elapsed ? (batch_ns * n + elapsed - 1) / elapsed : n;
  if (per_batch < 1) per_batch = 1;
  if (per_batch > n * 10) per_batch = n * 10;

  uint64_t *samples = calloc((size_t)batches, sizeof *samples);
  if (samples == NULL) die(&b, "calloc");
  uint64_t spent = 0;
  long made = 0;
  while (made < batches) {
    if (budget_ns && made >= MIN_BATCHES && spent >= budget_ns) break;
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < per_batch; i++) op(&b);
    samples[made] = now_ns() - t0;
    spent += samples[made++];
  }

  printf("{\"op\":\"%s\",\"source\":\"%s\",\"size\":%zu,\"ops_per_batch\":%llu,\"ns_per_op\":[",
         b.op, b.source, b.size, (unsigned long long)per_batch);
  for (long k = 0; k < made; k++)
    printf("%s%.3f", k ? "," : "", (double)samples[k] / (double)per_batch);
  printf("]}\n");
  return 0;
}
