// tensor.cc: tensor handles, creation, copying, shape ops, elementwise ops and reductions.
#include <cstring>

#include "internal.h"

using tb::ints;
using tb::wrap;

static void check_list(const tb_tensor* ts, int n) {
  for (int i = 0; i < n; i++)
    if (ts[i] == nullptr) throw std::invalid_argument("nil tensor in list");
}

extern "C" {

void tb_tensor_free(tb_tensor t) {
  if (t == nullptr) return;
  tb::live_tensors.fetch_sub(1, std::memory_order_relaxed);
  delete t;
}

tb_error tb_tensor_info(tb_tensor t, int* dtype, int* device_type, int* device_index, int* ndim,
                        int* requires_grad, int* is_leaf, int64_t* numel) {
  TB_TRY
  const at::Tensor& x = t->t;
  if (!x.defined()) throw std::invalid_argument("undefined tensor");
  *dtype = (int)x.scalar_type();
  *device_type = x.is_cuda() ? TB_CUDA : TB_CPU;
  *device_index = x.is_cuda() ? (int)x.device().index() : -1;
  *ndim = (int)x.dim();
  *requires_grad = x.requires_grad() ? 1 : 0;
  *is_leaf = x.is_leaf() ? 1 : 0;
  *numel = x.numel();
  TB_CATCH("info")
}

tb_error tb_tensor_shape(tb_tensor t, int64_t* shape) {
  TB_TRY
  auto s = t->t.sizes();
  for (size_t i = 0; i < s.size(); i++) shape[i] = s[i];
  TB_CATCH("shape")
}

tb_error tb_tensor_defined(tb_tensor t, int* out) {
  TB_TRY
  *out = t->t.defined() ? 1 : 0;
  TB_CATCH("defined")
}

tb_error tb_from_data(const void* data, const int64_t* shape, int ndim, int dtype, tb_tensor* out) {
  TB_TRY
  auto opts = at::TensorOptions().dtype(static_cast<at::ScalarType>(dtype));
  at::Tensor t = at::empty(ints(shape, ndim), opts);
  size_t nbytes = t.numel() * t.element_size();
  if (nbytes > 0) std::memcpy(t.data_ptr(), data, nbytes);
  TB_OUT(t);
  TB_CATCH("from_data")
}

tb_error tb_copy_to(tb_tensor t, void* dst, int64_t nbytes) {
  TB_TRY
  at::Tensor c = t->t.detach().to(at::kCPU).contiguous();
  int64_t have = c.numel() * c.element_size();
  if (have != nbytes)
    throw std::invalid_argument("copy_to: buffer has " + std::to_string(nbytes) +
                                " bytes, tensor has " + std::to_string(have));
  if (have > 0) std::memcpy(dst, c.data_ptr(), have);
  TB_CATCH("copy_to")
}

tb_error tb_item_double(tb_tensor t, double* out) {
  TB_TRY
  *out = t->t.item<double>();
  TB_CATCH("item")
}

tb_error tb_item_int64(tb_tensor t, int64_t* out) {
  TB_TRY
  *out = t->t.item<int64_t>();
  TB_CATCH("item")
}

tb_error tb_full(const int64_t* shape, int ndim, double value, int dtype, int device_type,
                 int device_index, tb_tensor* out) {
  TB_TRY
  TB_OUT(at::full(ints(shape, ndim), value, tb::options(dtype, device_type, device_index)));
  TB_CATCH("full")
}

tb_error tb_arange(double start, double end, double step, int dtype, int device_type,
                   int device_index, tb_tensor* out) {
  TB_TRY
  TB_OUT(at::arange(start, end, step, tb::options(dtype, device_type, device_index)));
  TB_CATCH("arange")
}

tb_error tb_random(tb_random_kind kind, const int64_t* shape, int ndim, int dtype, int device_type,
                   int device_index, tb_generator g, tb_tensor* out) {
  TB_TRY
  auto opts = tb::options(dtype, device_type, device_index);
  switch (kind) {
    case TB_RANDOM_UNIFORM01: TB_OUT(at::rand(ints(shape, ndim), tb::gen(g), opts)); return nullptr;
    case TB_RANDOM_NORMAL01: TB_OUT(at::randn(ints(shape, ndim), tb::gen(g), opts)); return nullptr;
  }
  throw std::invalid_argument("unknown random kind " + std::to_string(kind));
  TB_CATCH("random")
}

tb_error tb_randint(int64_t low, int64_t high, const int64_t* shape, int ndim, int device_type,
                    int device_index, tb_generator g, tb_tensor* out) {
  TB_TRY
  TB_OUT(at::randint(low, high, ints(shape, ndim), tb::gen(g),
                     tb::options((int)at::kLong, device_type, device_index)));
  TB_CATCH("randint")
}

tb_error tb_randperm(int64_t n, int device_type, int device_index, tb_generator g, tb_tensor* out) {
  TB_TRY
  TB_OUT(at::randperm(n, tb::gen(g), tb::options((int)at::kLong, device_type, device_index)));
  TB_CATCH("randperm")
}

tb_error tb_eye(int64_t n, int dtype, int device_type, int device_index, tb_tensor* out) {
  TB_TRY
  TB_OUT(at::eye(n, tb::options(dtype, device_type, device_index)));
  TB_CATCH("eye")
}

tb_error tb_fill_random_(tb_tensor t, tb_fill_kind kind, double a, double b, tb_generator g) {
  TB_TRY
  switch (kind) {
    case TB_FILL_UNIFORM: t->t.uniform_(a, b, tb::gen(g)); return nullptr;
    case TB_FILL_NORMAL: t->t.normal_(a, b, tb::gen(g)); return nullptr;
  }
  throw std::invalid_argument("unknown random fill " + std::to_string(kind));
  TB_CATCH("fill_random_")
}

tb_error tb_to(tb_tensor t, int device_type, int device_index, int dtype, tb_tensor* out) {
  TB_TRY
  at::Tensor x = t->t;
  if (device_type >= 0) {
    tb::check_cuda(device_type);
    x = x.to(tb::device(device_type, device_index));
  }
  if (dtype >= 0) x = x.to(static_cast<at::ScalarType>(dtype));
  TB_OUT(x);
  TB_CATCH("to")
}

tb_error tb_clone(tb_tensor t, tb_tensor* out) {
  TB_TRY
  TB_OUT(t->t.clone());
  TB_CATCH("clone")
}

tb_error tb_shallow(tb_tensor t, tb_tensor* out) {
  TB_TRY
  TB_OUT(t->t);
  TB_CATCH("shallow")
}

tb_error tb_contiguous(tb_tensor t, tb_tensor* out) {
  TB_TRY
  TB_OUT(t->t.contiguous());
  TB_CATCH("contiguous")
}

tb_error tb_reshape(tb_tensor t, const int64_t* shape, int ndim, tb_tensor* out) {
  TB_TRY
  TB_OUT(t->t.reshape(ints(shape, ndim)));
  TB_CATCH("reshape")
}

tb_error tb_view(tb_tensor t, const int64_t* shape, int ndim, tb_tensor* out) {
  TB_TRY
  TB_OUT(t->t.view(ints(shape, ndim)));
  TB_CATCH("view")
}

tb_error tb_expand(tb_tensor t, const int64_t* shape, int ndim, tb_tensor* out) {
  TB_TRY
  TB_OUT(t->t.expand(ints(shape, ndim)));
  TB_CATCH("expand")
}

tb_error tb_repeat(tb_tensor t, const int64_t* reps, int ndim, tb_tensor* out) {
  TB_TRY
  TB_OUT(t->t.repeat(ints(reps, ndim)));
  TB_CATCH("repeat")
}

tb_error tb_permute(tb_tensor t, const int64_t* dims, int ndim, tb_tensor* out) {
  TB_TRY
  TB_OUT(t->t.permute(ints(dims, ndim)));
  TB_CATCH("permute")
}

tb_error tb_transpose(tb_tensor t, int64_t d0, int64_t d1, tb_tensor* out) {
  TB_TRY
  TB_OUT(t->t.transpose(d0, d1));
  TB_CATCH("transpose")
}

tb_error tb_flatten(tb_tensor t, int64_t start, int64_t end, tb_tensor* out) {
  TB_TRY
  TB_OUT(t->t.flatten(start, end));
  TB_CATCH("flatten")
}

tb_error tb_squeeze(tb_tensor t, int64_t dim, tb_tensor* out) {
  TB_TRY
  TB_OUT(t->t.squeeze(dim));
  TB_CATCH("squeeze")
}

tb_error tb_unsqueeze(tb_tensor t, int64_t dim, tb_tensor* out) {
  TB_TRY
  TB_OUT(t->t.unsqueeze(dim));
  TB_CATCH("unsqueeze")
}

tb_error tb_slice(tb_tensor t, int64_t dim, int64_t start, int64_t end, int64_t step, tb_tensor* out) {
  TB_TRY
  TB_OUT(t->t.slice(dim, start, end, step));
  TB_CATCH("slice")
}

tb_error tb_narrow(tb_tensor t, int64_t dim, int64_t start, int64_t length, tb_tensor* out) {
  TB_TRY
  TB_OUT(t->t.narrow(dim, start, length));
  TB_CATCH("narrow")
}

tb_error tb_select(tb_tensor t, int64_t dim, int64_t index, tb_tensor* out) {
  TB_TRY
  TB_OUT(t->t.select(dim, index));
  TB_CATCH("select")
}

tb_error tb_index_select(tb_tensor t, int64_t dim, tb_tensor index, tb_tensor* out) {
  TB_TRY
  TB_OUT(t->t.index_select(dim, index->t));
  TB_CATCH("index_select")
}

tb_error tb_gather(tb_tensor t, int64_t dim, tb_tensor index, tb_tensor* out) {
  TB_TRY
  TB_OUT(t->t.gather(dim, index->t));
  TB_CATCH("gather")
}

tb_error tb_cat(const tb_tensor* ts, int n, int64_t dim, tb_tensor* out) {
  TB_TRY
  check_list(ts, n);
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (int i = 0; i < n; i++) v.push_back(ts[i]->t);
  TB_OUT(at::cat(v, dim));
  TB_CATCH("cat")
}

tb_error tb_stack(const tb_tensor* ts, int n, int64_t dim, tb_tensor* out) {
  TB_TRY
  check_list(ts, n);
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (int i = 0; i < n; i++) v.push_back(ts[i]->t);
  TB_OUT(at::stack(v, dim));
  TB_CATCH("stack")
}

tb_error tb_flip(tb_tensor t, const int64_t* dims, int ndim, tb_tensor* out) {
  TB_TRY
  TB_OUT(t->t.flip(ints(dims, ndim)));
  TB_CATCH("flip")
}

tb_error tb_pad(tb_tensor t, const int64_t* pads, int npads, double value, tb_tensor* out) {
  TB_TRY
  TB_OUT(at::constant_pad_nd(t->t, ints(pads, npads), value));
  TB_CATCH("pad")
}

// The op switches below have no default case, so the compiler (-Wswitch)
// names any enum value of cbridge.h that one of them forgets.

static at::Tensor unary(tb_unary_op op, at::Tensor& x) {
  switch (op) {
    case TB_UNARY_NEG: return x.neg();
    case TB_UNARY_EXP: return x.exp();
    case TB_UNARY_LOG: return x.log();
    case TB_UNARY_SQRT: return x.sqrt();
    case TB_UNARY_ABS: return x.abs();
    case TB_UNARY_RELU: return x.relu();
    case TB_UNARY_RELU_: return x.relu_();
    case TB_UNARY_SIGMOID: return x.sigmoid();
    case TB_UNARY_TANH: return x.tanh();
    case TB_UNARY_FLOOR: return x.floor();
    case TB_UNARY_ROUND: return x.round();
    case TB_UNARY_SQUARE: return x.square();
    case TB_UNARY_ISNAN: return x.isnan();
    case TB_UNARY_PINVERSE: return x.pinverse();
    case TB_UNARY_DIAGONAL: return x.diagonal();
    case TB_UNARY_ZEROS_LIKE: return at::zeros_like(x);
    case TB_UNARY_ONES_LIKE: return at::ones_like(x);
  }
  throw std::invalid_argument("unknown unary op " + std::to_string(op));
}

tb_error tb_unary(tb_unary_op op, tb_tensor a, tb_tensor* out) {
  TB_TRY
  TB_OUT(unary(op, a->t));
  TB_CATCH("unary")
}

static at::Tensor binary(tb_binary_op op, const at::Tensor& x, const at::Tensor& y) {
  switch (op) {
    case TB_BINARY_ADD: return x.add(y);
    case TB_BINARY_SUB: return x.sub(y);
    case TB_BINARY_MUL: return x.mul(y);
    case TB_BINARY_DIV: return x.div(y);
    case TB_BINARY_MAXIMUM: return at::maximum(x, y);
    case TB_BINARY_MINIMUM: return at::minimum(x, y);
    case TB_BINARY_EQ: return x.eq(y);
    case TB_BINARY_LT: return x.lt(y);
    case TB_BINARY_GE: return x.ge(y);
    case TB_BINARY_LOGICAL_AND: return x.logical_and(y);
    case TB_BINARY_MATMUL: return x.matmul(y);
    case TB_BINARY_MM: return x.mm(y);
  }
  throw std::invalid_argument("unknown binary op " + std::to_string(op));
}

tb_error tb_binary(tb_binary_op op, tb_tensor a, tb_tensor b, tb_tensor* out) {
  TB_TRY
  TB_OUT(binary(op, a->t, b->t));
  TB_CATCH("binary")
}

static at::Tensor binary_scalar(tb_scalar_op op, const at::Tensor& x, double s) {
  switch (op) {
    case TB_SCALAR_ADD: return x.add(s);
    case TB_SCALAR_SUB: return x.sub(s);
    case TB_SCALAR_MUL: return x.mul(s);
    case TB_SCALAR_DIV: return x.div(s);
    case TB_SCALAR_RSUB: return at::rsub(x, s);
    case TB_SCALAR_EQ: return x.eq(s);
    case TB_SCALAR_LT: return x.lt(s);
    case TB_SCALAR_LE: return x.le(s);
    case TB_SCALAR_GT: return x.gt(s);
    case TB_SCALAR_REMAINDER: return x.remainder(s);
  }
  throw std::invalid_argument("unknown scalar op " + std::to_string(op));
}

tb_error tb_binary_scalar(tb_scalar_op op, tb_tensor a, double s, tb_tensor* out) {
  TB_TRY
  TB_OUT(binary_scalar(op, a->t, s));
  TB_CATCH("binary_scalar")
}

tb_error tb_binary_(tb_inplace_op op, tb_tensor a, tb_tensor b) {
  TB_TRY
  at::Tensor& x = a->t;
  const at::Tensor& y = b->t;
  switch (op) {
    case TB_INPLACE_ADD: x.add_(y); return nullptr;
    case TB_INPLACE_COPY: x.copy_(y); return nullptr;
    case TB_INPLACE_MAXIMUM: at::maximum_out(x, x, y); return nullptr;
  }
  throw std::invalid_argument("unknown in-place op " + std::to_string(op));
  TB_CATCH("binary_")
}

tb_error tb_binary_scalar_(tb_inplace_scalar_op op, tb_tensor a, double v) {
  TB_TRY
  at::Tensor& x = a->t;
  // An integer tensor takes an integer scalar in place (a double would not cast back).
  at::Scalar s = at::isIntegralType(x.scalar_type(), /*includeBool=*/false)
                     ? at::Scalar(static_cast<int64_t>(v))
                     : at::Scalar(v);
  switch (op) {
    case TB_INPLACE_SCALAR_ADD: x.add_(s); return nullptr;
    case TB_INPLACE_SCALAR_MUL: x.mul_(s); return nullptr;
    case TB_INPLACE_SCALAR_FILL: x.fill_(s); return nullptr;
  }
  throw std::invalid_argument("unknown in-place scalar op " + std::to_string(op));
  TB_CATCH("binary_scalar_")
}

tb_error tb_add_scaled_(tb_tensor a, tb_tensor b, double alpha) {
  TB_TRY
  a->t.add_(b->t, alpha);
  TB_CATCH("add_")
}

namespace {
std::vector<at::Tensor> tensor_list(const tb_tensor* xs, int n) {
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (int i = 0; i < n; i++) v.push_back(xs[i]->t);
  return v;
}
}  // namespace

tb_error tb_foreach_add_scaled_(const tb_tensor* xs, const tb_tensor* ys, int n, double alpha) {
  TB_TRY
  auto a = tensor_list(xs, n);
  at::_foreach_add_(a, tensor_list(ys, n), at::Scalar(alpha));
  TB_CATCH("_foreach_add_")
}

tb_error tb_foreach_add_scaled(const tb_tensor* xs, const tb_tensor* ys, int n, double alpha,
                               tb_tensor* outs) {
  TB_TRY
  auto r = at::_foreach_add(tensor_list(xs, n), tensor_list(ys, n), at::Scalar(alpha));
  for (int i = 0; i < n; i++) outs[i] = tb::wrap(std::move(r[i]));
  TB_CATCH("_foreach_add")
}

tb_error tb_foreach_mul_scalar_(const tb_tensor* xs, int n, double s) {
  TB_TRY
  auto a = tensor_list(xs, n);
  at::_foreach_mul_(a, at::Scalar(s));
  TB_CATCH("_foreach_mul_")
}

tb_error tb_addcmul_(tb_tensor a, tb_tensor b, tb_tensor c, double value) {
  TB_TRY
  a->t.addcmul_(b->t, c->t, value);
  TB_CATCH("addcmul_")
}

tb_error tb_addcdiv_(tb_tensor a, tb_tensor b, tb_tensor c, double value) {
  TB_TRY
  a->t.addcdiv_(b->t, c->t, value);
  TB_CATCH("addcdiv_")
}

tb_error tb_clamp(tb_tensor a, double lo, double hi, tb_tensor* out) {
  TB_TRY
  TB_OUT(a->t.clamp(lo, hi));
  TB_CATCH("clamp")
}

tb_error tb_where(tb_tensor cond, tb_tensor a, tb_tensor b, tb_tensor* out) {
  TB_TRY
  TB_OUT(at::where(cond->t, a->t, b->t));
  TB_CATCH("where")
}

tb_error tb_masked_fill(tb_tensor a, tb_tensor mask, double value, tb_tensor* out) {
  TB_TRY
  TB_OUT(a->t.masked_fill(mask->t, value));
  TB_CATCH("masked_fill")
}

static at::Tensor reduce(tb_reduce_op op, const at::Tensor& x, at::IntArrayRef d, bool keep,
                         double arg) {
  bool all = d.empty();
  switch (op) {
    case TB_REDUCE_SUM: return all ? x.sum() : x.sum(d, keep);
    case TB_REDUCE_MEAN: return all ? x.mean() : x.mean(d, keep);
    case TB_REDUCE_AMAX: return x.amax(d, keep);
    case TB_REDUCE_AMIN: return x.amin(d, keep);
    case TB_REDUCE_VAR: return all ? x.var(arg != 0) : x.var(d, arg != 0, keep);
    case TB_REDUCE_STD: return all ? x.std(arg != 0) : x.std(d, arg != 0, keep);
    case TB_REDUCE_LOGSUMEXP: return all ? x.flatten().logsumexp(0, keep) : x.logsumexp(d, keep);
    case TB_REDUCE_NORM: return all ? x.norm(arg) : at::norm(x, at::Scalar(arg), d, keep);
  }
  throw std::invalid_argument("unknown reduction " + std::to_string(op));
}

tb_error tb_reduce(tb_reduce_op op, tb_tensor t, const int64_t* dims, int ndims, int keepdim,
                   double arg, tb_tensor* out) {
  TB_TRY
  TB_OUT(reduce(op, t->t, ints(dims, ndims), keepdim != 0, arg));
  TB_CATCH("reduce")
}

tb_error tb_max_dim(tb_tensor t, int64_t dim, int keepdim, tb_tensor* values, tb_tensor* indices) {
  TB_TRY
  auto r = t->t.max(dim, keepdim != 0);
  *values = wrap(std::get<0>(r));
  *indices = wrap(std::get<1>(r));
  TB_CATCH("max")
}

tb_error tb_argmax(tb_tensor t, int64_t dim, int keepdim, tb_tensor* out) {
  TB_TRY
  TB_OUT(t->t.argmax(dim, keepdim != 0));
  TB_CATCH("argmax")
}

tb_error tb_topk(tb_tensor t, int64_t k, int64_t dim, tb_tensor* values, tb_tensor* indices) {
  TB_TRY
  auto r = t->t.topk(k, dim);
  *values = wrap(std::get<0>(r));
  *indices = wrap(std::get<1>(r));
  TB_CATCH("topk")
}

tb_error tb_allclose(tb_tensor a, tb_tensor b, double rtol, double atol, int* out) {
  TB_TRY
  *out = a->t.allclose(b->t, rtol, atol) ? 1 : 0;
  TB_CATCH("allclose")
}

}  // extern "C"
