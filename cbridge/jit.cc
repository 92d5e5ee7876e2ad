// jit.cc: reading TorchScript archives (torch.jit.save) through libtorch.
#include <torch/script.h>

#include <cstdlib>
#include <cstring>

#include "internal.h"

extern "C" {

tb_error tb_jit_load_named(const char* path, int* n, char*** names, tb_tensor** tensors) {
  TB_TRY
  torch::jit::Module m = torch::jit::load(std::string(path), at::Device(at::kCPU));
  std::vector<std::pair<std::string, at::Tensor>> items;
  for (const auto& p : m.named_parameters(/*recurse=*/true)) items.emplace_back(p.name, p.value);
  for (const auto& b : m.named_buffers(/*recurse=*/true)) items.emplace_back(b.name, b.value);
  *n = (int)items.size();
  *names = (char**)std::calloc(items.size() + 1, sizeof(char*));
  *tensors = (tb_tensor*)std::calloc(items.size() + 1, sizeof(tb_tensor));
  for (size_t i = 0; i < items.size(); i++) {
    (*names)[i] = strdup(items[i].first.c_str());
    (*tensors)[i] = tb::wrap(items[i].second.detach());
  }
  TB_CATCH("jit_load")
}

void tb_free_strings(char** s, int n) {
  if (s == nullptr) return;
  for (int i = 0; i < n; i++) std::free(s[i]);
  std::free(s);
}

void tb_free_tensor_array(tb_tensor* ts) { std::free(ts); }

}  // extern "C"
