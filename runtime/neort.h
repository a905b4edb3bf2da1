/* neort.h - public C API of the neo runtime (libneort.so).
 *
 * The runtime loads a compiled artifact directory (format v1, docs/ARTIFACT_FORMAT.md): it parses
 * compiled_model.json, maps and verifies compiled.params, dlopen()s compiled.so and runs the nodes
 * in order through a persistent thread pool. The API follows the shape of DLR: load, set inputs,
 * run, read outputs.
 *
 * Conventions:
 *   - Every int-returning function returns 0 on success and non-zero on failure; after a failure
 *     neo_last_error() returns a one-line message naming the file or object and what is wrong.
 *   - Names, dtypes and shapes returned by the *_info functions belong to the model and stay valid
 *     until neo_model_free().
 *   - A NeoModel is not safe to use from several threads at once; different models are independent.
 *   - dtype names are numpy's: float32 float64 float16 bfloat16 int8 uint8 int16 uint16 int32
 *     uint32 int64 uint64 bool.
 */
#ifndef NEORT_H
#define NEORT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The compiled_model.json "format_version" this runtime reads. */
#define NEO_FORMAT_VERSION 1
/* Version of this C API and of the kernel calling convention. */
#define NEO_RUNTIME_ABI_VERSION 1

#if defined(__GNUC__) || defined(__clang__)
#define NEO_API __attribute__((visibility("default")))
#else
#define NEO_API
#endif

typedef struct NeoModel NeoModel;

/* The kernel ABI: args are the node's tensor pointers (inputs, outputs, scratch); the kernel does
 * its static share of the work for `task` out of `num_tasks` and returns 0 on success. */
typedef int32_t (*NeoKernelFn)(void **args, int32_t task, int32_t num_tasks);

/* Runtime version string, e.g. "0.1.0". */
NEO_API const char *neo_runtime_version(void);

/* The arch this runtime was built for, as artifacts name it ("x86_64", "aarch64", "riscv64", ...);
 * it loads only artifacts of that arch. */
NEO_API const char *neo_runtime_arch(void);

/* Message of the last failure on the calling thread ("" when there was none). */
NEO_API const char *neo_last_error(void);

/* Load the artifact in directory `dir`. num_threads <= 0 uses all CPUs available to the process.
 * On success *out receives the model, to be released with neo_model_free().
 * Same as neo_model_load_ex(dir, num_threads, 0, out). */
NEO_API int neo_model_load(const char *dir, int num_threads, NeoModel **out);

/* Flags of neo_model_load_ex(). */
/* Checked mode, for finding kernels that write out of bounds (slower; for debugging):
 *   - every input, output and workspace storage gets its own mapping instead of the shared arena:
 *     a no-access page, NEO_GUARD_BYTES of a known pattern, the tensor (64-byte aligned, the
 *     pattern again right after its last byte up to the next page), a no-access page;
 *   - workspace storages and outputs are filled with 0xFF bytes (NaN for float types) before
 *     every run, so reads of memory no kernel wrote show up;
 *   - after every node (all its tasks) the guards of every buffer are verified; a damaged guard
 *     makes neo_model_run() fail with a message naming the kernel, its node and the buffer, e.g.
 *     "checked mode: kernel neo_k3_conv2d (node conv_3) wrote 12 bytes past the end of buffer
 *     'relu_2' (storage 4, 4096 bytes)", and the guards are restored.
 * Params are always mapped read-only, so a write to one faults in either mode; so does an access
 * beyond the guard bytes in checked mode. */
#define NEO_LOAD_CHECKED 0x1u
#define NEO_GUARD_BYTES 1024

/* What a kernel built for x86 AMX (int8 convolutions for a CPU with AMX-INT8, e.g. --target host
 * on a Sapphire Rapids) returns where the operating system refuses the process the tile state
 * (Linux grants it on request since 5.16; the first such kernel asks). neo_model_run() then fails
 * with a message saying so. */
#define NEO_KERNEL_AMX_DENIED 0x414D58

/* neo_model_load() with flags (NEO_LOAD_*; unknown bits are an error). */
NEO_API int neo_model_load_ex(const char *dir, int num_threads, unsigned flags, NeoModel **out);

/* The flags the model was loaded with. */
NEO_API unsigned neo_model_flags(const NeoModel *m);

/* Release everything the model owns (threads, buffers, mappings, library). NULL is allowed. */
NEO_API void neo_model_free(NeoModel *m);

NEO_API int neo_model_num_inputs(const NeoModel *m);
NEO_API int neo_model_num_outputs(const NeoModel *m);

/* Describe input/output i; any out-pointer may be NULL. */
NEO_API int neo_model_input_info(const NeoModel *m, int i, const char **name, const char **dtype,
                                 int *ndim, const int64_t **shape);
NEO_API int neo_model_output_info(const NeoModel *m, int i, const char **name, const char **dtype,
                                  int *ndim, const int64_t **shape);

/* Copy an input (C order, the model's dtype) into the model. nbytes must equal the input's size.
 * Inputs keep their value across runs until set again. */
NEO_API int neo_model_set_input(NeoModel *m, const char *name, const void *data, size_t nbytes);
NEO_API int neo_model_set_input_index(NeoModel *m, int i, const void *data, size_t nbytes);

/* Let the model read input i from the caller's memory (C order, the model's dtype, nbytes equal
 * to the input's size; any alignment) instead of copying it: no copy, and the bytes stay where
 * the caller's cache has them. Kernels never write an input. The memory must stay valid and
 * unchanged until the last run that reads it returns; neo_model_set_input*() or
 * neo_model_run_rows() go back to the model's own buffer. In checked mode (guarded buffers)
 * this copies, as neo_model_set_input_index() does. */
NEO_API int neo_model_bind_input_index(NeoModel *m, int i, const void *data, size_t nbytes);

/* Run all nodes in order. Fails if an input was never set or a kernel returns non-zero. */
NEO_API int neo_model_run(NeoModel *m);

/* Copy output i out of the model; nbytes must equal the output's size. */
NEO_API int neo_model_get_output(const NeoModel *m, int i, void *data, size_t nbytes);

/* The model's own buffer of output i (64-byte aligned); valid until the next run or free.
 * NULL on error. */
NEO_API const void *neo_model_output_ptr(const NeoModel *m, int i);

/* Resize the thread pool; n <= 0 uses all CPUs. Parallel kernels are split into that many tasks. */
NEO_API int neo_model_set_num_threads(NeoModel *m, int n);
NEO_API int neo_model_num_threads(const NeoModel *m);

/* Run the model `repeat` times, timing each node; node_seconds[i] (num_nodes entries) receives
 * the mean wall-clock seconds of node i per run. */
NEO_API int neo_model_profile(NeoModel *m, int repeat, double *node_seconds);
NEO_API int neo_model_num_nodes(const NeoModel *m);
NEO_API const char *neo_model_node_name(const NeoModel *m, int i);
/* Models whose every input and output has a leading axis of independent rows (tree ensembles:
 * compiled_model.json "row_batch") run any number of rows, not only the compiled batch:
 * neo_model_row_batch() is the compiled batch (0 for other models), and neo_model_run_rows()
 * runs `rows` rows in chunks of it (the last one padded), from inputs[i] (rows x one input row)
 * into outputs[i] (rows x one output row), both in input/output index order. */
NEO_API int64_t neo_model_row_batch(const NeoModel *m);
NEO_API int neo_model_run_rows(NeoModel *m, int64_t rows, const void *const *inputs,
                               void *const *outputs);

/* The kernel function (compiled.so symbol) node i calls. */
NEO_API const char *neo_model_node_func(const NeoModel *m, int i);

/* The index of the node whose kernel is running now (-1 outside a run). For crash reports: with
 * a valid model this, neo_model_node_name() and neo_model_node_func() on a valid index are
 * async-signal-safe, so a SIGSEGV handler may call them to name the kernel that faulted (neo-run
 * does). */
NEO_API int neo_model_current_node(const NeoModel *m);

#ifdef __cplusplus
}
#endif

#endif /* NEORT_H */
