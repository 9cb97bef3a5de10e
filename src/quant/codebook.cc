#include "quant/codebook.h"

#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "quant/value_basis.h"
#include "util/atomic_file.h"
#include "util/error.h"
#include "util/escape.h"
#include "util/input_file.h"

namespace cqkv {
namespace {

// File layout (all integers little-endian):
//   "CQCB" | uint32 version | uint64 header_len | JSON header (header_len bytes)
//   | float32 centroids of (layer 0, K), (layer 0, V), (layer 1, K), ... each (n_groups, 2^b, c)
//   | (version 2, additive or residual values only) float32 value bases per layer, each
//     (n_groups, value_basis_rows(), c): b + 1 rows (additive), 2 * 2^(b/2) (residual)
//   | uint64 FNV-1a of every byte before it
// Version 2 added the header field "values" (the value kind); version 1 files have none and
// hold k-means values. Version 3 added "key_kind"; files with k-means keys are still written
// as version 2, so builds before key kinds keep reading them.
constexpr char kMagic[4] = {'C', 'Q', 'C', 'B'};
constexpr uint32_t kVersion = 3;
constexpr size_t kPrefixBytes = 4 + 4 + 8;
static_assert(std::endian::native == std::endian::little, "codebook I/O assumes little-endian");

uint64_t Fnv1a(const uint8_t* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

template <typename T>
void Put(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}

template <typename T>
T Get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Floats in one (layer, kind) table.
uint64_t TableFloats(const CodebookSet& s) {
  return static_cast<uint64_t>(s.n_groups()) * s.config.n_centroids() * s.config.channels;
}

// Floats in one layer's value bases (additive or residual values).
uint64_t BasisFloats(const CodebookSet& s) {
  return static_cast<uint64_t>(s.n_groups()) * s.value_basis_rows() * s.config.channels;
}

// Header-level consistency shared by Save and Load (`what` prefixes the message).
void CheckShape(const CodebookSet& s, const std::string& what) {
  const CqConfig& c = s.config;
  CQKV_CHECK(c.channels >= 1 && c.channels <= 64 && c.bits >= 1 && c.bits <= 16,
             "{}: config c={} b={} out of range (c 1..64, b 1..16)", what, c.channels, c.bits);
  CQKV_CHECK(s.n_layers >= 1 && s.n_layers <= 4096 && s.n_kv_heads >= 1 && s.n_kv_heads <= 4096 &&
                 s.head_dim >= 1 && s.head_dim <= 65536,
             "{}: implausible shape ({} layers, {} KV heads, head dim {})", what, s.n_layers,
             s.n_kv_heads, s.head_dim);
  CQKV_CHECK(s.head_dim % c.channels == 0,
             "{}: sizes inconsistent: group size c={} does not divide head dim {}", what,
             c.channels, s.head_dim);
  CQKV_CHECK(s.values == ValueKind::kKMeans || c.bits <= 12,
             "{}: {} values need b <= 12 bits, config has {}", what, ValueKindName(s.values),
             c.bits);
  CQKV_CHECK(s.values != ValueKind::kResidual || c.bits % 2 == 0,
             "{}: residual values need an even b (two stages of 2^(b/2)), config has {}", what,
             c.bits);
  CQKV_CHECK(
      s.key_kind == KeyKind::kKMeans || (s.keys == KeyPosition::kPreRope && c.channels % 2 == 0),
      "{}: rope-comm keys need pre-RoPE keys and an even group size (whole RoPE pairs), "
      "config {} has {} keys",
      what, c.Name(), KeyPositionName(s.keys));
  CQKV_CHECK(s.objective.empty() || s.objective.size() == static_cast<size_t>(2 * s.n_layers),
             "{}: sizes inconsistent: {} objective values for {} layers", what, s.objective.size(),
             s.n_layers);
}

std::string ParseHex64(const std::string& text, uint64_t* out) {
  const char* end = text.data() + text.size();
  const auto r = std::from_chars(text.data(), end, *out, 16);
  if (text.empty() || text.size() > 16 || r.ec != std::errc() || r.ptr != end) {
    return "field \"model_fingerprint\" '" + Escaped(text) + "' is not a hex number";
  }
  return "";
}

// Reads the JSON header into `s` (the fields SaveCodebooks writes, nothing else). Returns why it
// is refused, naming the field, or "". Integers must be JSON integers in range: 1.5, true or
// 4294967300 (which a plain get<int> wraps to 4) are refused, as are duplicate keys, which a
// JSON parser silently resolves to the last one.
std::string ParseHeader(const std::string& text, uint32_t version, CodebookSet& s) {
  std::vector<std::set<std::string>> keys_seen;
  std::string duplicate;
  const nlohmann::json::parser_callback_t on_event = [&](int, nlohmann::json::parse_event_t ev,
                                                         nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (ev == E::object_start) keys_seen.emplace_back();
    if (ev == E::object_end && !keys_seen.empty()) keys_seen.pop_back();
    if (ev == E::key && !keys_seen.empty() &&
        !keys_seen.back().insert(parsed.get<std::string>()).second && duplicate.empty()) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  const nlohmann::json h = nlohmann::json::parse(text, on_event);
  if (!duplicate.empty()) return fmt::format("field \"{}\" appears twice", Escaped(duplicate));
  if (!h.is_object()) return "not a JSON object";
  std::set<std::string> kFields = {"config",     "c",           "b",
                                   "keys",       "fisher",      "n_layers",
                                   "n_kv_heads", "head_dim",    "model_fingerprint",
                                   "model_name", "calibration", "objective",
                                   "layout"};
  if (version >= 2) kFields.insert("values");
  if (version >= 3) kFields.insert("key_kind");
  for (const auto& [k, v] : h.items()) {
    if (!kFields.contains(k)) return fmt::format("unknown field \"{}\"", Escaped(k));
  }
  for (const std::string& k : kFields) {
    if (!h.contains(k)) return fmt::format("missing field \"{}\"", k);
  }
  auto int_field = [&](const char* key, int lo, int hi, int& out) -> std::string {
    const auto& v = h.at(key);
    // Unsigned JSON integers above INT64_MAX would wrap in get<int64_t>; none is in range.
    const bool ok =
        v.is_number_integer() &&
        (v.is_number_unsigned() ? v.get<uint64_t>() <= static_cast<uint64_t>(hi) : true) &&
        v.get<int64_t>() >= lo && v.get<int64_t>() <= hi;
    if (!ok) {
      return fmt::format("field \"{}\" is {}, expected an integer in [{}, {}]", key,
                         Escaped(v.dump()), lo, hi);
    }
    out = v.get<int>();
    return "";
  };
  auto string_field = [&](const char* key, std::string& out) -> std::string {
    const auto& v = h.at(key);
    if (!v.is_string())
      return fmt::format("field \"{}\" is {}, expected a string", key, Escaped(v.dump()));
    out = v.get<std::string>();
    return "";
  };
  std::string err, config, keys, fingerprint, layout;
  if (!(err = int_field("c", 1, 64, s.config.channels)).empty()) return err;
  if (!(err = int_field("b", 1, 16, s.config.bits)).empty()) return err;
  if (!(err = int_field("n_layers", 1, 4096, s.n_layers)).empty()) return err;
  if (!(err = int_field("n_kv_heads", 1, 4096, s.n_kv_heads)).empty()) return err;
  if (!(err = int_field("head_dim", 1, 65536, s.head_dim)).empty()) return err;
  if (!(err = string_field("config", config)).empty()) return err;
  if (config != s.config.Name()) {
    return fmt::format("field \"config\" is \"{}\" but \"c\" and \"b\" say {}", Escaped(config),
                       s.config.Name());
  }
  if (!(err = string_field("keys", keys)).empty()) return err;
  if (keys != "pre-rope" && keys != "post-rope") {
    return fmt::format("field \"keys\" is \"{}\", expected \"pre-rope\" or \"post-rope\"",
                       Escaped(keys));
  }
  s.keys = ParseKeyPosition(keys);
  if (!h.at("fisher").is_boolean()) {
    return fmt::format("field \"fisher\" is {}, expected true or false",
                       Escaped(h.at("fisher").dump()));
  }
  s.fisher = h.at("fisher").get<bool>();
  if (!(err = string_field("model_fingerprint", fingerprint)).empty()) return err;
  if (!(err = ParseHex64(fingerprint, &s.model_fingerprint)).empty()) return err;
  if (!(err = string_field("model_name", s.model_name)).empty()) return err;
  if (!(err = string_field("calibration", s.calibration)).empty()) return err;
  if (!(err = string_field("layout", layout)).empty()) return err;
  if (version >= 2) {
    std::string values;
    if (!(err = string_field("values", values)).empty()) return err;
    if (values != "kmeans" && values != "additive" && values != "residual") {
      return fmt::format(
          "field \"values\" is \"{}\", expected \"kmeans\", \"additive\" or \"residual\"",
          Escaped(values));
    }
    s.values = ParseValueKind(values);
  }
  if (version >= 3) {
    std::string kind;
    if (!(err = string_field("key_kind", kind)).empty()) return err;
    if (kind != "kmeans" && kind != "rope-comm") {
      return fmt::format("field \"key_kind\" is \"{}\", expected \"kmeans\" or \"rope-comm\"",
                         Escaped(kind));
    }
    s.key_kind = ParseKeyKind(kind);
  }
  const auto& obj = h.at("objective");
  if (!obj.is_array()) return "field \"objective\" is not an array";
  for (const auto& x : obj) {
    if (!x.is_number() || !std::isfinite(x.get<double>())) {
      return fmt::format("field \"objective\" holds {}, expected finite numbers",
                         Escaped(x.dump()));
    }
    s.objective.push_back(x.get<double>());
  }
  return "";
}

}  // namespace

std::string CqConfig::Name() const { return fmt::format("{}c{}b", channels, bits); }

CqConfig CqConfig::Parse(const std::string& text) {
  // Strictly <digits>c<digits>b.
  const char* p = text.data();
  const char* end = p + text.size();
  int c = 0, b = 0;
  auto r1 = std::from_chars(p, end, c);
  bool ok = r1.ec == std::errc() && r1.ptr < end && *r1.ptr == 'c';
  if (ok) {
    auto r2 = std::from_chars(r1.ptr + 1, end, b);
    ok = r2.ec == std::errc() && r2.ptr + 1 == end && *r2.ptr == 'b';
  }
  CQKV_CHECK(ok, "CQ config '{}' is not of the form <c>c<b>b (e.g. 4c8b)", text);
  CQKV_CHECK(c >= 1 && c <= 64 && b >= 1 && b <= 16,
             "CQ config '{}': c must be in 1..64 and b in 1..16", text);
  return CqConfig{c, b};
}

const char* KeyPositionName(KeyPosition p) {
  return p == KeyPosition::kPreRope ? "pre-rope" : "post-rope";
}

KeyPosition ParseKeyPosition(const std::string& text) {
  if (text == "pre-rope") return KeyPosition::kPreRope;
  if (text == "post-rope") return KeyPosition::kPostRope;
  Fail("key position '{}' must be 'pre-rope' or 'post-rope'", text);
}

const char* ValueKindName(ValueKind v) {
  switch (v) {
    case ValueKind::kAdditive:
      return "additive";
    case ValueKind::kResidual:
      return "residual";
    default:
      return "kmeans";
  }
}

ValueKind ParseValueKind(const std::string& text) {
  if (text == "kmeans") return ValueKind::kKMeans;
  if (text == "additive") return ValueKind::kAdditive;
  if (text == "residual") return ValueKind::kResidual;
  Fail("value kind '{}' must be 'kmeans', 'additive' or 'residual'", text);
}

const char* KeyKindName(KeyKind k) { return k == KeyKind::kRopeComm ? "rope-comm" : "kmeans"; }

KeyKind ParseKeyKind(const std::string& text) {
  if (text == "kmeans") return KeyKind::kKMeans;
  if (text == "rope-comm") return KeyKind::kRopeComm;
  Fail("key kind '{}' must be 'kmeans' or 'rope-comm'", text);
}

void SaveCodebooks(const CodebookSet& set, const std::string& path) {
  const std::string what = "codebook file " + Escaped(path);
  CheckShape(set, what);
  const uint64_t floats = TableFloats(set);
  CQKV_CHECK(set.centroids.size() == static_cast<size_t>(2 * set.n_layers),
             "{}: {} centroid tables for {} layers x (K, V)", what, set.centroids.size(),
             set.n_layers);
  for (const auto& t : set.centroids) {
    CQKV_CHECK(t.size() == floats, "{}: a centroid table has {} floats, expected {}", what,
               t.size(), floats);
  }
  const bool has_basis = set.values != ValueKind::kKMeans;
  CQKV_CHECK(set.value_basis.size() == (has_basis ? static_cast<size_t>(set.n_layers) : 0),
             "{}: {} value bases for {} layers of {} values", what, set.value_basis.size(),
             set.n_layers, ValueKindName(set.values));
  for (const auto& b : set.value_basis) {
    CQKV_CHECK(b.size() == BasisFloats(set), "{}: a value basis has {} floats, expected {}", what,
               b.size(), BasisFloats(set));
  }
  nlohmann::json h;
  h["config"] = set.config.Name();
  h["c"] = set.config.channels;
  h["b"] = set.config.bits;
  h["keys"] = KeyPositionName(set.keys);
  h["fisher"] = set.fisher;
  h["n_layers"] = set.n_layers;
  h["n_kv_heads"] = set.n_kv_heads;
  h["head_dim"] = set.head_dim;
  // Hex string: JSON readers in other languages lose 64-bit integers.
  h["model_fingerprint"] = fmt::format("{:016x}", set.model_fingerprint);
  h["model_name"] = set.model_name;
  h["calibration"] = set.calibration;
  h["objective"] = set.objective;
  h["values"] = ValueKindName(set.values);
  const bool key_kind = set.key_kind != KeyKind::kKMeans;
  if (key_kind) h["key_kind"] = KeyKindName(set.key_kind);
  h["layout"] =
      set.values == ValueKind::kAdditive
          ? "float32 tables per (layer, K then V), each (n_groups, 2^b, c) "
            "row-major, then value bases per layer, each (n_groups, b + 1, c)"
      : set.values == ValueKind::kResidual
          ? "float32 tables per (layer, K then V), each (n_groups, 2^b, c) row-major, then value "
            "stages per layer, each (n_groups, 2 * 2^(b/2), c): stage A rows, then stage B"
          : "float32 tables per (layer, K then V), each (n_groups, 2^b, c) row-major";
  const std::string header = h.dump(1);

  std::string out;
  out.reserve(kPrefixBytes + header.size() + 2 * set.n_layers * floats * 4 + 8);
  out.append(kMagic, 4);
  Put<uint32_t>(out, key_kind ? kVersion : 2);
  Put<uint64_t>(out, header.size());
  out += header;
  for (const auto& t : set.centroids) {
    out.append(reinterpret_cast<const char*>(t.data()), t.size() * sizeof(float));
  }
  for (const auto& b : set.value_basis) {
    out.append(reinterpret_cast<const char*>(b.data()), b.size() * sizeof(float));
  }
  Put<uint64_t>(out, Fnv1a(reinterpret_cast<const uint8_t*>(out.data()), out.size()));
  WriteFileAtomic(path, out);
}

CodebookSet LoadCodebooks(const std::string& path) {
  const std::string what = "codebook file " + Escaped(path);
  const std::string bytes = ReadInputFile(path, kMaxCodebookFileBytes, "codebook file");
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t size = bytes.size();
  CQKV_CHECK(size >= 4 && std::memcmp(p, kMagic, 4) == 0,
             "{}: not a cqkv codebook file (bad magic)", what);
  CQKV_CHECK(size >= kPrefixBytes, "{}: truncated ({} bytes)", what, size);
  const uint32_t version = Get<uint32_t>(p + 4);
  CQKV_CHECK(version >= 1 && version <= kVersion,
             "{}: unsupported version {} (this build reads versions 1 to {})", what, version,
             kVersion);
  const uint64_t header_len = Get<uint64_t>(p + 8);
  CQKV_CHECK(header_len <= size && kPrefixBytes + header_len + 8 <= size,
             "{}: truncated (header of {} bytes, file of {})", what, header_len, size);
  // A corrupted header usually fails to parse; say it is corrupt rather than blame the header.
  const bool checksum_ok = Fnv1a(p, size - 8) == Get<uint64_t>(p + size - 8);
  CodebookSet s;
  std::string bad;  // why the header is refused, naming the field
  try {
    bad = ParseHeader(bytes.substr(kPrefixBytes, header_len), version, s);
  } catch (const std::exception& e) {  // malformed JSON
    bad = fmt::format("not valid JSON: {}", e.what());
  }
  if (!bad.empty()) {
    CQKV_CHECK(checksum_ok, "{}: corrupted (checksum mismatch)", what);
    Fail("{}: bad header: {}", what, bad);
  }
  try {
    CheckShape(s, what);
  } catch (const Error&) {
    CQKV_CHECK(checksum_ok, "{}: corrupted (checksum mismatch)", what);
    throw;
  }
  const uint64_t floats = TableFloats(s);
  const bool has_basis = s.values != ValueKind::kKMeans;
  const uint64_t basis_floats = has_basis ? BasisFloats(s) : 0;
  const uint64_t expected =
      kPrefixBytes + header_len + (2 * floats + basis_floats) * s.n_layers * 4 + 8;
  CQKV_CHECK(size >= expected, "{}: truncated ({} bytes, the header implies {})", what, size,
             expected);
  CQKV_CHECK(size == expected,
             "{}: sizes inconsistent ({} bytes, the header implies {}: trailing data)", what, size,
             expected);
  CQKV_CHECK(checksum_ok, "{}: corrupted (checksum mismatch)", what);
  const uint8_t* data = p + kPrefixBytes + header_len;
  s.centroids.resize(static_cast<size_t>(2 * s.n_layers));
  for (auto& t : s.centroids) {
    t.resize(floats);
    std::memcpy(t.data(), data, floats * sizeof(float));
    data += floats * sizeof(float);
    for (float v : t) CQKV_CHECK(std::isfinite(v), "{}: non-finite centroid value", what);
  }
  if (has_basis) {
    const int k = s.config.n_centroids(), c = s.config.channels;
    std::vector<float> expanded(static_cast<size_t>(k) * c);
    s.value_basis.resize(static_cast<size_t>(s.n_layers));
    for (int l = 0; l < s.n_layers; ++l) {
      auto& b = s.value_basis[l];
      b.resize(basis_floats);
      std::memcpy(b.data(), data, basis_floats * sizeof(float));
      data += basis_floats * sizeof(float);
      for (float v : b) CQKV_CHECK(std::isfinite(v), "{}: non-finite value basis", what);
      // The kernels sum bases, the other paths read centroids: both must be the same values.
      for (int g = 0; g < s.n_groups(); ++g) {
        ExpandValueBasis(s.values, s.config.bits, c, s.ValueBasis(l, g), expanded.data());
        CQKV_CHECK(std::memcmp(expanded.data(), s.Table(l, 1, g), expanded.size() * 4) == 0,
                   "{}: layer {} group {}: value centroids are not the expansion of the {} value "
                   "basis",
                   what, l, g, ValueKindName(s.values));
      }
    }
  }
  return s;
}

}  // namespace cqkv
