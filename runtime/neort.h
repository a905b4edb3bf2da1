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

/* Message of the last failure on the calling thread ("" when there was none). */
NEO_API const char *neo_last_error(void);

/* Load the artifact in directory `dir`. num_threads <= 0 uses all CPUs available to the process.
 * On success *out receives the model, to be released with neo_model_free(). */
NEO_API int neo_model_load(const char *dir, int num_threads, NeoModel **out);

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

#ifdef __cplusplus
}
#endif

#endif /* NEORT_H */
