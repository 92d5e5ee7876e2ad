// nn.cc: neural-network functions (convolution, normalisation, pooling, losses, resampling).
#include "internal.h"

using tb::ints;
namespace F = torch::nn::functional;

extern "C" {

tb_error tb_conv2d(tb_tensor x, tb_tensor w, tb_tensor bias, const int64_t* stride,
                   const int64_t* padding, const int64_t* dilation, int64_t groups, tb_tensor* out) {
  TB_TRY
  TB_OUT(at::conv2d(x->t, w->t, tb::opt(bias), ints(stride, 2), ints(padding, 2),
                    ints(dilation, 2), groups));
  TB_CATCH("conv2d")
}

int tb_has_mkldnn(void) { return at::hasMKLDNN() ? 1 : 0; }

int tb_is_mkldnn(tb_tensor x) { return x != nullptr && x->t.defined() && x->t.is_mkldnn() ? 1 : 0; }

tb_error tb_to_mkldnn(tb_tensor x, tb_tensor* out) {
  TB_TRY
  TB_OUT(x->t.to_mkldnn());
  TB_CATCH("to_mkldnn")
}

tb_error tb_to_dense(tb_tensor x, tb_tensor* out) {
  TB_TRY
  TB_OUT(x->t.to_dense());
  TB_CATCH("to_dense")
}

tb_error tb_mkldnn_conv2d_weight(tb_tensor w, const int64_t* stride, const int64_t* padding,
                                 const int64_t* dilation, int64_t groups, tb_tensor* out) {
  TB_TRY
  TB_OUT(at::mkldnn_reorder_conv2d_weight(w->t.contiguous().to_mkldnn(), ints(padding, 2),
                                          ints(stride, 2), ints(dilation, 2), groups));
  TB_CATCH("mkldnn_reorder_conv2d_weight")
}

tb_error tb_mkldnn_conv2d(tb_tensor x, tb_tensor w, tb_tensor bias, const int64_t* stride,
                          const int64_t* padding, const int64_t* dilation, int64_t groups,
                          tb_tensor* out) {
  TB_TRY
  TB_OUT(at::mkldnn_convolution(x->t, w->t, tb::opt(bias), ints(padding, 2), ints(stride, 2),
                                ints(dilation, 2), groups));
  TB_CATCH("mkldnn_convolution")
}

tb_error tb_batch_norm(tb_tensor x, tb_tensor weight, tb_tensor bias, tb_tensor running_mean,
                       tb_tensor running_var, int training, double momentum, double eps,
                       tb_tensor* out) {
  TB_TRY
  TB_OUT(at::batch_norm(x->t, tb::opt(weight), tb::opt(bias), tb::opt(running_mean),
                        tb::opt(running_var), training != 0, momentum, eps,
                        /*cudnn_enabled=*/true));
  TB_CATCH("batch_norm")
}

tb_error tb_max_pool2d(tb_tensor x, const int64_t* kernel, const int64_t* stride,
                       const int64_t* padding, const int64_t* dilation, int ceil_mode,
                       tb_tensor* out) {
  TB_TRY
  TB_OUT(at::max_pool2d(x->t, ints(kernel, 2), ints(stride, 2), ints(padding, 2),
                        ints(dilation, 2), ceil_mode != 0));
  TB_CATCH("max_pool2d")
}

tb_error tb_avg_pool2d(tb_tensor x, const int64_t* kernel, const int64_t* stride,
                       const int64_t* padding, tb_tensor* out) {
  TB_TRY
  TB_OUT(at::avg_pool2d(x->t, ints(kernel, 2), ints(stride, 2), ints(padding, 2)));
  TB_CATCH("avg_pool2d")
}

tb_error tb_adaptive_avg_pool2d(tb_tensor x, const int64_t* size, tb_tensor* out) {
  TB_TRY
  TB_OUT(at::adaptive_avg_pool2d(x->t, ints(size, 2)));
  TB_CATCH("adaptive_avg_pool2d")
}

tb_error tb_linear(tb_tensor x, tb_tensor w, tb_tensor bias, tb_tensor* out) {
  TB_TRY
  TB_OUT(at::linear(x->t, w->t, tb::opt(bias)));
  TB_CATCH("linear")
}

tb_error tb_softmax(tb_tensor x, int64_t dim, int log, tb_tensor* out) {
  TB_TRY
  if (log)
    TB_OUT(x->t.log_softmax(dim));
  else
    TB_OUT(x->t.softmax(dim));
  TB_CATCH(log ? "log_softmax" : "softmax")
}

tb_error tb_cross_entropy(tb_tensor logits, tb_tensor target, double label_smoothing,
                          int reduction, tb_tensor* out) {
  TB_TRY
  TB_OUT(at::cross_entropy_loss(logits->t, target->t, c10::nullopt, reduction, -100,
                                label_smoothing));
  TB_CATCH("cross_entropy")
}

tb_error tb_mse_loss(tb_tensor a, tb_tensor b, int reduction, tb_tensor* out) {
  TB_TRY
  TB_OUT(at::mse_loss(a->t, b->t, reduction));
  TB_CATCH("mse_loss")
}

tb_error tb_normalize(tb_tensor x, double p, int64_t dim, double eps, tb_tensor* out) {
  TB_TRY
  TB_OUT(F::normalize(x->t, F::NormalizeFuncOptions().p(p).dim(dim).eps(eps)));
  TB_CATCH("normalize")
}

tb_error tb_interpolate(tb_tensor x, const int64_t* size, const char* mode, int align_corners,
                        tb_tensor* out) {
  TB_TRY
  std::string m(mode);
  auto o = F::InterpolateFuncOptions().size(std::vector<int64_t>(size, size + 2));
  if (m == "nearest") o.mode(torch::kNearest);
  else if (m == "bilinear") o.mode(torch::kBilinear);
  else if (m == "bicubic") o.mode(torch::kBicubic);
  else if (m == "area") o.mode(torch::kArea);
  else throw std::invalid_argument("unknown interpolation mode " + m);
  if (align_corners >= 0) o.align_corners(align_corners != 0);
  TB_OUT(F::interpolate(x->t, o));
  TB_CATCH("interpolate")
}

tb_error tb_affine_grid(tb_tensor theta, const int64_t* size, int ndim, int align_corners,
                        tb_tensor* out) {
  TB_TRY
  TB_OUT(at::affine_grid_generator(theta->t, ints(size, ndim), align_corners != 0));
  TB_CATCH("affine_grid")
}

tb_error tb_grid_sample(tb_tensor x, tb_tensor grid, const char* mode, const char* padding,
                        int align_corners, tb_tensor* out) {
  TB_TRY
  std::string m(mode), p(padding);
  int64_t mi = m == "bilinear" ? 0 : m == "nearest" ? 1 : m == "bicubic" ? 2 : -1;
  int64_t pi = p == "zeros" ? 0 : p == "border" ? 1 : p == "reflection" ? 2 : -1;
  if (mi < 0) throw std::invalid_argument("unknown grid_sample mode " + m);
  if (pi < 0) throw std::invalid_argument("unknown grid_sample padding " + p);
  TB_OUT(at::grid_sampler(x->t, grid->t, mi, pi, align_corners != 0));
  TB_CATCH("grid_sample")
}

tb_error tb_set_requires_grad(tb_tensor t, int flag) {
  TB_TRY
  t->t.set_requires_grad(flag != 0);
  TB_CATCH("requires_grad")
}

tb_error tb_backward(tb_tensor t, tb_tensor grad, int retain_graph) {
  TB_TRY
  at::Tensor g;
  if (grad != nullptr) g = grad->t;
  t->t.backward(g, retain_graph != 0);
  TB_CATCH("backward")
}

tb_error tb_grad(tb_tensor t, tb_tensor* out) {
  TB_TRY
  const at::Tensor& g = t->t.grad();
  *out = g.defined() ? tb::wrap(g) : nullptr;
  TB_CATCH("grad")
}

tb_error tb_zero_grad(tb_tensor t) {
  TB_TRY
  t->t.mutable_grad().reset();
  TB_CATCH("zero_grad")
}

tb_error tb_detach(tb_tensor t, tb_tensor* out) {
  TB_TRY
  TB_OUT(t->t.detach());
  TB_CATCH("detach")
}

}  // extern "C"
