// `dsv3 quantize --fp8`: a BF16/F16/F32 checkpoint in DeepSeek's FP8 layout. Overview in the header.
#include "model/quantize_checkpoint.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "core/error.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "core/tensor.h"
#include "io/hf_names.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "ops/fp8.h"

namespace dsv3 {

namespace fs = std::filesystem;

namespace {

// DeepSeek's weight_block_size [128, 128] (SPEC.md §1); quantize_fp8's block_128x128 tiling.
constexpr int64_t kBlock = kFp8Tile;
// f32 elements widened at a time (16 MB): whole 128-row groups, so no block straddles two stripes.
constexpr int64_t kStripeElements = int64_t(1) << 22;
// Files beside the weights that belong to the model and are copied as they are.
constexpr const char* kSideFiles[] = {"tokenizer.json", "tokenizer_config.json", "generation_config.json"};

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  DSV3_CHECK(in.good(), "[quantize] cannot open ", path.string(), "; check permissions");
  std::ostringstream text;
  text << in.rdbuf();
  DSV3_CHECK(!in.bad(), "[quantize] error reading ", path.string());
  return text.str();
}

uint64_t fp8_bytes(const Shape& shape) {
  const uint64_t rows = uint64_t(shape[0]), cols = uint64_t(shape[1]);
  const uint64_t scale_rows = (rows + kBlock - 1) / kBlock, scale_cols = (cols + kBlock - 1) / kBlock;
  return rows * cols + scale_rows * scale_cols * sizeof(float);
}

struct Item {
  std::string name;
  TensorView view;
  bool quantize = false;
  uint64_t bytes_out = 0;
};

// Rows [r0, r1) of a 2-D F32/BF16/F16 weight widened exactly to f32. Returns the flat index of the first
// non-finite value, or -1.
int64_t widen_rows(const TensorView& v, int64_t r0, int64_t r1, float* out) {
  const int64_t cols = v.dim(1), begin = r0 * cols, n = (r1 - r0) * cols;
  std::atomic<int64_t> first_bad{std::numeric_limits<int64_t>::max()};
  parallel_for(n, int64_t(1) << 15, [&](int64_t b, int64_t e) {
    switch (v.dtype) {
      case DType::F32:
        for (int64_t i = b; i < e; ++i) out[i] = v.as<float>()[begin + i];
        break;
      case DType::BF16:
        for (int64_t i = b; i < e; ++i) out[i] = bf16_to_f32(v.as<uint16_t>()[begin + i]);
        break;
      default:  // F16 (checked when planning)
        for (int64_t i = b; i < e; ++i) out[i] = f16_to_f32(v.as<uint16_t>()[begin + i]);
        break;
    }
    for (int64_t i = b; i < e; ++i)
      if (!std::isfinite(out[i])) {
        int64_t seen = first_bad.load();
        while (begin + i < seen && !first_bad.compare_exchange_weak(seen, begin + i)) {
        }
        break;
      }
  });
  const int64_t bad = first_bad.load();
  return bad == std::numeric_limits<int64_t>::max() ? -1 : bad;
}

// One linear weight -> (E4M3 codes [rows, cols], F32 scales [ceil(rows/128), ceil(cols/128)]), quantized
// in stripes of 128-row groups with the vectorized quantizer (bit-exact with quantize_fp8_blocks).
void quantize_weight(const Item& item, bool ue8m0, std::vector<float>& stripe, ProgressBar& progress,
                     SafetensorsWriter& writer) {
  const TensorView& v = item.view;
  const int64_t rows = v.dim(0), cols = v.dim(1);
  const int64_t scale_cols = (cols + kBlock - 1) / kBlock;
  const int64_t stripe_rows = kBlock * std::max<int64_t>(1, kStripeElements / (kBlock * std::max<int64_t>(cols, 1)));
  Tensor codes(DType::F8_E4M3, v.shape);
  Tensor scales(DType::F32, {(rows + kBlock - 1) / kBlock, scale_cols});
  stripe.resize(size_t(std::min(rows, stripe_rows) * cols));
  for (int64_t r0 = 0; r0 < rows; r0 += stripe_rows) {
    const int64_t r1 = std::min(rows, r0 + stripe_rows);
    const int64_t bad = widen_rows(v, r0, r1, stripe.data());
    DSV3_CHECK(bad < 0, "[quantize] tensor ", item.name, " holds a non-finite value (",
               stripe[size_t(bad - r0 * cols)], ") at [", bad / cols, ", ", bad % cols,
               "]; the checkpoint is corrupt: re-download or re-export it");
    quantize_fp8(stripe.data(), r1 - r0, cols, Fp8Format::e4m3, Fp8Tiling::block_128x128, ue8m0,
                 codes.as<uint8_t>() + r0 * cols, scales.as<float>() + (r0 / kBlock) * scale_cols);
    progress.add(int64_t((r1 - r0) * cols) * int64_t(dtype_size(v.dtype)));
  }
  writer.add(item.name, std::move(codes));
  writer.add(scale_inv_name(item.name), std::move(scales));
}

std::string shard_file_name(size_t index, size_t count) {
  if (count == 1) return "model.safetensors";
  char file[64];
  std::snprintf(file, sizeof file, "model-%05zu-of-%05zu.safetensors", index + 1, count);
  return file;
}

bool is_model_file(const std::string& name) {
  // What a previous model in the output directory consists of (removed under force).
  std::string base = name;
  if (ends_with(base, ".partial")) base.resize(base.size() - std::string_view(".partial").size());
  if (base == "config.json" || base == "model.safetensors" || base == "model.safetensors.index.json") return true;
  for (const char* side : kSideFiles)
    if (base == side) return true;
  // model-00001-of-00163.safetensors
  return base.size() == std::string_view("model-00001-of-00001.safetensors").size() && base.rfind("model-", 0) == 0 &&
         base.compare(11, 4, "-of-") == 0 && ends_with(base, ".safetensors");
}

// Checks out_dir (exists as a directory or can be created; empty unless force; not in_dir) and, under
// force, removes the previous model's files, config.json first so that an interrupted run never leaves a
// directory that looks complete.
void prepare_output_dir(const fs::path& in, const fs::path& out, bool force) {
  std::error_code ec;
  if (fs::exists(out, ec)) {
    DSV3_CHECK(fs::is_directory(out, ec), "[quantize] --out ", out.string(),
               " exists and is not a directory; choose a directory");
    DSV3_CHECK(!fs::equivalent(in, out, ec), "[quantize] --out ", out.string(),
               " is the input directory; write the FP8 checkpoint to a new directory");
    std::vector<fs::path> entries;
    for (const auto& entry : fs::directory_iterator(out, ec)) entries.push_back(entry.path());
    DSV3_CHECK(!ec, "[quantize] cannot list ", out.string(), ": ", ec.message());
    std::sort(entries.begin(), entries.end());
    if (!entries.empty()) {
      DSV3_CHECK(force, "[quantize] --out ", out.string(), " is not empty (", entries.size(), " entries, e.g. ",
                 entries.front().filename().string(),
                 "); choose an empty or new directory, or pass --force to replace the model in it");
      fs::remove(out / "config.json", ec);
      DSV3_CHECK(!ec, "[quantize] cannot remove ", (out / "config.json").string(), ": ", ec.message());
      for (const fs::path& p : entries)
        if (is_model_file(p.filename().string()) && fs::is_regular_file(p, ec)) {
          fs::remove(p, ec);
          DSV3_CHECK(!ec, "[quantize] cannot remove ", p.string(), ": ", ec.message());
        }
    }
  } else {
    fs::create_directories(out, ec);
    DSV3_CHECK(!ec, "[quantize] cannot create directory ", out.string(), ": ", ec.message());
  }
}

// config.json of the output: the input's JSON, key order kept, with DeepSeek's quantization_config
// (SPEC.md §1; "scale_fmt": "ue8m0" as DeepSeek-V3.1 writes it).
std::string output_config_text(const std::string& input_text, const std::string& source, bool ue8m0) {
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(input_text);
  } catch (const nlohmann::ordered_json::exception& e) {
    DSV3_FAIL("[quantize] ", source, " is not valid JSON (", e.what(), ")");
  }
  nlohmann::ordered_json q = nlohmann::ordered_json::object();
  q["activation_scheme"] = "dynamic";
  q["fmt"] = "e4m3";
  q["quant_method"] = "fp8";
  q["weight_block_size"] = {kBlock, kBlock};
  if (ue8m0) q["scale_fmt"] = "ue8m0";
  j["quantization_config"] = q;
  return j.dump(2) + "\n";
}

}  // namespace

QuantizeCheckpointStats quantize_checkpoint_fp8(const std::string& in_dir, const std::string& out_dir,
                                                const QuantizeCheckpointOptions& options) {
  const fs::path in(in_dir), out(out_dir);
  std::error_code ec;
  DSV3_CHECK(fs::is_directory(in, ec), "[quantize] --model ", in_dir,
             " is not a directory; pass a checkpoint directory (config.json + *.safetensors)");
  const fs::path config_path = in / "config.json";
  DSV3_CHECK(fs::is_regular_file(config_path, ec), "[quantize] ", in_dir,
             " has no config.json; pass a Hugging Face checkpoint directory (config.json + *.safetensors)");
  const std::string config_text = read_file(config_path);
  const ModelConfig config = parse_model_config(config_text, config_path.string());
  DSV3_CHECK(!config.quantization_config.fp8, "[quantize] ", in_dir,
             " is already FP8 (config.json has a quantization_config); quantize a BF16, F16 or F32 checkpoint");

  const TensorStore store = TensorStore::open_dir(in_dir);
  const std::vector<std::string> names = store.names();  // sorted
  for (const std::string& name : names) {
    const TensorView v = store.get(name);
    DSV3_CHECK(v.dtype != DType::F8_E4M3 && !ends_with(name, "_scale_inv"), "[quantize] ", in_dir,
               " is already FP8: tensor ", name, " in ", store.file_of(name), " is ", dtype_name(v.dtype),
               (ends_with(name, "_scale_inv") ? " (a block scale)" : ""),
               "; quantize a BF16, F16 or F32 checkpoint");
  }

  // What to write, in model order (hf_tensor_specs), then tensors config.json does not name.
  std::vector<Item> items;
  std::unordered_set<std::string> described;
  std::vector<std::string> missing;
  for (const HfTensorSpec& spec : hf_tensor_specs(config)) {
    described.insert(spec.name);
    if (!store.has(spec.name)) {
      missing.push_back(spec.name);
      continue;
    }
    Item item{spec.name, store.get(spec.name, spec.shape), spec.role == TensorRole::linear, 0};
    if (item.quantize) {
      const DType t = item.view.dtype;
      DSV3_CHECK(t == DType::F32 || t == DType::BF16 || t == DType::F16, "[quantize] tensor ", spec.name, " in ",
                 store.file_of(spec.name), " is ", dtype_name(t),
                 "; dsv3 quantize reads F32, BF16 or F16 weights: convert the checkpoint first");
    }
    items.push_back(std::move(item));
  }
  DSV3_CHECK(missing.empty(), "[quantize] ", in_dir, " lacks ", missing.size(),
             " tensor(s) that config.json describes, e.g. ", missing.empty() ? "" : missing.front(),
             "; config.json does not match the weights (or shards are missing)");
  QuantizeCheckpointStats stats;
  for (const std::string& name : names)
    if (!described.count(name)) {
      items.push_back(Item{name, store.get(name), false, 0});
      ++stats.undescribed_tensors;
    }
  for (Item& item : items) {
    item.bytes_out = item.quantize ? fp8_bytes(item.view.shape) : item.view.nbytes();
    stats.bytes_in += item.view.nbytes();
    stats.bytes_out += item.bytes_out;
    if (item.quantize) {
      ++stats.quantized_tensors;
      stats.quantized_bytes_in += item.view.nbytes();
      stats.quantized_bytes_out += item.bytes_out;
    } else {
      ++stats.copied_tensors;
    }
  }

  // Output shards: one per input file (in file-name order), or greedy by size.
  std::vector<std::vector<const Item*>> shards;
  if (options.max_shard_bytes == 0) {
    std::map<std::string, size_t> shard_of_file;
    for (const std::string& name : names) shard_of_file.emplace(store.file_of(name), 0);
    for (auto& [file, index] : shard_of_file) {
      index = shards.size();
      shards.emplace_back();
    }
    for (const Item& item : items) shards[shard_of_file.at(store.file_of(item.name))].push_back(&item);
  } else {
    shards.emplace_back();
    uint64_t shard_bytes = 0;
    for (const Item& item : items) {
      if (!shards.back().empty() && shard_bytes + item.bytes_out > options.max_shard_bytes) {
        shards.emplace_back();
        shard_bytes = 0;
      }
      shards.back().push_back(&item);
      shard_bytes += item.bytes_out;
    }
  }
  std::erase_if(shards, [](const std::vector<const Item*>& s) { return s.empty(); });
  stats.shards = int64_t(shards.size());
  // Validate the config text now, so nothing is written for a config that cannot be extended.
  const std::string out_config = output_config_text(config_text, config_path.string(), options.ue8m0_scales);
  const ModelConfig written = parse_model_config(out_config, (out / "config.json").string());
  DSV3_CHECK(written.quantization_config.fp8, "[quantize] internal error: the output config is not FP8");

  prepare_output_dir(in, out, options.force);

  ProgressBar progress("quantize", int64_t(stats.bytes_in), "B", options.show_progress);
  nlohmann::json weight_map = nlohmann::json::object();
  std::vector<float> stripe;
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string file = shard_file_name(i, shards.size());
    SafetensorsWriter writer;
    int64_t copied_bytes = 0;
    for (const Item* item : shards[i]) {
      if (item->quantize) {
        quantize_weight(*item, options.ue8m0_scales, stripe, progress, writer);
        weight_map[scale_inv_name(item->name)] = file;
      } else {
        writer.add(item->name, item->view.dtype, item->view.shape, item->view.data);  // straight from the mmap
        copied_bytes += int64_t(item->view.nbytes());
      }
      weight_map[item->name] = file;
    }
    writer.write_file((out / file).string());
    progress.add(copied_bytes);
  }  // each shard's FP8 tensors are freed before the next shard is quantized
  std::vector<float>().swap(stripe);

  if (shards.size() > 1) {
    const nlohmann::json index = {{"metadata", {{"total_size", stats.bytes_out}}}, {"weight_map", weight_map}};
    write_file_atomic((out / "model.safetensors.index.json").string(), index.dump(2) + "\n");
  }
  for (const char* side : kSideFiles)
    if (fs::is_regular_file(in / side, ec)) {
      write_file_atomic((out / side).string(), read_file(in / side));
      ++stats.copied_files;
    }
  write_file_atomic((out / "config.json").string(), out_config);  // last: marks the output complete
  progress.finish();
  return stats;
}

}  // namespace dsv3
