/* neort.c - the neo runtime: loads a compiled artifact (format v1, docs/ARTIFACT_FORMAT.md) and
 * runs it.
 *
 * Loading does all the checking and resolving once: parse compiled_model.json with a small strict
 * JSON parser, map and verify compiled.params, dlopen compiled.so and look up every kernel,
 * allocate the workspace arena and the I/O buffers, and turn every node's tensor ids into data
 * pointers.
 * A run is then a loop of indirect calls, the parallel ones fanned out over a persistent thread
 * pool.
 *
 * C11 + pthreads + dlopen/mmap, nothing arch-specific: codegen/toolchain.py builds it for every arch
 * of its table (neo.ir.target.ARCHES) and passes the arch's name as NEO_ARCH.
 */
#define _GNU_SOURCE
#include "neort.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The arch this runtime runs artifacts of (an artifact's "arch"), named by the build:
 * -DNEO_ARCH='"riscv64"'. It is what the runtime checks and reports, so it must be the build's. */
#ifndef NEO_ARCH
#error "build with -DNEO_ARCH=\"<arch>\" (the artifact arch name, e.g. aarch64), as codegen/toolchain.py does"
#endif

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "artifact format v1 is little-endian and is read in place"
#endif

#define NEO_VERSION "0.1.0"
#define NEO_ALIGN 64
#define PARAMS_HEADER 48
#define JSON_MAX_DEPTH 64
#define POOL_MAX_THREADS 256
/* A waiter polls for POOL_SPIN_US microseconds, then yields its CPU POOL_YIELD times, then sleeps
 * on a condvar: polling covers the gap between nodes of one run and between runs called back to
 * back, yielding lets an oversubscribed peer finish. Polling was 2000 pause instructions, whose
 * time varies 10x between CPUs (20 us on the Xeon of docs/BENCHMARKS.md): the worker slept
 * between squeezenet1_1's runs, and the next run's first node waited about 40 us for it to wake
 * (2 threads: 3.21 -> 3.17 ms a run with 200 us). */
#define POOL_SPIN_US 200
#define POOL_YIELD 64

/* ---- errors ---- */

static _Thread_local char g_error[1024];

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_error, sizeof g_error, fmt, ap);
    va_end(ap);
    return -1;
}

NEO_API const char *neo_runtime_version(void) { return NEO_VERSION; }
NEO_API const char *neo_runtime_arch(void) { return NEO_ARCH; }
NEO_API const char *neo_last_error(void) { return g_error; }

/* ---- dtypes (codes are the params-file codes) ---- */

static const struct { const char *name; size_t size; } DTYPES[] = {
    {"float32", 4}, {"float64", 8}, {"float16", 2}, {"bfloat16", 2}, {"int8", 1},
    {"uint8", 1},   {"int16", 2},   {"uint16", 2},  {"int32", 4},    {"uint32", 4},
    {"int64", 8},   {"uint64", 8},  {"bool", 1},
};
#define NUM_DTYPES ((int)(sizeof DTYPES / sizeof DTYPES[0]))

static int dtype_code(const char *name) {
    for (int i = 0; i < NUM_DTYPES; i++)
        if (strcmp(DTYPES[i].name, name) == 0) return i;
    return -1;
}

/* nbytes of a tensor; false on overflow or a negative dim */
static bool shape_nbytes(const int64_t *shape, int ndim, size_t itemsize, size_t *out) {
    size_t n = itemsize;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return false;
        if (shape[i] != 0 && n > SIZE_MAX / (uint64_t)shape[i]) return false;
        n *= (size_t)shape[i];
    }
    *out = n;
    return true;
}

/* 64-byte aligned and zeroed; a zero-sized tensor still gets a valid pointer */
static void *alloc_aligned(size_t nbytes) {
    size_t padded = (nbytes + NEO_ALIGN - 1) / NEO_ALIGN * NEO_ALIGN;
    if (padded < nbytes) return NULL;
    if (padded == 0) padded = NEO_ALIGN;
    void *p = NULL;
    if (posix_memalign(&p, NEO_ALIGN, padded) != 0) return NULL;
    memset(p, 0, padded);
    return p;
}

#define HUGE_PAGE_BYTES ((size_t)2 << 20)

/* nbytes rounded up to whole huge pages */
static size_t huge_pages_bytes(size_t nbytes) {
    return (nbytes + HUGE_PAGE_BYTES - 1) / HUGE_PAGE_BYTES * HUGE_PAGE_BYTES;
}

/* An anonymous mapping of nbytes (zeroed, not yet faulted in) on its own 2 MiB boundary, which
 * the kernel is asked to back with transparent huge pages: THP in "madvise" mode, the common
 * default, gives them only on request. The workspace and the parameters then take a few TLB
 * entries instead of thousands of 4 KiB ones (resnet50's 9 MiB of activations and 114 MiB of
 * weights: 2-4% of a run on a Xeon). NULL under one huge page, or if the mapping fails; *map
 * and *span are what to munmap. */
static void *map_huge(size_t nbytes, void **map, size_t *span) {
#ifdef MADV_HUGEPAGE
    if (nbytes < HUGE_PAGE_BYTES || nbytes > SIZE_MAX - 2 * HUGE_PAGE_BYTES) return NULL;
    size_t size = huge_pages_bytes(nbytes);
    uint8_t *base = mmap(NULL, size + HUGE_PAGE_BYTES, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return NULL;
    uintptr_t at = ((uintptr_t)base + HUGE_PAGE_BYTES - 1) & ~(uintptr_t)(HUGE_PAGE_BYTES - 1);
    madvise((void *)at, size, MADV_HUGEPAGE); /* advice: 4 KiB pages where it is refused */
    *map = base;
    *span = size + HUGE_PAGE_BYTES;
    return (void *)at;
#else
    (void)nbytes; (void)map; (void)span;
    return NULL;
#endif
}

/* the workspace, zeroed and faulted in (not in the first run) */
static void *alloc_workspace(size_t nbytes, void **map, size_t *span) {
    void *p = map_huge(nbytes, map, span);
    if (!p) return alloc_aligned(nbytes);
    memset(p, 0, nbytes);
    return p;
}

/* all of fd's nbytes into buf; false (errno set) on a read error or a short file */
static bool read_all(int fd, void *buf, size_t nbytes) {
    uint8_t *at = buf;
    while (nbytes > 0) {
        ssize_t got = read(fd, at, nbytes > (1u << 30) ? (1u << 30) : nbytes);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            if (got == 0) errno = EIO;
            return false;
        }
        at += got;
        nbytes -= (size_t)got;
    }
    return true;
}

/* ---- a small strict JSON parser; values live in an arena freed in one go after loading ---- */

typedef struct ArenaBlock {
    struct ArenaBlock *next;
    size_t used, cap;
    max_align_t data[];
} ArenaBlock;

typedef struct { ArenaBlock *head; } Arena;

static void *arena_alloc(Arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (!a->head || a->head->cap - a->head->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        ArenaBlock *b = malloc(sizeof(ArenaBlock) + cap);
        if (!b) return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    void *p = (char *)a->head->data + a->head->used;
    a->head->used += n;
    return p;
}

static void arena_free(Arena *a) {
    while (a->head) {
        ArenaBlock *next = a->head->next;
        free(a->head);
        a->head = next;
    }
}

typedef enum { J_NULL, J_BOOL, J_INT, J_FLOAT, J_STR, J_ARR, J_OBJ } JType;

typedef struct JVal JVal;
struct JVal {
    JType type;
    int n;          /* items of an array/object */
    bool b;
    int64_t i;
    char *s;        /* J_STR, NUL-terminated (embedded NULs are rejected) */
    char **keys;    /* J_OBJ */
    JVal **items;   /* J_ARR and J_OBJ */
};

typedef struct {
    const char *p, *end;
    int line, depth;
    Arena *arena;
    char err[200];
} JParser;

static JVal *jerr(JParser *ps, const char *msg) {
    if (!ps->err[0]) snprintf(ps->err, sizeof ps->err, "line %d: %s", ps->line, msg);
    return NULL;
}

static void jskip_ws(JParser *ps) {
    while (ps->p < ps->end) {
        char c = *ps->p;
        if (c == '\n') ps->line++;
        else if (c != ' ' && c != '\t' && c != '\r') break;
        ps->p++;
    }
}

static JVal *jnew(JParser *ps, JType t) {
    JVal *v = arena_alloc(ps->arena, sizeof *v);
    if (!v) return jerr(ps, "out of memory");
    memset(v, 0, sizeof *v);
    v->type = t;
    return v;
}

static int jhex4(const char *p) {
    int v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p[k];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return -1;
    }
    return v;
}

static char *jstring(JParser *ps) {
    const char *start = ++ps->p; /* after the opening quote */
    const char *q = start;
    while (q < ps->end && *q != '"') {
        if ((unsigned char)*q < 0x20) return (char *)jerr(ps, "control character in string");
        q += (*q == '\\') ? 2 : 1;
    }
    if (q >= ps->end) return (char *)jerr(ps, "unterminated string");
    /* decoding never grows the text: an escape of k bytes yields at most k bytes of UTF-8 */
    char *out = arena_alloc(ps->arena, (size_t)(q - start) + 1), *o = out;
    if (!out) return (char *)jerr(ps, "out of memory");
    const char *p = start;
    while (p < q) {
        if (*p != '\\') { *o++ = *p++; continue; }
        p++;
        switch (*p++) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            int cp = (q - p >= 4) ? jhex4(p) : -1;
            if (cp < 0) return (char *)jerr(ps, "bad \\u escape");
            p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                int lo = (q - p >= 6 && p[0] == '\\' && p[1] == 'u') ? jhex4(p + 2) : -1;
                if (lo < 0xDC00 || lo > 0xDFFF) return (char *)jerr(ps, "unpaired surrogate");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return (char *)jerr(ps, "unpaired surrogate");
            }
            if (cp == 0) return (char *)jerr(ps, "NUL character in string");
            /* UTF-8: a lead byte carrying the top bits, then 6 bits per continuation byte */
            int extra = cp < 0x80 ? 0 : cp < 0x800 ? 1 : cp < 0x10000 ? 2 : 3;
            static const unsigned char lead[] = {0x00, 0xC0, 0xE0, 0xF0};
            *o++ = (char)(lead[extra] | (cp >> (6 * extra)));
            for (int k = extra - 1; k >= 0; k--) *o++ = (char)(0x80 | ((cp >> (6 * k)) & 0x3F));
            break;
        }
        default: return (char *)jerr(ps, "bad escape in string");
        }
    }
    *o = '\0';
    ps->p = q + 1;
    return out;
}

static JVal *jnumber(JParser *ps) {
    const char *s = ps->p, *p = s;
    bool neg = false, is_int = true;
    if (p < ps->end && *p == '-') { neg = true; p++; }
    if (p >= ps->end || *p < '0' || *p > '9') return jerr(ps, "bad number");
    if (*p == '0') p++;
    else while (p < ps->end && *p >= '0' && *p <= '9') p++;
    if (p < ps->end && *p == '.') {
        is_int = false;
        p++;
        if (p >= ps->end || *p < '0' || *p > '9') return jerr(ps, "bad number");
        while (p < ps->end && *p >= '0' && *p <= '9') p++;
    }
    if (p < ps->end && (*p == 'e' || *p == 'E')) {
        is_int = false;
        p++;
        if (p < ps->end && (*p == '+' || *p == '-')) p++;
        if (p >= ps->end || *p < '0' || *p > '9') return jerr(ps, "bad number");
        while (p < ps->end && *p >= '0' && *p <= '9') p++;
    }
    ps->p = p;
    if (is_int) {
        /* accumulate as a negative number so INT64_MIN fits */
        int64_t v = 0;
        for (const char *d = s + neg; d < p; d++) {
            int digit = *d - '0';
            if (v < (INT64_MIN + digit) / 10) return jerr(ps, "integer out of range");
            v = v * 10 - digit;
        }
        if (!neg && v == INT64_MIN) return jerr(ps, "integer out of range");
        JVal *r = jnew(ps, J_INT);
        if (r) r->i = neg ? v : -v;
        return r;
    }
    return jnew(ps, J_FLOAT); /* validated, but the runtime reads no float fields */
}

static JVal *jvalue(JParser *ps);

/* arrays and objects: collect into a growing temporary vector, then copy into the arena */
static JVal *jcontainer(JParser *ps, bool is_obj) {
    char close = is_obj ? '}' : ']';
    if (++ps->depth > JSON_MAX_DEPTH) return jerr(ps, "nesting too deep");
    ps->p++;
    JVal **items = NULL;
    char **keys = NULL;
    int n = 0, cap = 0;
    JVal *result = NULL;
    jskip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        goto done;
    }
    for (;;) {
        char *key = NULL;
        jskip_ws(ps);
        if (is_obj) {
            if (ps->p >= ps->end || *ps->p != '"') { jerr(ps, "expected a string key"); goto out; }
            if (!(key = jstring(ps))) goto out;
            jskip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') { jerr(ps, "expected ':'"); goto out; }
            ps->p++;
        }
        JVal *v = jvalue(ps);
        if (!v) goto out;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            JVal **ni = realloc(items, (size_t)cap * sizeof *ni);
            if (ni) items = ni;
            char **nk = ni && is_obj ? realloc(keys, (size_t)cap * sizeof *nk) : keys;
            if (nk) keys = nk;
            if (!ni || (is_obj && !nk)) { jerr(ps, "out of memory"); goto out; }
        }
        items[n] = v;
        if (is_obj) keys[n] = key;
        n++;
        jskip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') { ps->p++; continue; }
        if (ps->p < ps->end && *ps->p == close) { ps->p++; break; }
        jerr(ps, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
        goto out;
    }
done:
    result = jnew(ps, is_obj ? J_OBJ : J_ARR);
    if (result && n > 0) {
        result->n = n;
        result->items = arena_alloc(ps->arena, (size_t)n * sizeof(JVal *));
        if (is_obj) result->keys = arena_alloc(ps->arena, (size_t)n * sizeof(char *));
        if (!result->items || (is_obj && !result->keys)) {
            result = jerr(ps, "out of memory");
        } else {
            memcpy(result->items, items, (size_t)n * sizeof(JVal *));
            if (is_obj) memcpy(result->keys, keys, (size_t)n * sizeof(char *));
        }
    }
out:
    free(items);
    free(keys);
    ps->depth--;
    return result;
}

static bool jliteral(JParser *ps, const char *word) {
    size_t len = strlen(word);
    if ((size_t)(ps->end - ps->p) < len || memcmp(ps->p, word, len) != 0) return false;
    ps->p += len;
    return true;
}

static JVal *jvalue(JParser *ps) {
    jskip_ws(ps);
    if (ps->p >= ps->end) return jerr(ps, "unexpected end of file");
    char c = *ps->p;
    if (c == '{') return jcontainer(ps, true);
    if (c == '[') return jcontainer(ps, false);
    if (c == '"') {
        char *s = jstring(ps);
        JVal *v = s ? jnew(ps, J_STR) : NULL;
        if (v) v->s = s;
        return v;
    }
    if (c == '-' || (c >= '0' && c <= '9')) return jnumber(ps);
    JVal *v;
    if (jliteral(ps, "true")) { if ((v = jnew(ps, J_BOOL))) v->b = true; return v; }
    if (jliteral(ps, "false")) return jnew(ps, J_BOOL);
    if (jliteral(ps, "null")) return jnew(ps, J_NULL);
    return jerr(ps, "unexpected character");
}

static JVal *json_parse(const char *text, size_t len, Arena *arena, char *err, size_t errlen) {
    JParser ps = {.p = text, .end = text + len, .line = 1, .arena = arena};
    JVal *root = jvalue(&ps);
    if (root) {
        jskip_ws(&ps);
        if (ps.p != ps.end) root = jerr(&ps, "trailing characters after the JSON value");
    }
    if (!root) snprintf(err, errlen, "%s", ps.err);
    return root;
}

static JVal *jget(const JVal *obj, const char *key) {
    for (int i = 0; i < obj->n; i++)
        if (strcmp(obj->keys[i], key) == 0) return obj->items[i];
    return NULL;
}

/* ---- the model ---- */

typedef struct {
    char *name;
    int dtype;
    int ndim;
    int64_t *shape;
    size_t nbytes;
    void *buf;  /* the value's bytes: `own`, or an input's caller memory (neo_model_bind_input) */
    void *own;  /* the model's own buffer */
    bool set; /* inputs: has a value been given */
} NeoIO;

typedef struct {
    char *name;
    char *func;
    NeoKernelFn fn;
    void **args;
    bool parallel;
    int num_in_args; /* args[0..num_in_args) are read, the rest written */
    int num_args;
    int *arg_tensor; /* checked mode: the tensor id of each arg, to name a damaged buffer */
} NeoNode;

/* checked mode: a buffer in its own mapping,
 *   no-access page | head guard (NEO_GUARD_BYTES) | data (nbytes) | tail guard | no-access page
 * with the guards filled with GUARD_BYTE; data is 64-byte aligned, the tail guard starts right
 * after the last data byte and runs to the end of the accessible pages (>= NEO_GUARD_BYTES). */
typedef struct {
    const char *name;  /* the first tensor placed in it (points into NeoModel.tensor_names) */
    char kind;         /* 'i' input, 'o' output, 'w' workspace */
    int index;         /* the input/output index, or the storage id */
    size_t nbytes;
    uint8_t *map;
    size_t map_size;
    uint8_t *data, *tail;
    size_t tail_len;
} GuardBuf;

typedef struct NeoPool NeoPool;
typedef struct { NeoPool *pool; int task; } NeoWorker;

struct NeoPool {
    int n; /* threads including the caller, which runs task 0 */
    pthread_t *threads;
    NeoWorker *workers;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    atomic_uint gen;        /* bumped once per job; workers wait for it to change */
    /* the last job each task was claimed for: a thread claims task t of job j by moving it from
     * j - 1 to j with one compare-and-swap, so every task runs once, by whichever thread gets to
     * it first; a claim for an earlier job fails (that job was over: all its tasks had been
     * claimed). Thread i tries task i first: the same thread then runs the same share of every
     * kernel, the share of the data the kernel before it wrote into that core's cache. */
    atomic_uint task_job[POOL_MAX_THREADS];
    atomic_uint finished;   /* tasks of the current job that have returned */
    atomic_int stop;
    atomic_int failed_code; /* first non-zero kernel return of the job */
    atomic_int failed_task;
    NeoKernelFn fn;         /* the job; written before its claim word is published, read after a
                             * successful claim (the job cannot end before that task returns) */
    void **args;
};

struct NeoModel {
    void *lib;
    void *params;
    void *params_map; /* the mapping params lies in, and its size (to munmap) */
    size_t params_map_size;
    size_t params_size;
    void *workspace; /* NULL in checked mode: every storage is a GuardBuf instead */
    void *workspace_map; /* the mapping the workspace was carved from, and its size */
    size_t workspace_map_size;
    int num_inputs, num_outputs, num_nodes;
    NeoIO *inputs, *outputs;
    NeoNode *nodes;
    NeoPool *pool;
    unsigned flags;
    int64_t row_batch; /* rows per run when axis 0 of every input and output is a batch of
                          independent rows (compiled_model.json "row_batch"), else 0 */
    atomic_int current; /* the node running now, -1 outside a run (read by crash handlers) */
    /* checked mode only */
    GuardBuf *gbufs;
    int num_gbufs, cap_gbufs;
    int num_tensors;
    char **tensor_names; /* by tensor id */
    int *tensor_gbuf;    /* by tensor id: its GuardBuf, -1 for params */
};

/* ---- checked mode: guarded buffers ---- */

#define GUARD_BYTE 0xA5u
#define GUARD_WORD 0xA5A5A5A5A5A5A5A5ull

static size_t page_size(void) {
    long p = sysconf(_SC_PAGESIZE);
    return p >= NEO_GUARD_BYTES ? (size_t)p : 4096;
}

static void guard_fill(GuardBuf *b) {
    memset(b->data - NEO_GUARD_BYTES, GUARD_BYTE, NEO_GUARD_BYTES);
    memset(b->tail, GUARD_BYTE, b->tail_len);
}

/* map a guarded, zeroed buffer of nbytes; NULL when out of memory */
static uint8_t *guard_alloc(GuardBuf *b, size_t nbytes) {
    size_t pg = page_size(), body = 2 * (size_t)NEO_GUARD_BYTES + nbytes;
    if (body < nbytes || body > SIZE_MAX - 3 * pg) return NULL;
    size_t inner = (body + pg - 1) / pg * pg, total = inner + 2 * pg;
    uint8_t *map = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) return NULL;
    if (mprotect(map + pg, inner, PROT_READ | PROT_WRITE) != 0) {
        munmap(map, total);
        return NULL;
    }
    b->map = map;
    b->map_size = total;
    b->nbytes = nbytes;
    b->data = map + pg + NEO_GUARD_BYTES;
    b->tail = b->data + nbytes;
    b->tail_len = (size_t)(map + pg + inner - b->tail);
    guard_fill(b);
    return b->data;
}

/* no branch per byte: this runs over every guard after every node */
static bool guard_intact(const uint8_t *p, size_t n) {
    uint64_t acc = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        acc |= w ^ GUARD_WORD;
    }
    for (; i < n; i++) acc |= p[i] ^ GUARD_BYTE;
    return acc == 0;
}

/* how far before the data / past its end the damage reaches (0: intact) */
static size_t damage_before(const GuardBuf *b) {
    const uint8_t *head = b->data - NEO_GUARD_BYTES;
    for (size_t i = 0; i < NEO_GUARD_BYTES; i++)
        if (head[i] != GUARD_BYTE) return NEO_GUARD_BYTES - i;
    return 0;
}

static size_t damage_after(const GuardBuf *b) {
    for (size_t i = b->tail_len; i > 0; i--)
        if (b->tail[i - 1] != GUARD_BYTE) return i;
    return 0;
}

static bool guard_damaged(const GuardBuf *b) {
    return !guard_intact(b->data - NEO_GUARD_BYTES, NEO_GUARD_BYTES) ||
           !guard_intact(b->tail, b->tail_len);
}

/* after node n ran: verify every guard; a damaged one fails naming the kernel and the buffer
 * (preferring one of the node's own), and all guards are restored for the next run */
static int check_guards(NeoModel *m, const NeoNode *n) {
    int bad = -1, nbad = 0;
    const char *bad_name = NULL;
    for (int b = 0; b < m->num_gbufs; b++) {
        if (!guard_damaged(&m->gbufs[b])) continue;
        nbad++;
        const char *own = NULL; /* the name the node knows this buffer by, if it is an arg */
        for (int k = 0; k < n->num_args && !own; k++)
            if (m->tensor_gbuf[n->arg_tensor[k]] == b) own = m->tensor_names[n->arg_tensor[k]];
        if (bad < 0 || (own && !bad_name)) {
            bad = b;
            bad_name = own;
        }
    }
    if (bad < 0) return 0;
    GuardBuf *g = &m->gbufs[bad];
    size_t before = damage_before(g), after = damage_after(g);
    char what[96], where[64], more[64] = "";
    if (before && after)
        snprintf(what, sizeof what, "%zu bytes before the start and %zu bytes past the end",
                 before, after);
    else if (before)
        snprintf(what, sizeof what, "%zu bytes before the start", before);
    else
        snprintf(what, sizeof what, "%zu bytes past the end", after);
    snprintf(where, sizeof where, "%s %d", g->kind == 'w' ? "storage" : g->kind == 'i' ? "input"
                                                                                    : "output",
             g->index);
    if (nbad > 1) snprintf(more, sizeof more, "; %d other buffers damaged too", nbad - 1);
    fail("checked mode: kernel %s (node %s) wrote %s of buffer '%s' (%s, %zu bytes)%s", n->func,
         n->name, what, bad_name ? bad_name : g->name, where, g->nbytes, more);
    for (int b = 0; b < m->num_gbufs; b++) guard_fill(&m->gbufs[b]);
    return -1;
}

/* the GuardBuf of a tensor in checked mode: inputs and outputs get their own; workspace tensors
 * share one per (storage id, nbytes). Tensors of one storage id have disjoint lifetimes unless
 * one is a view (a reshape) of the other, which has the same size; so giving different sizes
 * different buffers changes no data flow and puts the tail guard right after each tensor. */
static int guard_buf_for(NeoModel *m, char kind, int index, size_t nbytes, int tensor) {
    if (kind == 'w')
        for (int b = 0; b < m->num_gbufs; b++)
            if (m->gbufs[b].kind == 'w' && m->gbufs[b].index == index &&
                m->gbufs[b].nbytes == nbytes)
                return b;
    if (m->num_gbufs == m->cap_gbufs) {
        int cap = m->cap_gbufs ? 2 * m->cap_gbufs : 16;
        GuardBuf *nb = realloc(m->gbufs, (size_t)cap * sizeof *nb);
        if (!nb) return fail("out of memory");
        m->gbufs = nb;
        m->cap_gbufs = cap;
    }
    GuardBuf *g = &m->gbufs[m->num_gbufs];
    memset(g, 0, sizeof *g);
    if (!guard_alloc(g, nbytes))
        return fail("checked mode: cannot map a guarded buffer of %zu bytes: %s", nbytes,
                    strerror(errno));
    g->name = m->tensor_names[tensor];
    g->kind = kind;
    g->index = index;
    return m->num_gbufs++;
}

/* ---- the thread pool ---- */

/* A spin-wait hint where the ISA has one; elsewhere the loop's atomic load is enough. */
static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* poll for POOL_SPIN_US (reading the clock every 64 polls), then yield, until
 * (*v == want) == equal; false if that did not happen in time */
static bool spin_until(atomic_uint *v, unsigned want, bool equal) {
    double until = 0.0;
    for (unsigned i = 0;; i++) {
        if ((atomic_load(v) == want) == equal) return true;
        if ((i & 63u) == 0) {
            double now = now_seconds();
            if (i == 0) until = now + POOL_SPIN_US * 1e-6;
            else if (now > until) break;
        }
        cpu_relax();
    }
    for (int i = 0; i < POOL_YIELD; i++) {
        if ((atomic_load(v) == want) == equal) return true;
        sched_yield();
    }
    return (atomic_load(v) == want) == equal;
}

/* the next task of job `job` for thread `self` (0: the caller), its own first and then the
 * others' in turn from *next on; -1 when none is left unclaimed (or the job is over) */
static int pool_claim(NeoPool *p, unsigned job, int self, int *next) {
    while (*next < p->n) {
        int t = (self + (*next)++) % p->n;
        unsigned before = job - 1u;
        if (atomic_load_explicit(&p->task_job[t], memory_order_relaxed) == before &&
            atomic_compare_exchange_strong(&p->task_job[t], &before, job))
            return t;
    }
    return -1;
}

/* run the tasks of job `job` thread `self` can claim; true if it finished the job's last task */
static bool pool_work(NeoPool *p, unsigned job, int self) {
    bool last = false;
    int task, next = 0;
    while ((task = pool_claim(p, job, self, &next)) >= 0) {
        int32_t rc = p->fn(p->args, task, p->n);
        if (rc != 0) {
            int expected = 0;
            if (atomic_compare_exchange_strong(&p->failed_code, &expected, rc))
                atomic_store(&p->failed_task, task);
        }
        last = atomic_fetch_add(&p->finished, 1u) + 1u == (unsigned)p->n;
    }
    return last;
}

/* Tasks are claimed, not assigned: on a busy machine a worker the OS has not scheduled yet
 * leaves its task to the threads that are running (the caller included), so a run waits only
 * for tasks already started, never for a thread that has not woken up. */
static void *pool_worker(void *arg) {
    NeoWorker *w = arg;
    NeoPool *p = w->pool;
    unsigned seen = 0; /* workers start before the first job is published */
    for (;;) {
        spin_until(&p->gen, seen, false);
        unsigned g = atomic_load(&p->gen);
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load(&p->gen)) == seen) pthread_cond_wait(&p->wake, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        seen = g;
        if (atomic_load(&p->stop)) break;
        /* the one that finishes the job's last task wakes the caller; taking the mutex orders
         * this against its wait */
        if (pool_work(p, g, w->task)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

static void pool_destroy(NeoPool *p) {
    if (!p) return;
    int started = p->n - 1;
    if (started > 0) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->stop, 1);
        atomic_fetch_add(&p->gen, 1);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
        for (int i = 0; i < started; i++) pthread_join(p->threads[i], NULL);
    }
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p->workers);
    free(p);
}

static int available_cpus(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static NeoPool *pool_create(int n) {
    if (n <= 0) n = available_cpus();
    if (n > POOL_MAX_THREADS) n = POOL_MAX_THREADS;
    NeoPool *p = calloc(1, sizeof *p);
    if (!p) { fail("out of memory creating the thread pool"); return NULL; }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    p->threads = calloc((size_t)n, sizeof *p->threads);
    p->workers = calloc((size_t)n, sizeof *p->workers);
    if (!p->threads || !p->workers) {
        p->n = 1;
        pool_destroy(p);
        fail("out of memory creating the thread pool");
        return NULL;
    }
    p->n = 1;
    for (int i = 1; i < n; i++) {
        p->workers[i - 1] = (NeoWorker){p, i};
        int rc = pthread_create(&p->threads[i - 1], NULL, pool_worker, &p->workers[i - 1]);
        if (rc != 0) {
            pool_destroy(p);
            fail("cannot start thread %d of %d for the thread pool: %s", i + 1, n, strerror(rc));
            return NULL;
        }
        p->n = i + 1;
    }
    return p;
}

/* run fn for tasks 0..n-1 on the caller and the workers; returns the first failing code, *task
 * its task */
static int32_t pool_run(NeoPool *p, NeoKernelFn fn, void **args, int *task) {
    *task = 0;
    if (p->n == 1) return fn(args, 0, 1);
    p->fn = fn;
    p->args = args;
    atomic_store(&p->failed_code, 0);
    atomic_store(&p->finished, 0u);
    pthread_mutex_lock(&p->mu);
    unsigned job = atomic_load(&p->gen) + 1u;
    atomic_store(&p->gen, job);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);

    pool_work(p, job, 0);

    if (!spin_until(&p->finished, (unsigned)p->n, true)) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->finished) != (unsigned)p->n) pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
    int32_t rc = atomic_load(&p->failed_code);
    if (rc != 0) *task = atomic_load(&p->failed_task);
    return rc;
}

/* ---- compiled.params ---- */

typedef struct {
    const char *name; /* points into the mapping, not NUL-terminated */
    size_t name_len;
    int dtype;
    uint64_t offset, nbytes;
} ParamEntry;

static uint64_t rd_u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t rd_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* sum_i w[i] * (2i + 1) mod 2^64 over the data region's little-endian u64 words */
static uint64_t params_checksum(const uint8_t *data, uint64_t nbytes) {
    uint64_t sum = 0;
    for (uint64_t i = 0; i < nbytes / 8; i++) sum += rd_u64(data + 8 * i) * (2 * i + 1);
    return sum;
}

static int name_cmp(const char *a, size_t alen, const char *b, size_t blen) {
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c ? c : (alen < blen ? -1 : alen > blen ? 1 : 0);
}

/* validate the mapped params file exactly as documented and index its entries */
static int params_parse(const char *path, const uint8_t *f, size_t size, ParamEntry **out,
                        uint32_t *count, const uint8_t **data) {
    if (size < PARAMS_HEADER)
        return fail("%s is truncated: %zu bytes, the header alone is %d", path, size,
                    PARAMS_HEADER);
    if (memcmp(f, "NEOPARAM", 8) != 0) return fail("%s is not a neo params file (bad magic)", path);
    uint32_t version = rd_u32(f + 8), n = rd_u32(f + 12);
    uint64_t data_offset = rd_u64(f + 16), data_nbytes = rd_u64(f + 24);
    uint64_t stored_sum = rd_u64(f + 32), index_nbytes = rd_u64(f + 40);
    if (version != 1) return fail("%s has format version %u, this runtime reads 1", path, version);
    if (data_offset % NEO_ALIGN || data_nbytes % NEO_ALIGN)
        return fail("%s: data_offset %llu / data_nbytes %llu are not multiples of 64", path,
                    (unsigned long long)data_offset, (unsigned long long)data_nbytes);
    if (data_offset < PARAMS_HEADER || index_nbytes > data_offset - PARAMS_HEADER)
        return fail("%s: index of %llu bytes does not fit before data_offset %llu", path,
                    (unsigned long long)index_nbytes, (unsigned long long)data_offset);
    if (data_nbytes > UINT64_MAX - data_offset || data_offset + data_nbytes != (uint64_t)size) {
        bool shorter = data_nbytes > UINT64_MAX - data_offset || size < data_offset + data_nbytes;
        return fail("%s is %s: %zu bytes, the header says %llu", path,
                    shorter ? "truncated" : "longer than declared", size,
                    (unsigned long long)(data_offset + data_nbytes));
    }
    if (n > index_nbytes / 20) /* the smallest entry (empty name, 0-d) takes 20 index bytes */
        return fail("%s: index is truncated (declared %llu bytes for %u entries)", path,
                    (unsigned long long)index_nbytes, n);
    ParamEntry *entries = calloc(n ? n : 1, sizeof *entries);
    if (!entries) return fail("out of memory reading %s", path);
    const uint8_t *p = f + PARAMS_HEADER, *end = p + index_nbytes;
    for (uint32_t k = 0; k < n; k++) {
        ParamEntry *e = &entries[k];
        if (end - p < 2) goto truncated;
        e->name_len = (size_t)p[0] | (size_t)p[1] << 8;
        p += 2;
        if ((size_t)(end - p) < e->name_len + 2) goto truncated;
        e->name = (const char *)p;
        p += e->name_len;
        e->dtype = p[0];
        int ndim = p[1];
        p += 2;
        if ((size_t)(end - p) < (size_t)ndim * 8 + 16) goto truncated;
        if (e->dtype >= NUM_DTYPES) {
            fail("%s: entry '%.*s' has unknown dtype code %d", path, (int)e->name_len, e->name,
                 e->dtype);
            free(entries); /* after formatting: the message quotes e->name */
            return -1;
        }
        int64_t dims[255];
        memcpy(dims, p, (size_t)ndim * 8);
        p += (size_t)ndim * 8;
        e->offset = rd_u64(p);
        e->nbytes = rd_u64(p + 8);
        p += 16;
        size_t expect;
        const char *problem = NULL;
        const ParamEntry *prev = k > 0 ? &entries[k - 1] : NULL;
        if (prev && name_cmp(prev->name, prev->name_len, e->name, e->name_len) >= 0)
            problem = "is not sorted after the previous entry (or is a duplicate)";
        else if (e->offset % NEO_ALIGN)
            problem = "has an offset that is not a multiple of 64";
        else if (e->offset > data_nbytes || e->nbytes > data_nbytes - e->offset)
            problem = "lies outside the data region";
        else if (!shape_nbytes(dims, ndim, DTYPES[e->dtype].size, &expect) || expect != e->nbytes)
            problem = "has nbytes that do not match its shape and dtype";
        if (problem) {
            fail("%s: entry '%.*s' %s", path, (int)e->name_len, e->name, problem);
            free(entries);
            return -1;
        }
    }
    if (p != end) {
        free(entries);
        return fail("%s: index has %td unused bytes after %u entries", path, end - p, n);
    }
    uint64_t sum = params_checksum(f + data_offset, data_nbytes);
    if (sum != stored_sum) {
        free(entries);
        return fail("%s is corrupt: checksum mismatch (stored %016llx, computed %016llx)", path,
                    (unsigned long long)stored_sum, (unsigned long long)sum);
    }
    *out = entries;
    *count = n;
    *data = f + data_offset;
    return 0;
truncated:
    free(entries);
    return fail("%s: index is truncated (declared %llu bytes for %u entries)", path,
                (unsigned long long)index_nbytes, n);
}

static const ParamEntry *params_find(const ParamEntry *e, uint32_t n, const char *name) {
    size_t len = strlen(name);
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(e[mid].name, e[mid].name_len, name, len);
        if (c == 0) return &e[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* ---- loading ---- */

typedef struct {
    const char *dir;
    char json_path[PATH_MAX];
    Arena arena;
    char *text;
    ParamEntry *params;
    uint32_t num_params;
    const uint8_t *param_data;
    void **tensor_ptr; /* by tensor id */
    char *tensor_storage; /* by id: 'i' input, 'o' output, 'p' param, 'w' workspace */
    int num_tensors;
    int *view_of; /* by id: the workspace tensor this one is a piece of ("view_of"), else -1 */
    int64_t *ws_offset; /* by id: a workspace tensor's offset */
    size_t *ws_nbytes; /* and size */
} Loader;

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static int file_missing(const char *dir, const char *name, char *path, size_t pathlen) {
    snprintf(path, pathlen, "%s/%s", dir, name);
    if (access(path, R_OK) == 0) return 0;
    if (errno == ENOENT) return fail("compiled artifact %s is missing %s", dir, name);
    return fail("cannot read %s: %s", path, strerror(errno));
}

static int read_text(const char *path, char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return fail("cannot open %s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0, got;
    do {
        if (cap - n < 65536) {
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap);
            if (!nb) { free(buf); fclose(f); return fail("out of memory reading %s", path); }
            buf = nb;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    int err = ferror(f);
    fclose(f);
    if (err) { free(buf); return fail("error reading %s", path); }
    *out = buf;
    *len = n;
    return 0;
}

/* field accessors that report "<file>: <where>: <what>" */
static JVal *field(Loader *L, const JVal *obj, const char *key, JType type, const char *where) {
    static const char *const names[] = {"null", "boolean", "integer", "number", "string", "array",
                                        "object"};
    JVal *v = obj && obj->type == J_OBJ ? jget(obj, key) : NULL;
    if (!v || v->type != type) {
        fail("%s: %s: %s field '%s' %s", L->json_path, where, names[type], key,
             v ? "has the wrong type" : "is missing");
        return NULL;
    }
    return v;
}

static int parse_shape(Loader *L, const JVal *t, const char *where, NeoIO *io) {
    JVal *shape = field(L, t, "shape", J_ARR, where);
    JVal *dtype = field(L, t, "dtype", J_STR, where);
    JVal *nbytes = field(L, t, "nbytes", J_INT, where);
    if (!shape || !dtype || !nbytes) return -1;
    io->dtype = dtype_code(dtype->s);
    if (io->dtype < 0) return fail("%s: %s: unknown dtype '%s'", L->json_path, where, dtype->s);
    if (shape->n > 255) return fail("%s: %s: too many dimensions", L->json_path, where);
    io->ndim = shape->n;
    io->shape = calloc((size_t)shape->n + 1, sizeof(int64_t));
    if (!io->shape) return fail("out of memory");
    for (int d = 0; d < shape->n; d++) {
        if (shape->items[d]->type != J_INT || shape->items[d]->i < 0)
            return fail("%s: %s: shape must be non-negative integers", L->json_path, where);
        io->shape[d] = shape->items[d]->i;
    }
    size_t expect = 0;
    if (!shape_nbytes(io->shape, io->ndim, DTYPES[io->dtype].size, &expect) || nbytes->i < 0 ||
        (uint64_t)nbytes->i != expect)
        return fail("%s: %s: nbytes %lld does not match its shape and dtype (%zu)", L->json_path,
                    where, (long long)nbytes->i, expect);
    io->nbytes = expect;
    return 0;
}

static int load_tensor(Loader *L, NeoModel *m, const JVal *t, int pos, void *workspace,
                       int64_t workspace_nbytes, const JVal *inputs, const JVal *outputs) {
    char where[320];
    snprintf(where, sizeof where, "tensors[%d]", pos);
    JVal *id = field(L, t, "id", J_INT, where), *name = field(L, t, "name", J_STR, where);
    JVal *storage = field(L, t, "storage", J_STR, where);
    if (!id || !name || !storage) return -1;
    snprintf(where, sizeof where, "tensor %lld ('%s')", (long long)id->i, name->s);
    if (id->i < 0 || id->i >= L->num_tensors || L->tensor_storage[id->i])
        return fail("%s: %s: id must be unique and in 0..%d", L->json_path, where,
                    L->num_tensors - 1);
    if ((m->flags & NEO_LOAD_CHECKED) && !(m->tensor_names[id->i] = xstrdup(name->s)))
        return fail("out of memory");
    NeoIO io = {0};
    int rc = parse_shape(L, t, where, &io);
    const char *kind = storage->s;
    void *ptr = NULL;
    if (rc == 0 && (!strcmp(kind, "input") || !strcmp(kind, "output"))) {
        bool is_in = kind[0] == 'i';
        const JVal *list = is_in ? inputs : outputs;
        JVal *index = field(L, t, "index", J_INT, where);
        if (!index) {
            rc = -1;
        } else if (index->i < 0 || index->i >= list->n || list->items[index->i]->type != J_INT ||
                   list->items[index->i]->i != id->i) {
            rc = fail("%s: %s: index %lld does not match the graph's %s list", L->json_path, where,
                      (long long)index->i, is_in ? "inputs" : "outputs");
        } else {
            NeoIO *slot = is_in ? &m->inputs[index->i] : &m->outputs[index->i];
            if (slot->buf) {
                free(io.shape);
                return fail("%s: %s: %s %lld is bound twice", L->json_path, where, kind,
                            (long long)index->i);
            }
            slot->name = xstrdup(name->s);
            slot->dtype = io.dtype, slot->ndim = io.ndim, slot->shape = io.shape;
            slot->nbytes = io.nbytes;
            io.shape = NULL; /* now owned by the slot */
            if (!slot->name) {
                rc = fail("out of memory");
            } else if (m->flags & NEO_LOAD_CHECKED) {
                int b = guard_buf_for(m, kind[0], (int)index->i, io.nbytes, (int)id->i);
                if (b < 0) rc = -1;
                else slot->buf = m->gbufs[b].data, m->tensor_gbuf[id->i] = b;
            } else if (!(slot->buf = alloc_aligned(io.nbytes))) {
                rc = fail("out of memory");
            }
            ptr = slot->buf;
        }
    } else if (rc == 0 && !strcmp(kind, "param")) {
        JVal *pname = field(L, t, "param", J_STR, where);
        const ParamEntry *e = pname ? params_find(L->params, L->num_params, pname->s) : NULL;
        if (!pname)
            rc = -1;
        else if (!e)
            rc = fail("%s: %s: param '%s' is not in compiled.params", L->json_path, where,
                      pname->s);
        else if (e->nbytes != io.nbytes || e->dtype != io.dtype)
            rc = fail("%s: %s: param '%s' in compiled.params is %s of %llu bytes, expected %s of "
                      "%zu", L->json_path, where, pname->s, DTYPES[e->dtype].name,
                      (unsigned long long)e->nbytes, DTYPES[io.dtype].name, io.nbytes);
        else
            ptr = (void *)(L->param_data + e->offset);
    } else if (rc == 0 && !strcmp(kind, "workspace")) {
        JVal *off = field(L, t, "offset", J_INT, where);
        JVal *sid = off ? field(L, t, "storage_id", J_INT, where) : NULL;
        /* optional: a piece of another workspace tensor (a concat input written in place);
         * checked mode binds it inside that tensor's guarded buffer once all are loaded */
        const JVal *view = jget(t, "view_of");
        int b;
        if (off) L->ws_offset[id->i] = off->i, L->ws_nbytes[id->i] = io.nbytes;
        if (!off || !sid)
            rc = -1;
        else if (off->i < 0 || off->i > workspace_nbytes ||
                 io.nbytes > (uint64_t)(workspace_nbytes - off->i))
            rc = fail("%s: %s: offset %lld + %zu bytes exceeds workspace_nbytes %lld", L->json_path,
                      where, (long long)off->i, io.nbytes, (long long)workspace_nbytes);
        else if (view && (view->type != J_INT || view->i < 0 || view->i >= L->num_tensors ||
                          view->i == id->i))
            rc = fail("%s: %s: view_of must be the id of another tensor", L->json_path, where);
        else if (view)
            L->view_of[id->i] = (int)view->i; /* its pointer is bound in bind_views */
        else if (!(m->flags & NEO_LOAD_CHECKED))
            ptr = (char *)workspace + off->i;
        else if (sid->i < 0 || sid->i > INT_MAX)
            rc = fail("%s: %s: storage_id %lld is out of range", L->json_path, where,
                      (long long)sid->i);
        else if ((b = guard_buf_for(m, 'w', (int)sid->i, io.nbytes, (int)id->i)) < 0)
            rc = -1;
        else
            ptr = m->gbufs[b].data, m->tensor_gbuf[id->i] = b;
    } else if (rc == 0) {
        rc = fail("%s: %s: unknown storage '%s'", L->json_path, where, kind);
    }
    free(io.shape);
    if (rc) return rc;
    L->tensor_ptr[id->i] = ptr;
    L->tensor_storage[id->i] = kind[0]; /* 'i'nput, 'o'utput, 'p'aram, 'w'orkspace */
    return 0;
}

/* Bind each view ("view_of") to its place inside the tensor it is a piece of: the same workspace
 * bytes, and in checked mode the same guarded buffer (a view that overruns its base is caught;
 * one that overruns into a sibling piece of the same base is not). */
static int bind_views(Loader *L, NeoModel *m) {
    for (int k = 0; k < L->num_tensors; k++) {
        int r = L->view_of[k];
        if (r < 0) continue;
        const char *name = m->tensor_names ? m->tensor_names[k] : NULL;
        if (L->tensor_storage[r] != 'w' || L->view_of[r] >= 0)
            return fail("%s: tensor %d%s%s%s: view_of %d is not a workspace tensor of its own",
                        L->json_path, k, name ? " ('" : "", name ? name : "", name ? "')" : "", r);
        int64_t rel = L->ws_offset[k] - L->ws_offset[r];
        if (rel < 0 || L->ws_nbytes[k] > L->ws_nbytes[r] || (uint64_t)rel > L->ws_nbytes[r] -
            L->ws_nbytes[k])
            return fail("%s: tensor %d: its bytes are not inside those of tensor %d (view_of)",
                        L->json_path, k, r);
        L->tensor_ptr[k] = (char *)L->tensor_ptr[r] + rel;
        if (m->tensor_gbuf) m->tensor_gbuf[k] = m->tensor_gbuf[r];
    }
    return 0;
}

static int load_node(Loader *L, NeoModel *m, const JVal *jn, int pos, bool *output_written) {
    char where[320];
    snprintf(where, sizeof where, "nodes[%d]", pos);
    JVal *name = field(L, jn, "name", J_STR, where), *func = field(L, jn, "func", J_STR, where);
    JVal *args = field(L, jn, "args", J_ARR, where);
    JVal *nin = field(L, jn, "num_inputs", J_INT, where);
    JVal *nout = field(L, jn, "num_outputs", J_INT, where);
    JVal *par = field(L, jn, "parallel", J_BOOL, where);
    if (!name || !func || !args || !nin || !nout || !par) return -1;
    snprintf(where, sizeof where, "node '%s'", name->s);
    NeoNode *n = &m->nodes[pos];
    n->name = xstrdup(name->s);
    n->func = xstrdup(func->s);
    n->args = calloc((size_t)args->n + 1, sizeof(void *));
    n->parallel = par->b;
    n->num_in_args = (int)nin->i;
    if (!n->name || !n->func || !n->args) return fail("out of memory");
    if ((m->flags & NEO_LOAD_CHECKED) &&
        !(n->arg_tensor = calloc((size_t)args->n + 1, sizeof(int))))
        return fail("out of memory");
    if (nin->i < 0 || nout->i < 0 || nin->i + nout->i > args->n)
        return fail("%s: %s: num_inputs %lld + num_outputs %lld exceed its %d args", L->json_path,
                    where, (long long)nin->i, (long long)nout->i, args->n);
    for (int k = 0; k < args->n; k++) {
        JVal *a = args->items[k];
        if (a->type != J_INT || a->i < 0 || a->i >= L->num_tensors)
            return fail("%s: %s: args[%d] is not a tensor id", L->json_path, where, k);
        char st = L->tensor_storage[a->i];
        if (k >= nin->i && (st == 'i' || st == 'p'))
            return fail("%s: %s: writes to read-only %s tensor %lld", L->json_path, where,
                        st == 'i' ? "input" : "param", (long long)a->i);
        if (k >= nin->i && k < nin->i + nout->i && st == 'o') output_written[a->i] = true;
        n->args[k] = L->tensor_ptr[a->i];
        if (n->arg_tensor) n->arg_tensor[n->num_args++] = (int)a->i;
    }
    void *sym = dlsym(m->lib, func->s);
    memcpy(&n->fn, &sym, sizeof sym); /* object-to-function pointer, as POSIX allows */
    if (!sym)
        return fail("%s/compiled.so: kernel '%s' of %s is missing (undefined symbol)", L->dir,
                    func->s, where);
    return 0;
}

static int load_graph(Loader *L, NeoModel *m, const JVal *root) {
    JVal *fmt = field(L, root, "format", J_STR, "top level");
    JVal *ver = field(L, root, "format_version", J_INT, "top level");
    if (!fmt || !ver) return -1;
    if (strcmp(fmt->s, "neo-graph") != 0)
        return fail("%s: format is '%s', expected 'neo-graph'", L->json_path, fmt->s);
    if (ver->i != NEO_FORMAT_VERSION)
        return fail("%s: format_version %lld is not supported (this runtime reads %d)",
                    L->json_path, (long long)ver->i, NEO_FORMAT_VERSION);
    JVal *arch = field(L, root, "arch", J_STR, "top level");
    if (!arch) return -1;
    if (strcmp(arch->s, NEO_ARCH) != 0)
        return fail("compiled artifact %s is built for %s, this runtime is %s", L->dir, arch->s,
                    NEO_ARCH);
    JVal *lib = field(L, root, "library", J_STR, "top level");
    JVal *params = field(L, root, "params", J_STR, "top level");
    JVal *ws = field(L, root, "workspace_nbytes", J_INT, "top level");
    JVal *tensors = field(L, root, "tensors", J_ARR, "top level");
    JVal *inputs = field(L, root, "inputs", J_ARR, "top level");
    JVal *outputs = field(L, root, "outputs", J_ARR, "top level");
    JVal *nodes = field(L, root, "nodes", J_ARR, "top level");
    if (!lib || !params || !ws || !tensors || !inputs || !outputs || !nodes) return -1;
    for (int k = 0; k < 2; k++) {
        const char *fname = k ? params->s : lib->s;
        if (!fname[0] || strchr(fname, '/') || !strcmp(fname, ".") || !strcmp(fname, ".."))
            return fail("%s: '%s' must be a file name inside the artifact", L->json_path, fname);
    }
    if (ws->i < 0) return fail("%s: workspace_nbytes is negative", L->json_path);
    const JVal *rows = jget(root, "row_batch"); /* optional (format 1 readers ignore it) */
    if (rows && (rows->type != J_BOOL || !rows->b))
        return fail("%s: row_batch must be true when present", L->json_path);

    /* compiled.params */
    char path[PATH_MAX];
    if (file_missing(L->dir, params->s, path, sizeof path)) return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0) close(fd);
        return fail("cannot open %s: %s", path, strerror(errno));
    }
    m->params_size = (size_t)st.st_size;
    if (m->params_size > 0) {
        /* read into huge pages where there is a huge page's worth, else mapped (read-only) */
        m->params = map_huge(m->params_size, &m->params_map, &m->params_map_size);
        if (m->params) {
            if (!read_all(fd, m->params, m->params_size)) {
                close(fd);
                return fail("cannot read %s: %s", path, strerror(errno));
            }
            /* read-only, as mapped: a kernel writing into its weights faults (the whole
             * pages: a part would split the mapping) */
            mprotect(m->params, huge_pages_bytes(m->params_size), PROT_READ);
        } else {
            void *map = mmap(NULL, m->params_size, PROT_READ, MAP_PRIVATE, fd, 0);
            if (map == MAP_FAILED) {
                close(fd);
                return fail("cannot map %s: %s", path, strerror(errno));
            }
            m->params = m->params_map = map;
            m->params_map_size = m->params_size;
        }
    }
    close(fd);
    if (params_parse(path, m->params, m->params_size, &L->params, &L->num_params, &L->param_data))
        return -1;

    /* compiled.so */
    if (file_missing(L->dir, lib->s, path, sizeof path)) return -1;
    m->lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!m->lib) return fail("cannot load %s: %s", path, dlerror());

    /* tensors and storage */
    if (m->flags & NEO_LOAD_CHECKED) {
        m->num_tensors = tensors->n;
        m->tensor_names = calloc((size_t)tensors->n + 1, sizeof(char *));
        m->tensor_gbuf = malloc(((size_t)tensors->n + 1) * sizeof(int));
        if (!m->tensor_names || !m->tensor_gbuf) return fail("out of memory");
        for (int k = 0; k < tensors->n; k++) m->tensor_gbuf[k] = -1;
    } else {
        if ((uint64_t)ws->i <= SIZE_MAX)
            m->workspace = alloc_workspace((size_t)ws->i, &m->workspace_map,
                                           &m->workspace_map_size);
        if (!m->workspace)
            return fail("cannot allocate the %lld-byte workspace", (long long)ws->i);
    }
    m->num_inputs = inputs->n;
    m->num_outputs = outputs->n;
    m->inputs = calloc((size_t)inputs->n + 1, sizeof *m->inputs);
    m->outputs = calloc((size_t)outputs->n + 1, sizeof *m->outputs);
    if (!m->inputs || !m->outputs) return fail("out of memory");
    L->num_tensors = tensors->n;
    L->tensor_ptr = calloc((size_t)tensors->n + 1, sizeof(void *));
    L->tensor_storage = calloc((size_t)tensors->n + 1, 1);
    L->view_of = malloc(((size_t)tensors->n + 1) * sizeof(int));
    L->ws_offset = calloc((size_t)tensors->n + 1, sizeof(int64_t));
    L->ws_nbytes = calloc((size_t)tensors->n + 1, sizeof(size_t));
    bool *written = calloc((size_t)tensors->n + 1, 1);
    int rc = (!L->tensor_ptr || !L->tensor_storage || !L->view_of || !L->ws_offset ||
              !L->ws_nbytes || !written) ? fail("out of memory") : 0;
    for (int k = 0; rc == 0 && k < tensors->n; k++) L->view_of[k] = -1;
    for (int k = 0; rc == 0 && k < tensors->n; k++)
        rc = load_tensor(L, m, tensors->items[k], k, m->workspace, ws->i, inputs, outputs);
    if (rc == 0) rc = bind_views(L, m);
    for (int k = 0; rc == 0 && k < m->num_inputs + m->num_outputs; k++) {
        NeoIO *io = k < m->num_inputs ? &m->inputs[k] : &m->outputs[k - m->num_inputs];
        io->own = io->buf;
    }
    for (int k = 0; rc == 0 && k < m->num_inputs + m->num_outputs; k++) {
        bool is_in = k < m->num_inputs;
        NeoIO *io = is_in ? &m->inputs[k] : &m->outputs[k - m->num_inputs];
        if (!io->buf)
            rc = fail("%s: %s %d has no tensor with storage '%s'", L->json_path,
                      is_in ? "input" : "output", is_in ? k : k - m->num_inputs,
                      is_in ? "input" : "output");
        else if (rows && (io->ndim < 1 || (m->row_batch && io->shape[0] != m->row_batch)))
            rc = fail("%s: row_batch needs every input and output to have one leading axis of "
                      "rows of the same size", L->json_path);
        else if (rows)
            m->row_batch = io->shape[0];
    }
    if (rc == 0) {
        m->num_nodes = nodes->n;
        m->nodes = calloc((size_t)nodes->n + 1, sizeof *m->nodes);
        if (!m->nodes) rc = fail("out of memory");
    }
    for (int k = 0; rc == 0 && k < nodes->n; k++) rc = load_node(L, m, nodes->items[k], k, written);
    for (int k = 0; rc == 0 && k < m->num_outputs; k++) {
        int64_t id = outputs->items[k]->i;
        if (!written[id])
            rc = fail("%s: output '%s' is not written by any node", L->json_path,
                      m->outputs[k].name);
    }
    free(written);
    return rc;
}

NEO_API int neo_model_load(const char *dir, int num_threads, NeoModel **out) {
    return neo_model_load_ex(dir, num_threads, 0, out);
}

NEO_API int neo_model_load_ex(const char *dir, int num_threads, unsigned flags, NeoModel **out) {
    if (!dir || !out) return fail("neo_model_load: dir and out must not be NULL");
    *out = NULL;
    if (flags & ~NEO_LOAD_CHECKED)
        return fail("neo_model_load_ex: unknown flags 0x%x", flags & ~NEO_LOAD_CHECKED);
    struct stat st;
    if (stat(dir, &st) != 0) return fail("compiled artifact directory %s does not exist", dir);
    if (!S_ISDIR(st.st_mode)) return fail("compiled artifact %s is not a directory", dir);
    Loader L = {.dir = dir};
    if (file_missing(dir, "compiled_model.json", L.json_path, sizeof L.json_path)) return -1;
    NeoModel *m = calloc(1, sizeof *m);
    if (!m) return fail("out of memory loading %s", dir);
    m->flags = flags;
    atomic_init(&m->current, -1);
    size_t len = 0;
    int rc = read_text(L.json_path, &L.text, &len);
    if (rc == 0) {
        char err[256];
        JVal *root = json_parse(L.text, len, &L.arena, err, sizeof err);
        if (!root)
            rc = fail("%s: invalid JSON: %s", L.json_path, err);
        else if (root->type != J_OBJ)
            rc = fail("%s: the top level must be an object", L.json_path);
        else
            rc = load_graph(&L, m, root);
    }
    if (rc == 0 && !(m->pool = pool_create(num_threads))) rc = -1;
    arena_free(&L.arena);
    free(L.text);
    free(L.params);
    free(L.tensor_ptr);
    free(L.tensor_storage);
    free(L.view_of);
    free(L.ws_offset);
    free(L.ws_nbytes);
    if (rc) {
        char saved[sizeof g_error];
        memcpy(saved, g_error, sizeof saved); /* freeing must not clobber the message */
        neo_model_free(m);
        memcpy(g_error, saved, sizeof saved);
        return -1;
    }
    *out = m;
    return 0;
}

static void free_io(NeoIO *io, int n, bool own_buf) {
    for (int i = 0; io && i < n; i++) {
        free(io[i].name);
        free(io[i].shape);
        if (own_buf) free(io[i].own ? io[i].own : io[i].buf);
    }
    free(io);
}

NEO_API void neo_model_free(NeoModel *m) {
    if (!m) return;
    pool_destroy(m->pool);
    for (int i = 0; m->nodes && i < m->num_nodes; i++) {
        free(m->nodes[i].name);
        free(m->nodes[i].func);
        free(m->nodes[i].args);
        free(m->nodes[i].arg_tensor);
    }
    free(m->nodes);
    bool checked = m->flags & NEO_LOAD_CHECKED; /* then the I/O buffers are GuardBufs */
    free_io(m->inputs, m->num_inputs, !checked);
    free_io(m->outputs, m->num_outputs, !checked);
    if (m->workspace_map) munmap(m->workspace_map, m->workspace_map_size);
    else free(m->workspace);
    for (int b = 0; b < m->num_gbufs; b++) munmap(m->gbufs[b].map, m->gbufs[b].map_size);
    free(m->gbufs);
    for (int t = 0; m->tensor_names && t < m->num_tensors; t++) free(m->tensor_names[t]);
    free(m->tensor_names);
    free(m->tensor_gbuf);
    if (m->lib) dlclose(m->lib);
    if (m->params_map) munmap(m->params_map, m->params_map_size);
    free(m);
}

/* ---- queries, I/O and running ---- */

NEO_API int neo_model_num_inputs(const NeoModel *m) { return m ? m->num_inputs : -1; }
NEO_API int neo_model_num_outputs(const NeoModel *m) { return m ? m->num_outputs : -1; }
NEO_API int neo_model_num_nodes(const NeoModel *m) { return m ? m->num_nodes : -1; }
NEO_API int neo_model_num_threads(const NeoModel *m) { return m ? m->pool->n : -1; }

NEO_API const char *neo_model_node_name(const NeoModel *m, int i) {
    if (!m || i < 0 || i >= m->num_nodes) {
        fail("node index %d out of range", i);
        return NULL;
    }
    return m->nodes[i].name;
}

NEO_API const char *neo_model_node_func(const NeoModel *m, int i) {
    if (!m || i < 0 || i >= m->num_nodes) {
        fail("node index %d out of range", i);
        return NULL;
    }
    return m->nodes[i].func;
}

NEO_API unsigned neo_model_flags(const NeoModel *m) { return m ? m->flags : 0; }

NEO_API int neo_model_current_node(const NeoModel *m) {
    /* a lock-free atomic load: async-signal-safe; the cast only drops const for C11's signature */
    return m ? atomic_load_explicit(&((NeoModel *)m)->current, memory_order_relaxed) : -1;
}

static const NeoIO *io_at(const NeoModel *m, int i, bool is_in) {
    if (!m) {
        fail("model is NULL");
        return NULL;
    }
    int n = is_in ? m->num_inputs : m->num_outputs;
    if (i < 0 || i >= n) {
        fail("%s index %d out of range (the model has %d)", is_in ? "input" : "output", i, n);
        return NULL;
    }
    return is_in ? &m->inputs[i] : &m->outputs[i];
}

static int io_info(const NeoIO *io, const char **name, const char **dtype, int *ndim,
                   const int64_t **shape) {
    if (!io) return -1;
    if (name) *name = io->name;
    if (dtype) *dtype = DTYPES[io->dtype].name;
    if (ndim) *ndim = io->ndim;
    if (shape) *shape = io->shape;
    return 0;
}

NEO_API int neo_model_input_info(const NeoModel *m, int i, const char **name, const char **dtype,
                                 int *ndim, const int64_t **shape) {
    return io_info(io_at(m, i, true), name, dtype, ndim, shape);
}

NEO_API int neo_model_output_info(const NeoModel *m, int i, const char **name, const char **dtype,
                                  int *ndim, const int64_t **shape) {
    return io_info(io_at(m, i, false), name, dtype, ndim, shape);
}

/* Point input io's readers (the args of the nodes that read it) at `to` instead of io->buf. */
static void rebind_input(NeoModel *m, NeoIO *io, void *to) {
    if (io->buf == to) return;
    for (int i = 0; i < m->num_nodes; i++)
        for (int k = 0; k < m->nodes[i].num_in_args; k++)
            if (m->nodes[i].args[k] == io->buf) m->nodes[i].args[k] = to;
    io->buf = to;
}

NEO_API int neo_model_set_input_index(NeoModel *m, int i, const void *data, size_t nbytes) {
    NeoIO *io = (NeoIO *)io_at(m, i, true);
    if (!io) return -1;
    if (nbytes != io->nbytes)
        return fail("input '%s' needs %zu bytes (%s), got %zu", io->name, io->nbytes,
                    DTYPES[io->dtype].name, nbytes);
    if (nbytes && !data) return fail("input '%s': data is NULL", io->name);
    rebind_input(m, io, io->own);
    if (nbytes) memcpy(io->buf, data, nbytes);
    io->set = true;
    return 0;
}

NEO_API int neo_model_bind_input_index(NeoModel *m, int i, const void *data, size_t nbytes) {
    NeoIO *io = (NeoIO *)io_at(m, i, true);
    if (!io) return -1;
    /* checked mode keeps its guarded copy; an empty input has no bytes to share */
    if ((m->flags & NEO_LOAD_CHECKED) || nbytes == 0 || !data)
        return neo_model_set_input_index(m, i, data, nbytes);
    if (nbytes != io->nbytes)
        return fail("input '%s' needs %zu bytes (%s), got %zu", io->name, io->nbytes,
                    DTYPES[io->dtype].name, nbytes);
    rebind_input(m, io, (void *)data); /* kernels never write an input (the loader checks) */
    io->set = true;
    return 0;
}

NEO_API int neo_model_set_input(NeoModel *m, const char *name, const void *data, size_t nbytes) {
    if (!m || !name) return fail("neo_model_set_input: model and name must not be NULL");
    for (int i = 0; i < m->num_inputs; i++)
        if (strcmp(m->inputs[i].name, name) == 0)
            return neo_model_set_input_index(m, i, data, nbytes);
    char names[512] = "";
    for (int i = 0; i < m->num_inputs; i++) {
        size_t used = strlen(names);
        snprintf(names + used, sizeof names - used, "%s'%s'", i ? ", " : "", m->inputs[i].name);
    }
    return fail("the model has no input '%s' (inputs: %s)", name, names);
}

NEO_API int neo_model_get_output(const NeoModel *m, int i, void *data, size_t nbytes) {
    const NeoIO *io = io_at(m, i, false);
    if (!io) return -1;
    if (nbytes != io->nbytes)
        return fail("output '%s' has %zu bytes, the buffer has %zu", io->name, io->nbytes, nbytes);
    if (nbytes && !data) return fail("output '%s': data is NULL", io->name);
    if (nbytes) memcpy(data, io->buf, nbytes);
    return 0;
}

NEO_API const void *neo_model_output_ptr(const NeoModel *m, int i) {
    const NeoIO *io = io_at(m, i, false);
    return io ? io->buf : NULL;
}

NEO_API int neo_model_set_num_threads(NeoModel *m, int n) {
    if (!m) return fail("model is NULL");
    int want = n <= 0 ? available_cpus() : n;
    if (want > POOL_MAX_THREADS) want = POOL_MAX_THREADS;
    if (want == m->pool->n) return 0;
    NeoPool *p = pool_create(want);
    if (!p) return -1;
    pool_destroy(m->pool);
    m->pool = p;
    return 0;
}

static int run_nodes(NeoModel *m, double *node_seconds) {
    if (!m) return fail("model is NULL");
    for (int i = 0; i < m->num_inputs; i++)
        if (!m->inputs[i].set) return fail("input '%s' was not set before run", m->inputs[i].name);
    bool checked = m->flags & NEO_LOAD_CHECKED;
    if (checked) /* 0xFF bytes are NaN in every float type: reads of unwritten memory show */
        for (int b = 0; b < m->num_gbufs; b++)
            if (m->gbufs[b].kind != 'i') memset(m->gbufs[b].data, 0xFF, m->gbufs[b].nbytes);
    int rc = 0;
    for (int i = 0; i < m->num_nodes && rc == 0; i++) {
        NeoNode *n = &m->nodes[i];
        atomic_store_explicit(&m->current, i, memory_order_relaxed);
        double t0 = node_seconds ? now_seconds() : 0.0;
        int task = 0;
        int32_t krc = n->parallel ? pool_run(m->pool, n->fn, n->args, &task) : n->fn(n->args, 0, 1);
        if (node_seconds) node_seconds[i] += now_seconds() - t0;
        if (checked) rc = check_guards(m, n); /* damage is worse news than a failure code */
        if (rc == 0 && krc == NEO_KERNEL_AMX_DENIED)
            rc = fail("node '%s' (kernel %s) uses AMX, which the operating system refused this "
                      "process (arch_prctl ARCH_REQ_XCOMP_PERM; Linux grants it since 5.16): "
                      "compile for a target without AMX, e.g. --target ml_c5", n->name, n->func);
        else if (rc == 0 && krc != 0)
            rc = fail("node '%s' (kernel %s) failed with code %d in task %d", n->name, n->func,
                      (int)krc, task);
    }
    atomic_store_explicit(&m->current, -1, memory_order_relaxed);
    return rc;
}

NEO_API int neo_model_run(NeoModel *m) { return run_nodes(m, NULL); }

NEO_API int64_t neo_model_row_batch(const NeoModel *m) { return m ? m->row_batch : 0; }

/* bytes of one row of an input or output (all but its leading axis) */
static size_t row_bytes(const NeoIO *io) {
    return io->shape[0] ? io->nbytes / (size_t)io->shape[0] : 0;
}

NEO_API int neo_model_run_rows(NeoModel *m, int64_t rows, const void *const *inputs,
                               void *const *outputs) {
    if (!m) return fail("model is NULL");
    if (!m->row_batch)
        return fail("this model does not take batches of independent rows (it runs exactly the "
                    "shapes it was compiled for)");
    if (rows < 0) return fail("rows must not be negative, got %lld", (long long)rows);
    if (rows && (!inputs || !outputs)) return fail("neo_model_run_rows: NULL inputs or outputs");
    int64_t n = m->row_batch;
    for (int i = 0; i < m->num_inputs; i++) rebind_input(m, &m->inputs[i], m->inputs[i].own);
    for (int64_t done = 0; done < rows; done += n) {
        int64_t take = rows - done < n ? rows - done : n;
        for (int i = 0; i < m->num_inputs; i++) {
            NeoIO *io = &m->inputs[i];
            size_t rb = row_bytes(io);
            if (!inputs[i]) return fail("input '%s': data is NULL", io->name);
            memcpy(io->buf, (const char *)inputs[i] + (size_t)done * rb, (size_t)take * rb);
            /* the rows past the last one repeat it: valid values, whatever the model computes */
            for (int64_t r = take; r < n; r++)
                memcpy((char *)io->buf + (size_t)r * rb, (char *)io->buf + (size_t)(take - 1) * rb,
                       rb);
            io->set = true;
        }
        int rc = run_nodes(m, NULL);
        if (rc) return rc;
        for (int i = 0; i < m->num_outputs; i++) {
            const NeoIO *io = &m->outputs[i];
            size_t rb = row_bytes(io);
            if (!outputs[i]) return fail("output '%s': data is NULL", io->name);
            memcpy((char *)outputs[i] + (size_t)done * rb, io->buf, (size_t)take * rb);
        }
    }
    return 0;
}

NEO_API int neo_model_profile(NeoModel *m, int repeat, double *node_seconds) {
    if (!m || !node_seconds)
        return fail("neo_model_profile: model and node_seconds must not be NULL");
    if (repeat <= 0) return fail("neo_model_profile: repeat must be positive, got %d", repeat);
    for (int i = 0; i < m->num_nodes; i++) node_seconds[i] = 0.0;
    for (int r = 0; r < repeat; r++)
        if (run_nodes(m, node_seconds)) return -1;
    for (int i = 0; i < m->num_nodes; i++) node_seconds[i] /= repeat;
    return 0;
}
