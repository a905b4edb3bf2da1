/* neo_run.c - `neo-run`, the command-line runner shipped in every compiled artifact.
 *
 *   neo-run DIR [--threads N] [--repeat N] [--warmup N] [--input NAME=FILE.npy]...
 *               [--input-index I=FILE.npy]... [--outdir OUT] [--check]
 *
 * Reads inputs from .npy files (v1/v2/v3 headers, little-endian, C order; dtype and shape must
 * equal the model's), runs the model, writes OUT/output_<i>.npy, and with --repeat prints one JSON
 * line of timings. --check loads the model in checked mode (NEO_LOAD_CHECKED: guard bytes around
 * every buffer, verified after every kernel). Built for the target (`neo run` runs it, under qemu
 * for foreign targets); uses only the public API in neort.h.
 *
 * Errors are one line on stderr starting "neo-run: ", exit status 1. A fatal signal in a kernel
 * prints "neo-run: kernel FUNC (node NAME) crashed with SIGSEGV in DIR; ..." and then dies of
 * that signal.
 */
#define _XOPEN_SOURCE 700 /* sigaction's SA_NODEFER and SA_ONSTACK, sigaltstack */
#include "neort.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *USAGE =
    "usage: neo-run DIR [--threads N] [--repeat N] [--warmup N] [--input NAME=FILE.npy]...\n"
    "               [--input-index I=FILE.npy]... [--outdir OUT] [--check]\n";

/* npy descr of each dtype name; 1-byte types use '|' as numpy writes them */
static const struct { const char *dtype, *descr; size_t size; } NPY[] = {
    {"float32", "<f4", 4}, {"float64", "<f8", 8}, {"float16", "<f2", 2}, {"bfloat16", "<u2", 2},
    {"int8", "|i1", 1},    {"uint8", "|u1", 1},   {"int16", "<i2", 2},   {"uint16", "<u2", 2},
    {"int32", "<i4", 4},   {"uint32", "<u4", 4},  {"int64", "<i8", 8},   {"uint64", "<u8", 8},
    {"bool", "|b1", 1},
};

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("neo-run: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static int npy_index(const char *dtype) {
    for (size_t i = 0; i < sizeof NPY / sizeof NPY[0]; i++)
        if (strcmp(NPY[i].dtype, dtype) == 0) return (int)i;
    return -1;
}

/* does an npy descr denote this dtype? accepts '<', '=' (hosts are little-endian) and '|' */
static int descr_matches(const char *descr, const char *dtype) {
    int k = npy_index(dtype);
    if (k < 0 || strlen(descr) != 3 || !strchr("<=|", descr[0])) return 0;
    if (strcmp(descr + 1, NPY[k].descr + 1) == 0) return 1;
    /* bfloat16 arrays saved by numpy + ml_dtypes carry the opaque descr 'V2' */
    return strcmp(dtype, "bfloat16") == 0 && strcmp(descr + 1, "V2") == 0;
}

typedef struct {
    char descr[16];
    int fortran;
    int ndim;
    int64_t shape[32];
    unsigned char *file; /* whole file; data starts at file + data_off */
    size_t size, data_off;
} Npy;

static const char *skip_ws(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\n') p++;
    return p;
}

/* parse the python-literal dict of an npy header: {'descr': '<f4', 'fortran_order': False, ...} */
static int parse_header(const char *h, Npy *a) {
    int seen = 0;
    const char *p = skip_ws(h);
    if (*p++ != '{') return -1;
    for (;;) {
        p = skip_ws(p);
        if (*p == '}') break;
        char q = *p++, key[32];
        size_t n = 0;
        if (q != '\'' && q != '"') return -1;
        while (*p && *p != q && n < sizeof key - 1) key[n++] = *p++;
        key[n] = '\0';
        if (*p++ != q) return -1;
        p = skip_ws(p);
        if (*p++ != ':') return -1;
        p = skip_ws(p);
        if (strcmp(key, "descr") == 0) {
            q = *p++;
            n = 0;
            if (q != '\'' && q != '"') return -1; /* a list would be a structured dtype */
            while (*p && *p != q && n < sizeof a->descr - 1) a->descr[n++] = *p++;
            a->descr[n] = '\0';
            if (*p++ != q) return -1;
            seen |= 1;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (strncmp(p, "True", 4) == 0) a->fortran = 1, p += 4;
            else if (strncmp(p, "False", 5) == 0) a->fortran = 0, p += 5;
            else return -1;
            seen |= 2;
        } else if (strcmp(key, "shape") == 0) {
            if (*p++ != '(') return -1;
            a->ndim = 0;
            for (;;) {
                p = skip_ws(p);
                if (*p == ')') { p++; break; }
                char *end;
                long long d = strtoll(p, &end, 10);
                if (end == p || d < 0 || a->ndim >= 32) return -1;
                a->shape[a->ndim++] = d;
                p = skip_ws(end);
                if (*p == 'L') p++; /* python 2 longs */
                p = skip_ws(p);
                if (*p == ',') p++;
                else if (*p != ')') return -1;
            }
            seen |= 4;
        } else {
            return -1;
        }
        p = skip_ws(p);
        if (*p == ',') p++;
        else if (*p != '}') return -1;
    }
    return seen == 7 ? 0 : -1;
}

static void npy_read(const char *path, Npy *a) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0, got;
    unsigned char *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            unsigned char *nb = realloc(buf, cap *= 2);
            if (!nb) free(buf);
            buf = nb;
        }
    }
    fclose(f);
    if (!buf) die("out of memory reading %s", path);
    memset(a, 0, sizeof *a);
    a->file = buf;
    a->size = n;
    if (n < 10 || memcmp(buf, "\x93NUMPY", 6) != 0) die("%s is not a .npy file", path);
    int major = buf[6];
    size_t hlen, hstart;
    if (major == 1) {
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (n < 12) die("%s: truncated .npy header", path);
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
        hstart = 12;
    } else {
        die("%s: unsupported .npy version %d", path, major);
    }
    if (hlen > n - hstart) die("%s: truncated .npy header", path);
    char *h = malloc(hlen + 1);
    if (!h) die("out of memory reading %s", path);
    memcpy(h, buf + hstart, hlen);
    h[hlen] = '\0';
    if (parse_header(h, a) != 0) die("%s: cannot parse the .npy header: %s", path, h);
    free(h);
    a->data_off = hstart + hlen;
}

/* Rows of a row-batch model's inputs when they differ from the compiled batch (then the run goes
 * through neo_model_run_rows); -1 while no input has set it. */
static int64_t g_rows = -1;
static const void **g_row_inputs;

static void load_input(NeoModel *m, int i, const char *path) {
    const char *name, *dtype;
    int ndim;
    const int64_t *shape;
    if (neo_model_input_info(m, i, &name, &dtype, &ndim, &shape) != 0) die("%s", neo_last_error());
    Npy a;
    npy_read(path, &a);
    if (!descr_matches(a.descr, dtype))
        die("%s: dtype '%s' does not match input '%s' (%s)", path, a.descr, name, dtype);
    int same = a.ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = a.shape[d] == shape[d];
    size_t nbytes = NPY[npy_index(dtype)].size;
    for (int d = 0; d < ndim; d++) nbytes *= (size_t)shape[d];
    /* a model of independent rows takes any number of rows: the rest of the shape must match */
    int rows_only = !same && neo_model_row_batch(m) > 0 && a.ndim == ndim && ndim >= 1;
    for (int d = 1; rows_only && d < ndim; d++) rows_only = a.shape[d] == shape[d];
    if (rows_only) {
        if (g_rows >= 0 && g_rows != a.shape[0])
            die("%s: %lld rows, but another input has %lld", path, (long long)a.shape[0],
                (long long)g_rows);
        if (a.fortran && ndim > 1) die("%s: Fortran-order arrays are not supported", path);
        size_t want = nbytes / (size_t)shape[0] * (size_t)a.shape[0];
        if (a.size - a.data_off != want)
            die("%s: holds %zu data bytes, %lld rows of input '%s' need %zu", path,
                a.size - a.data_off, (long long)a.shape[0], name, want);
        g_rows = a.shape[0];
        if (!g_row_inputs && !(g_row_inputs = calloc((size_t)neo_model_num_inputs(m),
                                                     sizeof *g_row_inputs)))
            die("out of memory");
        g_row_inputs[i] = a.file + a.data_off; /* kept until the run */
        return;
    }
    if (!same) {
        char want[256] = "", got[256] = "";
        for (int d = 0; d < ndim; d++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? ", " : "",
                     (long long)shape[d]);
        for (int d = 0; d < a.ndim; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "",
                     (long long)a.shape[d]);
        die("%s: shape (%s) does not match input '%s' (%s)", path, got, name, want);
    }
    int nontrivial = 0;
    for (int d = 0; d < ndim; d++) nontrivial += shape[d] > 1;
    if (a.fortran && nontrivial > 1) die("%s: Fortran-order arrays are not supported", path);
    if (a.size - a.data_off != nbytes)
        die("%s: holds %zu data bytes, input '%s' needs %zu", path, a.size - a.data_off, name,
            nbytes);
    if (neo_model_set_input_index(m, i, a.file + a.data_off, nbytes) != 0)
        die("%s", neo_last_error());
    free(a.file);
}

/* bytes of output i, with `rows` leading rows instead of the compiled ones when rows >= 0 */
static size_t output_bytes(const NeoModel *m, int i, int64_t rows) {
    const char *dtype;
    int ndim;
    const int64_t *shape;
    if (neo_model_output_info(m, i, NULL, &dtype, &ndim, &shape) != 0) die("%s", neo_last_error());
    int k = npy_index(dtype);
    size_t nbytes = k < 0 ? 0 : NPY[k].size;
    for (int d = 0; d < ndim; d++) nbytes *= (size_t)(d == 0 && rows >= 0 ? rows : shape[d]);
    return nbytes;
}

static void write_output(const NeoModel *m, int i, const char *outdir, const void *rows_data,
                         int64_t rows) {
    const char *name, *dtype;
    int ndim;
    const int64_t *shape;
    if (neo_model_output_info(m, i, &name, &dtype, &ndim, &shape) != 0) die("%s", neo_last_error());
    int k = npy_index(dtype);
    if (k < 0) die("output '%s' has unsupported dtype %s", name, dtype);
    size_t nbytes = NPY[k].size;
    char dict[8192]; /* 255 dims of 20 digits fit */
    int len = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                       NPY[k].descr);
    for (int d = 0; d < ndim; d++) {
        int64_t dim = d == 0 && rows_data ? rows : shape[d];
        nbytes *= (size_t)dim;
        len += snprintf(dict + len, sizeof dict - (size_t)len, "%lld%s", (long long)dim,
                        ndim == 1 ? "," : d + 1 < ndim ? ", " : "");
    }
    len += snprintf(dict + len, sizeof dict - (size_t)len, "), }");
    /* pad with spaces so that magic + length + header + '\n' is a multiple of 64, like numpy */
    size_t total = (10 + (size_t)len + 1 + 63) / 64 * 64;
    char header[8192 + 128];
    memcpy(header, "\x93NUMPY\x01\x00", 8);
    size_t hlen = total - 10;
    header[8] = (char)(hlen & 0xFF);
    header[9] = (char)(hlen >> 8);
    memcpy(header + 10, dict, (size_t)len);
    memset(header + 10 + len, ' ', hlen - (size_t)len - 1);
    header[total - 1] = '\n';

    char path[4096];
    snprintf(path, sizeof path, "%s/output_%d.npy", outdir, i);
    FILE *f = fopen(path, "wb");
    if (!f) die("cannot create %s: %s", path, strerror(errno));
    const void *data = rows_data ? rows_data : neo_model_output_ptr(m, i);
    if (!data) die("%s", neo_last_error());
    if (fwrite(header, 1, total, f) != total || fwrite(data, 1, nbytes, f) != nbytes ||
        fclose(f) != 0)
        die("cannot write %s", path);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---- crash reports: name the kernel a fatal signal hit, with async-signal-safe calls only ---- */

static NeoModel *g_model;
static const char *g_dir;
static int g_checked;
static atomic_flag g_crashing = ATOMIC_FLAG_INIT; /* lock-free, so usable in a handler */

static void put(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, s, n);
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

static void on_fatal_signal(int sig) {
    /* every task of a kernel may fault at once: the first thread reports and ends the process,
     * the others wait for that */
    if (atomic_flag_test_and_set(&g_crashing))
        for (;;) pause();
    const char *name = sig == SIGSEGV ? "SIGSEGV" : sig == SIGBUS ? "SIGBUS"
                     : sig == SIGFPE  ? "SIGFPE"  : "SIGILL";
    int i = g_model ? neo_model_current_node(g_model) : -1;
    if (i >= 0) {
        put("neo-run: kernel ");
        put(neo_model_node_func(g_model, i));
        put(" (node ");
        put(neo_model_node_name(g_model, i));
        put(") crashed with ");
        put(name);
        put(" in ");
        put(g_dir);
        put(g_checked ? " (checked mode: an access beyond the guard bytes or to read-only memory)\n"
                      : "; rerun with --check to find an out-of-bounds write\n");
    } else {
        put("neo-run: crashed with ");
        put(name);
        put(" outside the kernels\n");
    }
    /* the default action, let through at once by SA_NODEFER: die of the signal */
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_crash_handler(void) {
    /* an alternate stack for the main thread, so a kernel's stack overflow is reported too */
    static char altstack[65536];
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
    sigaltstack(&ss, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal_signal;
    sa.sa_flags = SA_NODEFER | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    const int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};
    for (size_t k = 0; k < sizeof sigs / sizeof sigs[0]; k++) sigaction(sigs[k], &sa, NULL);
}

static int parse_int(const char *s, const char *opt) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < 0 || v > 1000000000)
        die("%s needs a non-negative integer, got '%s'", opt, s);
    return (int)v;
}

int main(int argc, char **argv) {
    const char *dir = NULL, *outdir = NULL;
    int threads = 0, repeat = 0, warmup = 0, nspecs = 0, check = 0;
    struct { const char *key, *file; int by_index; } *specs = calloc((size_t)argc, sizeof *specs);
    if (!specs) die("out of memory");
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            fputs(USAGE, stdout);
            return 0;
        }
        if (strncmp(arg, "--", 2) != 0) {
            if (dir) die("unexpected argument '%s'\n%s", arg, USAGE);
            dir = arg;
            continue;
        }
        if (!strcmp(arg, "--check")) {
            check = 1;
            continue;
        }
        if (i + 1 >= argc) die("%s needs a value\n%s", arg, USAGE);
        const char *val = argv[++i];
        if (!strcmp(arg, "--threads")) threads = parse_int(val, arg);
        else if (!strcmp(arg, "--repeat")) repeat = parse_int(val, arg);
        else if (!strcmp(arg, "--warmup")) warmup = parse_int(val, arg);
        else if (!strcmp(arg, "--outdir")) outdir = val;
        else if (!strcmp(arg, "--input") || !strcmp(arg, "--input-index")) {
            const char *eq = strchr(val, '=');
            if (!eq || eq == val || !eq[1]) die("%s expects KEY=FILE.npy, got '%s'", arg, val);
            char *key = malloc((size_t)(eq - val) + 1);
            if (!key) die("out of memory");
            memcpy(key, val, (size_t)(eq - val));
            key[eq - val] = '\0';
            specs[nspecs].key = key;
            specs[nspecs].file = eq + 1;
            specs[nspecs++].by_index = arg[7] == '-';
        } else {
            die("unknown option '%s'\n%s", arg, USAGE);
        }
    }
    if (!dir) die("missing the artifact directory\n%s", USAGE);

    NeoModel *m = NULL;
    if (neo_model_load_ex(dir, threads, check ? NEO_LOAD_CHECKED : 0, &m) != 0)
        die("%s", neo_last_error());
    g_model = m;
    g_dir = dir;
    g_checked = check;
    install_crash_handler();
    for (int s = 0; s < nspecs; s++) {
        int idx = -1;
        if (specs[s].by_index) {
            idx = parse_int(specs[s].key, "--input-index");
            if (idx >= neo_model_num_inputs(m))
                die("--input-index %d: the model has %d inputs", idx, neo_model_num_inputs(m));
        } else {
            for (int i = 0; i < neo_model_num_inputs(m); i++) {
                const char *name;
                neo_model_input_info(m, i, &name, NULL, NULL, NULL);
                if (!strcmp(name, specs[s].key)) idx = i;
            }
            if (idx < 0) {
                /* let the runtime phrase the error: it lists the expected names */
                neo_model_set_input(m, specs[s].key, NULL, 0);
                die("%s", neo_last_error());
            }
        }
        load_input(m, idx, specs[s].file);
    }

    /* a row-batch model given another number of rows: every input must have been given so */
    void **row_outputs = NULL;
    if (g_rows >= 0) {
        for (int i = 0; i < neo_model_num_inputs(m); i++)
            if (!g_row_inputs[i])
                die("every input of a row-batch model needs the same number of rows (%lld)",
                    (long long)g_rows);
        int nout = neo_model_num_outputs(m);
        if (!(row_outputs = calloc((size_t)nout + 1, sizeof *row_outputs))) die("out of memory");
        for (int i = 0; i < nout; i++)
            if (!(row_outputs[i] = malloc(output_bytes(m, i, g_rows) + 1))) die("out of memory");
    }
    for (int r = 0; r < warmup; r++)
        if ((g_rows >= 0 ? neo_model_run_rows(m, g_rows, g_row_inputs, row_outputs)
                         : neo_model_run(m)) != 0)
            die("%s", neo_last_error());
    int runs = repeat > 0 ? repeat : 1;
    double *ms = malloc(sizeof(double) * (size_t)runs);
    if (!ms) die("out of memory");
    for (int r = 0; r < runs; r++) {
        double t0 = now_ms();
        if ((g_rows >= 0 ? neo_model_run_rows(m, g_rows, g_row_inputs, row_outputs)
                         : neo_model_run(m)) != 0)
            die("%s", neo_last_error());
        ms[r] = now_ms() - t0;
    }
    if (outdir) {
        if (mkdir(outdir, 0777) != 0 && errno != EEXIST)
            die("cannot create %s: %s", outdir, strerror(errno));
        for (int i = 0; i < neo_model_num_outputs(m); i++)
            write_output(m, i, outdir, row_outputs ? row_outputs[i] : NULL, g_rows);
    }
    if (repeat > 0) {
        qsort(ms, (size_t)runs, sizeof *ms, cmp_double);
        double median = runs % 2 ? ms[runs / 2] : (ms[runs / 2 - 1] + ms[runs / 2]) / 2;
        int p90 = (runs * 9 + 9) / 10 - 1; /* nearest rank: ceil(0.9 n) - 1 */
        printf("{\"median_ms\": %.6f, \"p90_ms\": %.6f, \"min_ms\": %.6f, \"runs\": %d}\n", median,
               ms[p90], ms[0], runs);
    }
    free(ms);
    for (int s = 0; s < nspecs; s++) free((void *)specs[s].key);
    free(specs);
    g_model = NULL;
    neo_model_free(m);
    return 0;
}
