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

tb_error tb_random(const char* kind, const int64_t* shape, int ndim, int dtype, int device_type,
                   int device_index, tb_generator g, tb_tensor* out) {
  TB_TRY
  auto opts = tb::options(dtype, device_type, device_index);
  std::string k(kind);
  if (k == "rand")
    TB_OUT(at::rand(ints(shape, ndim), tb::gen(g), opts));
  else if (k == "randn")
    TB_OUT(at::randn(ints(shape, ndim), tb::gen(g), opts));
  else
    throw std::invalid_argument("unknown random kind " + k);
  TB_CATCH(kind)
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

tb_error tb_fill_random_(tb_tensor t, const char* kind, double a, double b, tb_generator g) {
  TB_TRY
  std::string k(kind);
  if (k == "uniform")
    t->t.uniform_(a, b, tb::gen(g));
  else if (k == "normal")
    t->t.normal_(a, b, tb::gen(g));
  else
    throw std::invalid_argument("unknown random fill " + k);
  TB_CATCH(kind)
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

tb_error tb_unary(const char* name, tb_tensor a, tb_tensor* out) {
  TB_TRY
  const at::Tensor& x = a->t;
  std::string n(name);
  at::Tensor r;
  if (n == "neg") r = x.neg();
  else if (n == "exp") r = x.exp();
  else if (n == "log") r = x.log();
  else if (n == "sqrt") r = x.sqrt();
  else if (n == "rsqrt") r = x.rsqrt();
  else if (n == "abs") r = x.abs();
  else if (n == "relu") r = x.relu();
  else if (n == "sigmoid") r = x.sigmoid();
  else if (n == "tanh") r = x.tanh();
  else if (n == "sign") r = x.sign();
  else if (n == "floor") r = x.floor();
  else if (n == "ceil") r = x.ceil();
  else if (n == "round") r = x.round();
  else if (n == "square") r = x.square();
  else if (n == "reciprocal") r = x.reciprocal();
  else if (n == "logical_not") r = x.logical_not();
  else if (n == "isnan") r = x.isnan();
  else if (n == "isfinite") r = x.isfinite();
  else if (n == "pinverse") r = x.pinverse();
  else if (n == "diagonal") r = x.diagonal();
  else if (n == "zeros_like") r = at::zeros_like(x);
  else if (n == "ones_like") r = at::ones_like(x);
  else if (n == "rand_like") r = at::rand_like(x);
  else if (n == "randn_like") r = at::randn_like(x);
  else if (n == "relu_") r = x.relu_();
  else throw std::invalid_argument("unknown unary op " + n);
  TB_OUT(r);
  TB_CATCH(name)
}

tb_error tb_binary(const char* name, tb_tensor a, tb_tensor b, tb_tensor* out) {
  TB_TRY
  const at::Tensor& x = a->t;
  const at::Tensor& y = b->t;
  std::string n(name);
  at::Tensor r;
  if (n == "add") r = x.add(y);
  else if (n == "sub") r = x.sub(y);
  else if (n == "mul") r = x.mul(y);
  else if (n == "div") r = x.div(y);
  else if (n == "pow") r = x.pow(y);
  else if (n == "maximum") r = at::maximum(x, y);
  else if (n == "minimum") r = at::minimum(x, y);
  else if (n == "eq") r = x.eq(y);
  else if (n == "ne") r = x.ne(y);
  else if (n == "lt") r = x.lt(y);
  else if (n == "le") r = x.le(y);
  else if (n == "gt") r = x.gt(y);
  else if (n == "ge") r = x.ge(y);
  else if (n == "logical_and") r = x.logical_and(y);
  else if (n == "logical_or") r = x.logical_or(y);
  else if (n == "matmul") r = x.matmul(y);
  else if (n == "mm") r = x.mm(y);
  else if (n == "bmm") r = x.bmm(y);
  else if (n == "remainder") r = x.remainder(y);
  else throw std::invalid_argument("unknown binary op " + n);
  TB_OUT(r);
  TB_CATCH(name)
}

tb_error tb_binary_scalar(const char* name, tb_tensor a, double s, tb_tensor* out) {
  TB_TRY
  const at::Tensor& x = a->t;
  std::string n(name);
  at::Tensor r;
  if (n == "add") r = x.add(s);
  else if (n == "sub") r = x.sub(s);
  else if (n == "mul") r = x.mul(s);
  else if (n == "div") r = x.div(s);
  else if (n == "pow") r = x.pow(s);
  else if (n == "eq") r = x.eq(s);
  else if (n == "ne") r = x.ne(s);
  else if (n == "lt") r = x.lt(s);
  else if (n == "le") r = x.le(s);
  else if (n == "gt") r = x.gt(s);
  else if (n == "ge") r = x.ge(s);
  else if (n == "remainder") r = x.remainder(s);
  else if (n == "rsub") r = at::rsub(x, s);
  else throw std::invalid_argument("unknown scalar op " + n);
  TB_OUT(r);
  TB_CATCH(name)
}

tb_error tb_binary_(const char* name, tb_tensor a, tb_tensor b) {
  TB_TRY
  at::Tensor& x = a->t;
  const at::Tensor& y = b->t;
  std::string n(name);
  if (n == "add") x.add_(y);
  else if (n == "sub") x.sub_(y);
  else if (n == "mul") x.mul_(y);
  else if (n == "div") x.div_(y);
  else if (n == "copy") x.copy_(y);
  else if (n == "maximum") at::maximum_out(x, x, y);
  else throw std::invalid_argument("unknown in-place op " + n);
  TB_CATCH(name)
}

tb_error tb_binary_scalar_(const char* name, tb_tensor a, double v) {
  TB_TRY
  at::Tensor& x = a->t;
  std::string n(name);
  // An integer tensor takes an integer scalar in place (a double would not cast back).
  at::Scalar s = at::isIntegralType(x.scalar_type(), /*includeBool=*/false)
                     ? at::Scalar(static_cast<int64_t>(v))
                     : at::Scalar(v);
  if (n == "add") x.add_(s);
  else if (n == "sub") x.sub_(s);
  else if (n == "mul") x.mul_(s);
  else if (n == "div") x.div_(s);
  else if (n == "fill") x.fill_(s);
  else if (n == "pow") x.pow_(s);
  else if (n == "clamp_min") x.clamp_min_(s);
  else if (n == "clamp_max") x.clamp_max_(s);
  else throw std::invalid_argument("unknown in-place scalar op " + n);
  TB_CATCH(name)
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

tb_error tb_lerp_(tb_tensor a, tb_tensor b, double weight) {
  TB_TRY
  a->t.lerp_(b->t, weight);
  TB_CATCH("lerp_")
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

tb_error tb_addmm(tb_tensor bias, tb_tensor a, tb_tensor b, tb_tensor* out) {
  TB_TRY
  TB_OUT(at::addmm(bias->t, a->t, b->t));
  TB_CATCH("addmm")
}

tb_error tb_reduce(const char* name, tb_tensor t, const int64_t* dims, int ndims, int keepdim,
                   double arg, tb_tensor* out) {
  TB_TRY
  const at::Tensor& x = t->t;
  std::string n(name);
  bool all = ndims == 0;
  bool keep = keepdim != 0;
  at::IntArrayRef d = ints(dims, ndims);
  at::Tensor r;
  if (n == "sum") r = all ? x.sum() : x.sum(d, keep);
  else if (n == "mean") r = all ? x.mean() : x.mean(d, keep);
  else if (n == "amax") r = x.amax(d, keep);
  else if (n == "amin") r = x.amin(d, keep);
  else if (n == "prod") {
    if (all) r = x.prod();
    else if (ndims == 1) r = x.prod(dims[0], keep);
    else throw std::invalid_argument("prod reduces one dim at a time");
  } else if (n == "var") r = all ? x.var(arg != 0) : x.var(d, arg != 0, keep);
  else if (n == "std") r = all ? x.std(arg != 0) : x.std(d, arg != 0, keep);
  else if (n == "logsumexp") {
    if (all) r = x.flatten().logsumexp(0, keep);
    else r = x.logsumexp(d, keep);
  } else if (n == "norm") {
    if (all) r = x.norm(arg);
    else r = at::norm(x, at::Scalar(arg), d, keep);
  } else throw std::invalid_argument("unknown reduction " + n);
  TB_OUT(r);
  TB_CATCH(name)
}

tb_error tb_max_dim(tb_tensor t, int64_t dim, int keepdim, tb_tensor* values, tb_tensor* indices) {
  TB_TRY
  auto r = t->t.max(dim, keepdim != 0);
  *values = wrap(std::get<0>(r));
  *indices = wrap(std::get<1>(r));
  TB_CATCH("max")
}

tb_error tb_arg(const char* name, tb_tensor t, int64_t dim, int keepdim, tb_tensor* out) {
  TB_TRY
  std::string n(name);
  c10::optional<int64_t> d;
  if (dim >= -100) d = dim;
  if (n == "argmax") TB_OUT(t->t.argmax(d, keepdim != 0));
  else if (n == "argmin") TB_OUT(t->t.argmin(d, keepdim != 0));
  else throw std::invalid_argument("unknown arg op " + n);
  TB_CATCH(name)
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
