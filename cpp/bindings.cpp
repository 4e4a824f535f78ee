// The only file that knows Python: checks and converts arrays, releases the GIL, calls the
// core. std::invalid_argument from the core becomes ValueError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "confroute/confroute.hpp"

namespace py = pybind11;
using namespace confroute;

namespace {

[[noreturn]] void fail(const std::string& msg) { throw py::value_error(msg); }

py::array as_array(py::handle obj, const std::string& name, int ndim) {
  py::array a;
  try {
    a = py::array::ensure(obj);
  } catch (py::error_already_set&) {
  }
  if (!a) fail(name + " must be array-like (a numpy array or nested lists of numbers)");
  if (a.ndim() != ndim) {
    std::string shape;
    for (py::ssize_t i = 0; i < a.ndim(); ++i) shape += (i ? ", " : "") + std::to_string(a.shape(i));
    fail(name + " must be " + std::to_string(ndim) + "-D, got shape (" + shape + ")");
  }
  return a;
}

char kind_of(const py::array& a) { return a.dtype().kind(); }

// Float data: float32 and float64 C-contiguous arrays are read in place; integer arrays and
// other float widths or strides are converted to float64 (a copy).
struct Values {
  py::array arr;
  bool is_f32;
};
Values values(py::handle obj, const std::string& name, int ndim) {
  py::array a = as_array(obj, name, ndim);
  const char k = kind_of(a);
  if (k != 'f' && k != 'i' && k != 'u')
    fail(name + " must hold real numbers, got dtype " + std::string(py::str(a.dtype())));
  if (k == 'f' && a.itemsize() == 4)
    return {py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(a), true};
  return {py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(a), false};
}

// Integer data: int32 and int64 C-contiguous arrays in place, other integer types converted.
struct Index {
  py::array arr;
  bool is_i32;
};
Index index(py::handle obj, const std::string& name) {
  py::array a = as_array(obj, name, 1);
  const char k = kind_of(a);
  if (k != 'i' && k != 'u' && a.size() > 0)  // [] arrives as float64; it holds no non-integer
    fail(name + " must hold integers, got dtype " + std::string(py::str(a.dtype())));
  if (k == 'i' && a.itemsize() == 4)
    return {py::array_t<int32_t, py::array::c_style | py::array::forcecast>::ensure(a), true};
  return {py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(a), false};
}

// Offsets are short (batch size + 1): int64 arrays are read in place, others widened.
py::array_t<int64_t> offsets(py::handle obj, const std::string& name) {
  py::array a = as_array(obj, name, 1);
  const char k = kind_of(a);
  if (k != 'i' && k != 'u' && a.size() > 0)  // [] arrives as float64; it holds no non-integer
    fail(name + " must hold integers, got dtype " + std::string(py::str(a.dtype())));
  return py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
}

template <class T>
const T* ptr(const py::array& a) {
  return static_cast<const T*>(a.data());
}

void check_len(const py::array& a, std::size_t n, const std::string& name,
               const std::string& what) {
  if (static_cast<std::size_t>(a.shape(0)) != n)
    fail(name + " has " + std::to_string(a.shape(0)) + " entries but " + what + " is " +
         std::to_string(n));
}

py::array_t<double> token_logprobs_py(py::handle logits_obj, py::handle ids_obj,
                                      double temperature, int n_threads) {
  const Values lg = values(logits_obj, "logits", 2);
  const Index ids = index(ids_obj, "token_ids");
  const std::size_t M = lg.arr.shape(0), V = lg.arr.shape(1);
  check_len(ids.arr, M, "token_ids", "the number of logits rows");
  py::array_t<double> out(M);
  double* o = out.mutable_data();
  py::gil_scoped_release nogil;
  if (lg.is_f32 && ids.is_i32) token_logprobs(ptr<float>(lg.arr), M, V, ptr<int32_t>(ids.arr), temperature, o, n_threads);
  else if (lg.is_f32) token_logprobs(ptr<float>(lg.arr), M, V, ptr<int64_t>(ids.arr), temperature, o, n_threads);
  else if (ids.is_i32) token_logprobs(ptr<double>(lg.arr), M, V, ptr<int32_t>(ids.arr), temperature, o, n_threads);
  else token_logprobs(ptr<double>(lg.arr), M, V, ptr<int64_t>(ids.arr), temperature, o, n_threads);
  return out;
}

py::array_t<double> sequence_logprobs_py(py::handle lp_obj, py::handle off_obj,
                                         const std::string& reduce) {
  const Reduce r = parse_reduce(reduce);
  const Values lp = values(lp_obj, "token_logprobs", 1);
  const auto off = offsets(off_obj, "token_offsets");
  if (off.shape(0) == 0) fail("token_offsets is empty: it needs S+1 entries, starting with 0");
  const std::size_t S = off.shape(0) - 1, T = lp.arr.shape(0);
  py::array_t<double> out(S);
  double* o = out.mutable_data();
  py::gil_scoped_release nogil;
  if (lp.is_f32) sequence_logprobs(ptr<float>(lp.arr), T, off.data(), S, r, o);
  else sequence_logprobs(ptr<double>(lp.arr), T, off.data(), S, r, o);
  return out;
}

py::array_t<int32_t> cluster_py(py::handle emb_obj, py::handle off_obj, double threshold,
                                const std::string& method, int n_threads) {
  const Method m = parse_method(method);
  const Values emb = values(emb_obj, "embeddings", 2);
  const auto off = offsets(off_obj, "sample_offsets");
  if (off.shape(0) == 0) fail("sample_offsets is empty: it needs B+1 entries, starting with 0");
  const std::size_t S = emb.arr.shape(0), D = emb.arr.shape(1), B = off.shape(0) - 1;
  py::array_t<int32_t> out(S);
  int32_t* o = out.mutable_data();
  py::gil_scoped_release nogil;
  if (emb.is_f32) cluster_by_similarity(ptr<float>(emb.arr), S, D, off.data(), B, threshold, m, o, n_threads);
  else cluster_by_similarity(ptr<double>(emb.arr), S, D, off.data(), B, threshold, m, o, n_threads);
  return out;
}

py::array_t<double> entropy_py(py::handle ids_obj, py::handle off_obj, py::object lp_obj,
                               const std::string& kind, int n_threads) {
  const Kind k = parse_kind(kind);
  const Index ids = index(ids_obj, "cluster_ids");
  const auto off = offsets(off_obj, "sample_offsets");
  if (off.shape(0) == 0) fail("sample_offsets is empty: it needs B+1 entries, starting with 0");
  const std::size_t S = ids.arr.shape(0), B = off.shape(0) - 1;
  Values lp{py::array(), false};
  if (!lp_obj.is_none()) {
    lp = values(lp_obj, "seq_logprobs", 1);
    check_len(lp.arr, S, "seq_logprobs", "the number of cluster_ids");
  } else if (k != Kind::Discrete) {
    fail("kind '" + kind + "' needs seq_logprobs (one per sample); 'discrete' does not");
  }
  py::array_t<double> out(B);
  double* o = out.mutable_data();
  const bool has_lp = !lp_obj.is_none();
  py::gil_scoped_release nogil;
  auto run = [&](auto* id_ptr) {
    if (!has_lp || !lp.is_f32)
      semantic_entropy(id_ptr, S, off.data(), B, has_lp ? ptr<double>(lp.arr) : nullptr, k, o, n_threads);
    else
      semantic_entropy(id_ptr, S, off.data(), B, ptr<float>(lp.arr), k, o, n_threads);
  };
  if (ids.is_i32) run(ptr<int32_t>(ids.arr));
  else run(ptr<int64_t>(ids.arr));
  return out;
}

template <class T>
py::array_t<T> to_numpy(std::vector<T>&& v) {
  return py::array_t<T>(v.size(), v.data());
}

py::dict confidence_batch_py(py::handle tlp_obj, py::handle toff_obj, py::handle emb_obj,
                             py::handle soff_obj, double threshold, const std::string& method,
                             const std::string& likelihood, int n_threads) {
  const Method m = parse_method(method);
  const Reduce red = parse_reduce(likelihood);
  const Values tlp = values(tlp_obj, "token_logprobs", 1);
  const auto toff = offsets(toff_obj, "token_offsets");
  const Values emb = values(emb_obj, "embeddings", 2);
  const auto soff = offsets(soff_obj, "sample_offsets");
  if (soff.shape(0) == 0) fail("sample_offsets is empty: it needs B+1 entries, starting with 0");
  const std::size_t S = emb.arr.shape(0), D = emb.arr.shape(1), B = soff.shape(0) - 1,
                    T = tlp.arr.shape(0);
  if (static_cast<std::size_t>(toff.shape(0)) != S + 1)
    fail("token_offsets has " + std::to_string(toff.shape(0)) +
         " entries but there are " + std::to_string(S) +
         " embedding rows (samples): it needs S+1 entries");
  ConfidenceBatch r;
  {
    py::gil_scoped_release nogil;
    auto run = [&](auto* tp) {
      if (emb.is_f32)
        r = confidence_batch(tp, T, toff.data(), ptr<float>(emb.arr), S, D, soff.data(), B, threshold, m, red, n_threads);
      else
        r = confidence_batch(tp, T, toff.data(), ptr<double>(emb.arr), S, D, soff.data(), B, threshold, m, red, n_threads);
    };
    if (tlp.is_f32) run(ptr<float>(tlp.arr));
    else run(ptr<double>(tlp.arr));
  }
  py::dict d;
  d["cluster_ids"] = to_numpy(std::move(r.cluster_ids));
  d["seq_logprob_sum"] = to_numpy(std::move(r.seq_logprob_sum));
  d["seq_logprob_mean"] = to_numpy(std::move(r.seq_logprob_mean));
  d["n_clusters"] = to_numpy(std::move(r.n_clusters));
  d["n_samples"] = to_numpy(std::move(r.n_samples));
  d["se_discrete"] = to_numpy(std::move(r.se_discrete));
  d["se_weighted"] = to_numpy(std::move(r.se_weighted));
  d["se_kuhn"] = to_numpy(std::move(r.se_kuhn));
  d["mean_token_logprob"] = to_numpy(std::move(r.mean_token_logprob));
  d["max_sequence_prob"] = to_numpy(std::move(r.max_sequence_prob));
  d["mean_perplexity"] = to_numpy(std::move(r.mean_perplexity));
  return d;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "confroute's C++ core (semantic entropy and baselines); see confroute.confidence";
  m.def("token_logprobs", &token_logprobs_py, py::arg("logits"), py::arg("token_ids"),
        py::arg("temperature") = 1.0, py::arg("n_threads") = 0, R"doc(Log-probability of ``token_ids[m]`` under softmax(logits[m] / temperature), for logits of
shape [M, V]; a max-shifted log-sum-exp, so any finite logits are safe.)doc");
  m.def("sequence_logprobs", &sequence_logprobs_py, py::arg("token_logprobs"),
        py::arg("token_offsets"), py::arg("reduce") = "mean", R"doc(Per sample: the sum of its token logprobs, or their mean (the length-normalized
log-likelihood). Every sample needs at least one token (a finished answer's end-of-generation
token): an empty sample has no likelihood and raises ValueError.)doc");
  m.def("cluster_by_similarity", &cluster_py, py::arg("embeddings"), py::arg("sample_offsets"),
        py::arg("threshold"), py::arg("method") = "greedy", py::arg("n_threads") = 0, R"doc(Groups each query's samples by the cosine similarity of their embeddings ([S, D], normalized
inside). ``greedy``: Kuhn et al.'s procedure, a sample joins the first cluster whose first
member has similarity >= threshold, else opens a new one. ``components``: connected
components of the graph with an edge where similarity >= threshold. Ids are local to each
query, numbered 0, 1, ... in order of first appearance.)doc");
  m.def("semantic_entropy", &entropy_py, py::arg("cluster_ids"), py::arg("sample_offsets"),
        py::arg("seq_logprobs") = py::none(), py::arg("kind") = "discrete",
        py::arg("n_threads") = 0, R"doc(``discrete``: p_c = n_c / N, SE = -sum p_c ln p_c. ``weighted``: ln p_c = logsumexp over the
cluster of the sequence logprobs minus logsumexp over all samples, SE = -sum p_c ln p_c.
``kuhn``: Kuhn et al.'s Eq. 2, -(1/|C|) sum_c ln p_c with the weighted p_c. Cluster ids are
local to each query and must lie in [0, n_samples of that query).)doc");
  m.def("confidence_batch", &confidence_batch_py, py::arg("token_logprobs"),
        py::arg("token_offsets"), py::arg("embeddings"), py::arg("sample_offsets"),
        py::arg("threshold"), py::arg("method") = "greedy", py::arg("likelihood") = "mean",
        py::arg("n_threads") = 0);
  m.def("build_info", [] { return std::string(build_info()); });
}
