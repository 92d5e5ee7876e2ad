/*
 * cbridge.h: the plain C ABI that modelstitch's Go binding uses to reach libtorch.
 *
 * Rules (see docs/architecture.md, "The C ABI"):
 *  - Every symbol starts with tb_. Only opaque handles, integers, doubles and C
 *    strings cross the boundary; no torch type appears here.
 *  - Every fallible function returns a tb_error (NULL on success) and writes its
 *    results to out-parameters. No C++ exception ever escapes.
 *  - Tensor handles are owned by the caller and released with tb_tensor_free.
 *  - Lists are passed as pointer + length.
 */
#ifndef MODELSTITCH_CBRIDGE_H
#define MODELSTITCH_CBRIDGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_tensor_s* tb_tensor;
typedef struct tb_error_s* tb_error;
typedef struct tb_generator_s* tb_generator;
typedef struct tb_guard_s* tb_guard;

/* Error codes carried by tb_error. */
enum {
  TB_ERR_OTHER = 1,
  TB_ERR_OOM = 2,
  TB_ERR_INDEX = 3,
  TB_ERR_TYPE = 4,
  TB_ERR_VALUE = 5,
  TB_ERR_NOT_IMPLEMENTED = 6,
  TB_ERR_NO_CUDA = 7
};

/* Device types. */
enum { TB_CPU = 0, TB_CUDA = 1 };

int tb_error_code(tb_error e);
const char* tb_error_message(tb_error e);
void tb_error_free(tb_error e);

/* ---- runtime ---- */
void tb_set_num_threads(int n);
int tb_get_num_threads(void);
/* The calling OS thread's own intra-op thread count (n ≥ 1), overriding
   tb_set_num_threads on this thread only; n = 0 returns it to the common one. */
void tb_set_thread_threads(int n);
tb_error tb_manual_seed(uint64_t seed);
int tb_cuda_available(void);
int tb_cuda_device_count(void);
int tb_built_with_cuda(void);
tb_error tb_cuda_synchronize(int device);
tb_error tb_cuda_empty_cache(void);
tb_error tb_cuda_memory_allocated(int device, int64_t* out);
/* Number of tensor handles alive (made and not yet freed). */
int64_t tb_live_tensors(void);
/* Returns unused heap pages to the OS (glibc malloc_trim). */
void tb_malloc_trim(void);
/* Sets glibc malloc's M_ARENA_MAX (the number of heaps threads share);
   returns 1 on success, 0 when refused or not glibc. */
int tb_malloc_set_arena_max(int64_t n);
/* Sets glibc malloc's M_MMAP_THRESHOLD, M_TRIM_THRESHOLD and M_TOP_PAD (bytes);
   returns 1 when all were accepted, 0 otherwise (or when the C library is not glibc). */
int tb_malloc_set_thresholds(int64_t mmap_threshold, int64_t trim_threshold, int64_t top_pad);
const char* tb_torch_version(void);
/* Sets whether CUDA convolutions (cuDNN) and matrix products (cuBLAS) may use
   TF32; returns the previous cuDNN setting. */
int tb_set_allow_tf32(int allow);

/* Grad mode and inference mode for the calling OS thread. */
void tb_set_grad_enabled(int enabled);
int tb_is_grad_enabled(void);
tb_error tb_inference_mode_enter(tb_guard* out);
void tb_guard_free(tb_guard g);

/* Generators: seedable random streams (device CPU or CUDA). */
tb_error tb_generator_new(uint64_t seed, int device_type, int device_index, tb_generator* out);
void tb_generator_free(tb_generator g);
// The state of a device's default generator (the one torch.manual_seed
// seeds) as a uint8 tensor, and setting it back (torch.get_rng_state /
// torch.set_rng_state).
tb_error tb_rng_get_state(int device_type, int device_index, tb_tensor* out);
tb_error tb_rng_set_state(int device_type, int device_index, tb_tensor state);

/* ---- tensor basics ---- */
void tb_tensor_free(tb_tensor t);
tb_error tb_tensor_info(tb_tensor t, int* dtype, int* device_type, int* device_index,
                        int* ndim, int* requires_grad, int* is_leaf, int64_t* numel);
/* shape must have room for ndim entries (at most 16). */
tb_error tb_tensor_shape(tb_tensor t, int64_t* shape);
tb_error tb_tensor_defined(tb_tensor t, int* out);

/* Copies nbytes from data (a C-contiguous buffer of dtype) into a new CPU tensor. */
tb_error tb_from_data(const void* data, const int64_t* shape, int ndim, int dtype, tb_tensor* out);
/* Copies the tensor's contents (moved to CPU, made contiguous) into dst (nbytes long). */
tb_error tb_copy_to(tb_tensor t, void* dst, int64_t nbytes);
tb_error tb_item_double(tb_tensor t, double* out);
tb_error tb_item_int64(tb_tensor t, int64_t* out);

tb_error tb_full(const int64_t* shape, int ndim, double value, int dtype, int device_type,
                 int device_index, tb_tensor* out);
/* Random draws: new tensors (tb_random) and in-place fills (tb_fill_random_). */
typedef enum { TB_RANDOM_UNIFORM01 /* rand */, TB_RANDOM_NORMAL01 /* randn */ } tb_random_kind;
typedef enum { TB_FILL_UNIFORM /* uniform_(a, b) */, TB_FILL_NORMAL /* normal_(mean a, std b) */ } tb_fill_kind;
tb_error tb_arange(double start, double end, double step, int dtype, int device_type,
                   int device_index, tb_tensor* out);
/* gen may be NULL. */
tb_error tb_random(tb_random_kind kind, const int64_t* shape, int ndim, int dtype, int device_type,
                   int device_index, tb_generator gen, tb_tensor* out);
tb_error tb_randint(int64_t low, int64_t high, const int64_t* shape, int ndim, int device_type,
                    int device_index, tb_generator gen, tb_tensor* out);
tb_error tb_randperm(int64_t n, int device_type, int device_index, tb_generator gen, tb_tensor* out);
tb_error tb_eye(int64_t n, int dtype, int device_type, int device_index, tb_tensor* out);
tb_error tb_fill_random_(tb_tensor t, tb_fill_kind kind, double a, double b, tb_generator gen);

/* ---- conversion and shape ---- */
/* dtype < 0 keeps the dtype; device_type < 0 keeps the device. */
tb_error tb_to(tb_tensor t, int device_type, int device_index, int dtype, tb_tensor* out);
tb_error tb_clone(tb_tensor t, tb_tensor* out);
tb_error tb_shallow(tb_tensor t, tb_tensor* out); /* a new handle to the same tensor */
tb_error tb_contiguous(tb_tensor t, tb_tensor* out);
tb_error tb_reshape(tb_tensor t, const int64_t* shape, int ndim, tb_tensor* out);
tb_error tb_view(tb_tensor t, const int64_t* shape, int ndim, tb_tensor* out);
tb_error tb_expand(tb_tensor t, const int64_t* shape, int ndim, tb_tensor* out);
tb_error tb_repeat(tb_tensor t, const int64_t* reps, int ndim, tb_tensor* out);
tb_error tb_permute(tb_tensor t, const int64_t* dims, int ndim, tb_tensor* out);
tb_error tb_transpose(tb_tensor t, int64_t d0, int64_t d1, tb_tensor* out);
tb_error tb_flatten(tb_tensor t, int64_t start, int64_t end, tb_tensor* out);
tb_error tb_squeeze(tb_tensor t, int64_t dim, tb_tensor* out);
tb_error tb_unsqueeze(tb_tensor t, int64_t dim, tb_tensor* out);
tb_error tb_slice(tb_tensor t, int64_t dim, int64_t start, int64_t end, int64_t step, tb_tensor* out);
tb_error tb_narrow(tb_tensor t, int64_t dim, int64_t start, int64_t length, tb_tensor* out);
tb_error tb_select(tb_tensor t, int64_t dim, int64_t index, tb_tensor* out);
tb_error tb_index_select(tb_tensor t, int64_t dim, tb_tensor index, tb_tensor* out);
tb_error tb_gather(tb_tensor t, int64_t dim, tb_tensor index, tb_tensor* out);
tb_error tb_cat(const tb_tensor* ts, int n, int64_t dim, tb_tensor* out);
tb_error tb_stack(const tb_tensor* ts, int n, int64_t dim, tb_tensor* out);
tb_error tb_flip(tb_tensor t, const int64_t* dims, int ndim, tb_tensor* out);
/* constant padding, pads in PyTorch's F.pad order (last dim first). */
tb_error tb_pad(tb_tensor t, const int64_t* pads, int npads, double value, tb_tensor* out);

/* ---- elementwise ---- */
/* The ops tb_unary, tb_binary, tb_binary_scalar, tb_binary_, tb_binary_scalar_,
 * and tb_reduce perform, chosen by these enums (the Go
 * binding names them with typed constants of the same values). */
typedef enum {
  TB_UNARY_NEG, TB_UNARY_EXP, TB_UNARY_LOG, TB_UNARY_SQRT, TB_UNARY_ABS, TB_UNARY_RELU,
  TB_UNARY_RELU_ /* in place, returns a new handle to the same tensor */, TB_UNARY_SIGMOID,
  TB_UNARY_TANH, TB_UNARY_FLOOR, TB_UNARY_ROUND, TB_UNARY_SQUARE, TB_UNARY_ISNAN,
  TB_UNARY_PINVERSE, TB_UNARY_DIAGONAL, TB_UNARY_ZEROS_LIKE, TB_UNARY_ONES_LIKE
} tb_unary_op;

/* Tensor-tensor ops (tb_binary). */
typedef enum {
  TB_BINARY_ADD, TB_BINARY_SUB, TB_BINARY_MUL, TB_BINARY_DIV, TB_BINARY_MAXIMUM,
  TB_BINARY_MINIMUM, TB_BINARY_EQ, TB_BINARY_LT, TB_BINARY_GE, TB_BINARY_LOGICAL_AND,
  TB_BINARY_MATMUL, TB_BINARY_MM
} tb_binary_op;

/* Tensor-scalar ops (tb_binary_scalar); RSUB is s - a. */
typedef enum {
  TB_SCALAR_ADD, TB_SCALAR_SUB, TB_SCALAR_MUL, TB_SCALAR_DIV, TB_SCALAR_RSUB, TB_SCALAR_EQ,
  TB_SCALAR_LT, TB_SCALAR_LE, TB_SCALAR_GT, TB_SCALAR_REMAINDER
} tb_scalar_op;

/* In-place tensor-tensor ops, a op= b (tb_binary_). */
typedef enum { TB_INPLACE_ADD, TB_INPLACE_COPY, TB_INPLACE_MAXIMUM } tb_inplace_op;

/* In-place tensor-scalar ops, a op= s (tb_binary_scalar_). */
typedef enum {
  TB_INPLACE_SCALAR_ADD, TB_INPLACE_SCALAR_MUL, TB_INPLACE_SCALAR_FILL
} tb_inplace_scalar_op;

/* Reductions (tb_reduce). */
typedef enum {
  TB_REDUCE_SUM, TB_REDUCE_MEAN, TB_REDUCE_AMAX, TB_REDUCE_AMIN, TB_REDUCE_VAR, TB_REDUCE_STD,
  TB_REDUCE_LOGSUMEXP, TB_REDUCE_NORM
} tb_reduce_op;

tb_error tb_unary(tb_unary_op op, tb_tensor a, tb_tensor* out);
tb_error tb_binary(tb_binary_op op, tb_tensor a, tb_tensor b, tb_tensor* out);
tb_error tb_binary_scalar(tb_scalar_op op, tb_tensor a, double s, tb_tensor* out);
tb_error tb_binary_(tb_inplace_op op, tb_tensor a, tb_tensor b);
tb_error tb_binary_scalar_(tb_inplace_scalar_op op, tb_tensor a, double s);
/* In place a += alpha * b. */
tb_error tb_add_scaled_(tb_tensor a, tb_tensor b, double alpha);
/* Multi-tensor ("foreach") updates over n tensors at once (one kernel per
   chunk of tensors on CUDA): xs[i] += alpha*ys[i]; outs[i] = xs[i] + alpha*ys[i];
   xs[i] *= s. */
tb_error tb_foreach_add_scaled_(const tb_tensor* xs, const tb_tensor* ys, int n, double alpha);
tb_error tb_foreach_add_scaled(const tb_tensor* xs, const tb_tensor* ys, int n, double alpha,
                               tb_tensor* outs);
tb_error tb_foreach_mul_scalar_(const tb_tensor* xs, int n, double s);
/* In place a += value * b * c. */
tb_error tb_addcmul_(tb_tensor a, tb_tensor b, tb_tensor c, double value);
/* In place a += value * b / c. */
tb_error tb_addcdiv_(tb_tensor a, tb_tensor b, tb_tensor c, double value);
tb_error tb_clamp(tb_tensor a, double lo, double hi, tb_tensor* out);
tb_error tb_where(tb_tensor cond, tb_tensor a, tb_tensor b, tb_tensor* out);
tb_error tb_masked_fill(tb_tensor a, tb_tensor mask, double value, tb_tensor* out);

/* ---- reductions ---- */
/* ndims == 0 reduces all. arg: unbiased flag for var/std, p for norm. */
tb_error tb_reduce(tb_reduce_op op, tb_tensor t, const int64_t* dims, int ndims, int keepdim,
                   double arg, tb_tensor* out);
/* max along dim: values and indices. */
tb_error tb_max_dim(tb_tensor t, int64_t dim, int keepdim, tb_tensor* values, tb_tensor* indices);
tb_error tb_argmax(tb_tensor t, int64_t dim, int keepdim, tb_tensor* out);
tb_error tb_topk(tb_tensor t, int64_t k, int64_t dim, tb_tensor* values, tb_tensor* indices);
tb_error tb_allclose(tb_tensor a, tb_tensor b, double rtol, double atol, int* out);

/* ---- neural network functions ---- */
/* bias may be NULL. stride, padding, dilation are 2-element arrays. */
tb_error tb_conv2d(tb_tensor x, tb_tensor w, tb_tensor bias, const int64_t* stride,
                   const int64_t* padding, const int64_t* dilation, int64_t groups, tb_tensor* out);
/* oneDNN (MKL-DNN) inference on the CPU: tensors in oneDNN's own blocked layout
 * ("mkldnn" tensors) run convolutions with weights reordered once, and stay in that
 * layout from operation to operation (relu_, add_, max_pool2d and adaptive_avg_pool2d
 * accept them) instead of being reordered to and from NCHW at every convolution. No
 * autograd: for passes without gradients only. tb_has_mkldnn: 1 if this libtorch was
 * built with oneDNN. */
int tb_has_mkldnn(void);
int tb_is_mkldnn(tb_tensor x);
/* x (float32, CPU, dense) in the oneDNN layout, and back. */
tb_error tb_to_mkldnn(tb_tensor x, tb_tensor* out);
tb_error tb_to_dense(tb_tensor x, tb_tensor* out);
/* A dense 4-D convolution weight reordered for tb_mkldnn_conv2d with these settings. */
tb_error tb_mkldnn_conv2d_weight(tb_tensor w, const int64_t* stride, const int64_t* padding,
                                 const int64_t* dilation, int64_t groups, tb_tensor* out);
/* Convolution of a oneDNN-layout x with a tb_mkldnn_conv2d_weight weight; bias dense or NULL.
 * The result is in the oneDNN layout. */
tb_error tb_mkldnn_conv2d(tb_tensor x, tb_tensor w, tb_tensor bias, const int64_t* stride,
                          const int64_t* padding, const int64_t* dilation, int64_t groups,
                          tb_tensor* out);
/* weight, bias, running_mean, running_var may be NULL. */
tb_error tb_batch_norm(tb_tensor x, tb_tensor weight, tb_tensor bias, tb_tensor running_mean,
                       tb_tensor running_var, int training, double momentum, double eps,
                       tb_tensor* out);
tb_error tb_max_pool2d(tb_tensor x, const int64_t* kernel, const int64_t* stride,
                       const int64_t* padding, const int64_t* dilation, int ceil_mode,
                       tb_tensor* out);
tb_error tb_avg_pool2d(tb_tensor x, const int64_t* kernel, const int64_t* stride,
                       const int64_t* padding, tb_tensor* out);
tb_error tb_adaptive_avg_pool2d(tb_tensor x, const int64_t* size, tb_tensor* out);
tb_error tb_linear(tb_tensor x, tb_tensor w, tb_tensor bias, tb_tensor* out);
tb_error tb_softmax(tb_tensor x, int64_t dim, int log, tb_tensor* out);
/* reduction: 0 none, 1 mean, 2 sum. */
tb_error tb_cross_entropy(tb_tensor logits, tb_tensor target, double label_smoothing,
                          int reduction, tb_tensor* out);
tb_error tb_mse_loss(tb_tensor a, tb_tensor b, int reduction, tb_tensor* out);
tb_error tb_normalize(tb_tensor x, double p, int64_t dim, double eps, tb_tensor* out);
/* mode: "nearest" "bilinear" "bicubic" "area"; align_corners < 0 leaves it unset. */
tb_error tb_interpolate(tb_tensor x, const int64_t* size, const char* mode, int align_corners,
                        tb_tensor* out);
tb_error tb_affine_grid(tb_tensor theta, const int64_t* size, int ndim, int align_corners,
                        tb_tensor* out);
/* mode "bilinear"/"nearest", padding "zeros"/"border"/"reflection". */
tb_error tb_grid_sample(tb_tensor x, tb_tensor grid, const char* mode, const char* padding,
                        int align_corners, tb_tensor* out);

/* ---- autograd ---- */
tb_error tb_set_requires_grad(tb_tensor t, int flag);
/* grad may be NULL (scalar output). */
tb_error tb_backward(tb_tensor t, tb_tensor grad, int retain_graph);
/* *out is NULL when the tensor has no gradient. */
tb_error tb_grad(tb_tensor t, tb_tensor* out);
tb_error tb_zero_grad(tb_tensor t); /* sets .grad to undefined */
tb_error tb_detach(tb_tensor t, tb_tensor* out);

/* ---- TorchScript ---- */
/* Loads a torch.jit.save archive onto the CPU and returns its parameters and buffers by
 * dotted name. names is an array of n malloc'd C strings (free with tb_free_strings). */
tb_error tb_jit_load_named(const char* path, int* n, char*** names, tb_tensor** tensors);
void tb_free_strings(char** s, int n);
void tb_free_tensor_array(tb_tensor* ts);

#ifdef __cplusplus
}
#endif
#endif
