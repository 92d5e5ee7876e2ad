// runtime.cc: errors, threads, seeds, generators, grad/inference mode and CUDA queries.
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <malloc.h>
#include <torch/cuda.h>

#include <climits>

#ifdef TB_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <ATen/cuda/CUDAGeneratorImpl.h>
#endif

#include "internal.h"

namespace tb {

std::atomic<int64_t> live_tensors{0};
std::atomic<int> wanted_threads{0};

tb_error make_error(int code, const char* op, const char* what) {
  auto* e = new tb_error_s{code, std::string(what ? what : "")};
  (void)op;  // the Go side names the op; keep the libtorch message as is
  return e;
}

at::TensorOptions options(int dtype, int device_type, int device_index) {
  check_cuda(device_type);
  return at::TensorOptions()
      .dtype(static_cast<at::ScalarType>(dtype))
      .device(device(device_type, device_index));
}

void check_cuda(int device_type) {
  if (device_type != TB_CUDA) return;
#ifndef TB_WITH_CUDA
  throw no_cuda_error(
      "this modelstitch bridge was built without CUDA (libtorch has no torch_cuda); "
      "rebuild it against a CUDA libtorch (see README)");
#else
  if (!torch::cuda::is_available())
    throw no_cuda_error("CUDA is not available on this machine (no GPU or driver)");
#endif
}

}  // namespace tb

struct tb_guard_s {
  c10::InferenceMode mode;
};

extern "C" {

int tb_error_code(tb_error e) { return e ? e->code : 0; }
const char* tb_error_message(tb_error e) { return e ? e->msg.c_str() : ""; }
void tb_error_free(tb_error e) { delete e; }

void tb_set_num_threads(int n) {
  if (n <= 0) return;
  tb::wanted_threads.store(n);
  try {
    at::set_num_threads(n);
  } catch (...) {
  }
}

void tb_set_thread_threads(int n) {
  if (n < 0) return;
  tb::thread_threads = n;
  try {
    tb::thread_setup();
  } catch (...) {
  }
}

int tb_get_num_threads(void) {
  tb::thread_setup();
  return at::get_num_threads();
}

tb_error tb_manual_seed(uint64_t seed) {
  TB_TRY
  torch::manual_seed(seed);
  TB_CATCH("manual_seed")
}

int tb_built_with_cuda(void) {
#ifdef TB_WITH_CUDA
  return 1;
#else
  return 0;
#endif
}

int tb_cuda_available(void) {
  try {
    return torch::cuda::is_available() ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

int tb_cuda_device_count(void) {
  try {
    return (int)torch::cuda::device_count();
  } catch (...) {
    return 0;
  }
}

tb_error tb_cuda_synchronize(int device) {
  TB_TRY
#ifdef TB_WITH_CUDA
  tb::check_cuda(TB_CUDA);
  torch::cuda::synchronize(device);
#else
  (void)device;
  tb::check_cuda(TB_CUDA);
#endif
  TB_CATCH("cuda_synchronize")
}

tb_error tb_cuda_empty_cache(void) {
  TB_TRY
  tb::check_cuda(TB_CUDA);
#ifdef TB_WITH_CUDA
  c10::cuda::CUDACachingAllocator::emptyCache();
#endif
  TB_CATCH("cuda_empty_cache")
}

tb_error tb_cuda_memory_allocated(int device, int64_t* out) {
  TB_TRY
  tb::check_cuda(TB_CUDA);
  *out = 0;
#ifdef TB_WITH_CUDA
  auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device);
  *out = stats.allocated_bytes[0].current;
#else
  (void)device;
#endif
  TB_CATCH("cuda_memory_allocated")
}

int64_t tb_live_tensors(void) { return tb::live_tensors.load(); }

void tb_malloc_trim(void) { malloc_trim(0); }

int tb_malloc_set_arena_max(int64_t n) {
#ifdef __GLIBC__
  if (n < 1 || n > INT_MAX) return 0;
  return mallopt(M_ARENA_MAX, (int)n) ? 1 : 0;
#else
  (void)n;
  return 0;
#endif
}

int tb_malloc_set_thresholds(int64_t mmap_threshold, int64_t trim_threshold, int64_t top_pad) {
#ifdef __GLIBC__
  for (int64_t v : {mmap_threshold, trim_threshold, top_pad})
    if (v < 0 || v > INT_MAX) return 0;
  if (mmap_threshold == 0) return 0;
  int ok = mallopt(M_MMAP_THRESHOLD, (int)mmap_threshold);
  ok = mallopt(M_TRIM_THRESHOLD, (int)trim_threshold) && ok;
  ok = mallopt(M_TOP_PAD, (int)top_pad) && ok;
  return ok ? 1 : 0;
#else
  (void)mmap_threshold;
  (void)trim_threshold;
  (void)top_pad;
  return 0;
#endif
}

int tb_set_allow_tf32(int allow) {
  auto& ctx = at::globalContext();
  int prev = ctx.allowTF32CuDNN() ? 1 : 0;
  ctx.setAllowTF32CuDNN(allow != 0);
  ctx.setAllowTF32CuBLAS(allow != 0);
  return prev;
}

const char* tb_torch_version(void) {
  static const std::string v = std::to_string(TORCH_VERSION_MAJOR) + "." +
                               std::to_string(TORCH_VERSION_MINOR) + "." +
                               std::to_string(TORCH_VERSION_PATCH);
  return v.c_str();
}

void tb_set_grad_enabled(int enabled) { c10::GradMode::set_enabled(enabled != 0); }
int tb_is_grad_enabled(void) { return c10::GradMode::is_enabled() ? 1 : 0; }

tb_error tb_inference_mode_enter(tb_guard* out) {
  TB_TRY
  *out = new tb_guard_s();
  TB_CATCH("inference_mode")
}

void tb_guard_free(tb_guard g) { delete g; }

tb_error tb_generator_new(uint64_t seed, int device_type, int device_index, tb_generator* out) {
  TB_TRY
  tb::check_cuda(device_type);
  at::Generator g;
  if (device_type == TB_CUDA) {
#ifdef TB_WITH_CUDA
    g = at::cuda::detail::createCUDAGenerator((c10::DeviceIndex)device_index);
#endif
  } else {
    g = at::detail::createCPUGenerator(seed);
  }
  {
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_current_seed(seed);
  }
  *out = new tb_generator_s{g};
  TB_CATCH("generator")
}

void tb_generator_free(tb_generator g) { delete g; }

// The default generator of a device: the CPU's, or CUDA device index's.
static at::Generator default_generator(int device_type, int device_index) {
  tb::check_cuda(device_type);
#ifdef TB_WITH_CUDA
  if (device_type == TB_CUDA) return at::cuda::detail::getDefaultCUDAGenerator((c10::DeviceIndex)device_index);
#endif
  (void)device_index;
  return at::detail::getDefaultCPUGenerator();
}

tb_error tb_rng_get_state(int device_type, int device_index, tb_tensor* out) {
  TB_TRY
  at::Generator g = default_generator(device_type, device_index);
  std::lock_guard<std::mutex> lock(g.mutex());
  *out = tb::wrap(g.get_state());
  TB_CATCH("rng_get_state")
}

tb_error tb_rng_set_state(int device_type, int device_index, tb_tensor state) {
  TB_TRY
  at::Generator g = default_generator(device_type, device_index);
  std::lock_guard<std::mutex> lock(g.mutex());
  g.set_state(state->t);
  TB_CATCH("rng_set_state")
}

}  // extern "C"
