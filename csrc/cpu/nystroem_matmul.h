// nystroem_matmul: out (m x t) = K(C, X) (K(X, C) V + W), each row block's kernel values
// computed once and used for both products (params.h).
//
// A row block of MB points gives its panel K(X_b, C) (MB x m, tile by tile, kept in the
// thread's buffer), U_b = K(X_b, C) V + W_b (the kernel_matmul tile step, then W), and then
// acc += K(X_b, C)^T U_b into the thread's own (t x m) accumulator; the threads' accumulators are
// summed at the end. Memory per thread: the panel (at most MB x m; sized to L2) and the
// accumulator (t x m, and its double total).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "kernel_matmul.h"
#include "params.h"
#include "tiles.h"

namespace rfmfast {
namespace RFMFAST_VARIANT {

// the transposed product's register block: CB value columns x JV vectors of centers (one column:
// 2 JV vectors); a row block's panel of kernel values is sized to stay in the core's L2
constexpr int NYS_CB = 2, NYS_JV = 4;
#ifndef RFMFAST_NYS_PANEL_BYTES
#define RFMFAST_NYS_PANEL_BYTES (128 * 1024)
#endif
constexpr int64_t NYS_PANEL_BYTES = RFMFAST_NYS_PANEL_BYTES;
// a thread's accumulator is added into its double total after this many rows: the sum over the
// rows of X is blocked, its rounding error that of NYS_FLUSH_ROWS + n / NYS_FLUSH_ROWS terms
constexpr int64_t NYS_FLUSH_ROWS = 512;

template <class T>
struct NystroemTiles {
  struct State {
    std::vector<T> U;      // (MB x tp): K(X_b, C) V + W_b
    std::vector<T> panel;  // (MB x mp): K(X_b, C), zero beyond column m
    T* acc;                // this thread's (tc x mp) accumulator of K^T U, transposed
    double* total;         // what acc held before its last flush, summed in double
    int64_t pending;       // rows added to acc since then
  };
  const NystroemMatmulParams<T>& p;
  Epilogue<T, false> epilogue;
  int64_t tp, tc, mp;  // U's row stride, the accumulator's rows (t rounded to NYS_CB), its width
  int64_t rows;        // a row block's queries
  T* accs;             // nthreads x tc x mp, zeroed
  double* totals;      // the same shape

  State make(int tid) const {
    State s;
    s.U.assign(rows * tp, T(0));
    s.panel.assign(rows * mp, T(0));
    s.acc = accs + int64_t(tid) * tc * mp;
    s.total = totals + int64_t(tid) * tc * mp;
    s.pending = 0;
    return s;
  }
  std::pair<int64_t, int64_t> cols(int64_t, int64_t) const { return {0, p.m}; }
  void begin(State& s, int64_t, int64_t) const { std::fill(s.U.begin(), s.U.end(), T(0)); }
  void tile(State& s, const Tile<T>& tl) const {
    for (int64_t i = 0; i < tl.mb; ++i) {
      const RowCtx<T> ctx{p.ex.X + (tl.i0 + i) * p.ex.d, tl.j0, tl.nb, nullptr};
      epilogue(tl.data + i * tl.ld, tl.nbp, p.xn[tl.i0 + i], tl.zn, ctx);
    }
    values_step(tl, p.vp, p.vt, p.m, p.t, tp, s.U.data());
    for (int64_t i = 0; i < tl.mb; ++i)
      std::memcpy(s.panel.data() + i * mp + tl.j0, tl.data + i * tl.ld, sizeof(T) * tl.nb);
  }
  void end(State& s, int64_t i0, int64_t mb) const {
    const int64_t t = p.t;
    if (p.w != nullptr)
      for (int64_t i = 0; i < mb; ++i)
        for (int64_t c = 0; c < t; ++c) s.U[i * tp + c] += p.w[(i0 + i) * t + c];
    if (tc == 1)
      transposed_product<1, 2 * NYS_JV>(s, mb);
    else
      transposed_product<NYS_CB, NYS_JV>(s, mb);
    s.pending += mb;
    if (s.pending >= NYS_FLUSH_ROWS) {  // a sum over n rows in T would lose sqrt(n) digits
      for (int64_t k = 0; k < tc * mp; ++k) {
        s.total[k] += double(s.acc[k]);
        s.acc[k] = T(0);
      }
      s.pending = 0;
    }
  }
  // acc[c][j] += sum_i panel[i][j] U[i][c], CB x JV vectors of accumulators held in registers
  // over the block's rows; the columns of U from t to tc are zero and the panel's past m are
  // zero, so whole register blocks need no guard.
  template <int CB, int JV>
  void transposed_product(State& s, int64_t mb) const {
    constexpr int64_t W = VT<T>::W;
    const T* P = s.panel.data();
    const T* U = s.U.data();
    for (int64_t j = 0; j < mp; j += JV * W) {
      for (int64_t c0 = 0; c0 < tc; c0 += CB) {
        vec<T> acc[CB][JV];
        for (int cc = 0; cc < CB; ++cc)
          for (int v = 0; v < JV; ++v) acc[cc][v] = load(s.acc + (c0 + cc) * mp + j + v * W);
        for (int64_t i = 0; i < mb; ++i) {
          vec<T> k[JV];
          for (int v = 0; v < JV; ++v) k[v] = load(P + i * mp + j + v * W);
          for (int cc = 0; cc < CB; ++cc) {
            const vec<T> u = bcast<T>(U[i * tp + c0 + cc]);
            for (int v = 0; v < JV; ++v) acc[cc][v] = vfma(k[v], u, acc[cc][v]);
          }
        }
        for (int cc = 0; cc < CB; ++cc)
          for (int v = 0; v < JV; ++v) store(s.acc + (c0 + cc) * mp + j + v * W, acc[cc][v]);
      }
    }
  }
};

template <class T>
void nystroem_matmul(const NystroemMatmulParams<T>& p) {
  constexpr int64_t JW = NYS_JV * VT<T>::W;
  const int64_t t = p.t, m = p.m;
  // U's stride: t (dot products) or t rounded up to NR (the value GEMM), and at least tc
  const int64_t tc = t == 1 ? 1 : round_up(t, NYS_CB), mp = round_up(m, 2 * JW);
  const int64_t tp = std::max(p.vp == nullptr ? t : round_up(t, VT<T>::NR), tc);
  const int nthreads = std::max(p.nthreads, 1);
  std::vector<T> accs(int64_t(nthreads) * tc * mp, T(0));
  std::vector<double> totals(accs.size(), 0.0);
  const int64_t fit = NYS_PANEL_BYTES / int64_t(sizeof(T) * mp) / MR * MR;
  const int64_t rows = std::clamp<int64_t>(fit, MR, Blocks<T>::MB);
  const NystroemTiles<T> op{p,           Epilogue<T, false>(p.kind, p.bandwidth, &p.ex),
                            tp,          tc,
                            mp,          rows,
                            accs.data(), totals.data()};
  for_each_tile<T>(p, op, rows);
  // out[j][c] = the threads' sum of total[c][j] + acc[c][j]
  const int rt = threads_for(nthreads, 4.0 * double(m) * double(t) * nthreads);
  parallel_for(m, rt, chunk_for(m, rt), [&](int64_t j) {
    for (int64_t c = 0; c < t; ++c) {
      double s = 0;
      for (int th = 0; th < nthreads; ++th) {
        const int64_t k = (int64_t(th) * tc + c) * mp + j;
        s += totals[k] + double(accs[k]);
      }
      p.out[j * t + c] = T(s);
    }
  });
}

}  // namespace RFMFAST_VARIANT
}  // namespace rfmfast
