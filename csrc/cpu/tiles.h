// The tile driver every kernel op shares, and the epilogues (distance -> kernel value, weight).
//
// Structure (docs/math.md): a distance GEMM on register tiles, an elementwise epilogue (sqrt,
// exp, 1/distance) on an L2-resident tile, and a second GEMM of that tile with a value matrix.
// Nothing of size n x m (or q x n x d) is ever stored, except by kernel_matrix whose output it
// is.
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "kernels.h"
#include "microkernel.h"
#include "pack.h"
#include "parallel.h"
#include "simd.h"

namespace rfmfast {
namespace RFMFAST_VARIANT {

template <class T>
struct Blocks {
  static constexpr int NR = VT<T>::NR;
  static constexpr int64_t MB = MR * 8;   // rows of a tile
  static constexpr int64_t NB = 512;      // columns of a tile (multiple of NR)
  static constexpr int64_t LD = NB + 16;  // tile row stride: not a power of two (cache sets)
};

// tile[i][0:nbp] = the raw distance stage (dot products, or l1 distances) of the query rows A
// (mbp x r, row-major) against the points j0 .. j0+nb of the packed points Zp.
// The two GEMM stages are kept out of line (called once per tile, so the call costs nothing):
// inlined into the tile loop together with an op's epilogue they made one function too large
// for the register allocator, 20% slower (measured on kernel_grads, AVX-512, GCC 12).
template <class T>
__attribute__((noinline)) void distance_tile(const T* A, int64_t mbp, int64_t r, const T* Zp,
                                             int64_t j0, int64_t nb, bool l1, T* tile,
                                             int64_t ldt) {
  constexpr int NR = VT<T>::NR;
  const int64_t p0 = j0 / NR, np = (nb + NR - 1) / NR;
  for (int64_t p = 0; p < np; ++p) {
    const T* Bp = Zp + (p0 + p) * r * NR;
    for (int64_t i = 0; i < mbp; i += MR) {
      T* C = tile + i * ldt + p * NR;
      if (l1)
        microkernel<T, Acc::l1, Out::set>(r, RowsA<T>{A + i * r, r}, Bp, C, ldt);
      else
        microkernel<T, Acc::dot, Out::set>(r, RowsA<T>{A + i * r, r}, Bp, C, ldt);
    }
  }
}

// C (mbp x tp) += tile (mbp x nb) V[j0 : j0 + nb] for the packed values Vp (nrows x tp): the
// value GEMM, reading the tile's rows in place.
template <class T>
__attribute__((noinline)) void value_tile(const T* tile, int64_t mbp, int64_t nb, const T* Vp,
                                          int64_t nrows, int64_t j0, int64_t tp, T* C) {
  constexpr int NR = VT<T>::NR;
  constexpr int64_t LD = Blocks<T>::LD;
  for (int64_t p = 0; p < tp / NR; ++p) {
    const T* Bp = Vp + (p * nrows + j0) * NR;
    for (int64_t i = 0; i < mbp; i += MR)
      microkernel<T, Acc::dot, Out::add>(nb, RowsA<T>{tile + i * LD, LD}, Bp, C + i * tp + p * NR,
                                         tp);
  }
}

// ||S (x - z)||^2 of original rows x, z (d), in wider arithmetic; 0 for identical rows. St:
// S^T (d x r) in wider arithmetic (s_mode 2), or null: then S (x - z) is d axpys of length r
// over S^T's rows (vectorized, and a zero difference skips its row) instead of r dot products
// of length d. Each entry of S (x - z) is summed over k in the same order either way.
template <class T>
inline T exact_d2(const T* x, const T* z, const Exact<T>& ex, const Wide<T>* St) {
  const int64_t d = ex.d;
  if (std::memcmp(x, z, sizeof(T) * d) == 0) return T(0);
  Wide<T> s = 0;
  constexpr int64_t CAP = 512;  // r up to this: S (x - z) on the stack
  if (ex.s_mode == 2 && St != nullptr && ex.r <= CAP) {
    const int64_t r = ex.r;
    Wide<T> u[CAP];
    for (int64_t l = 0; l < r; ++l) u[l] = 0;
    for (int64_t k = 0; k < d; ++k) {
      const Wide<T> dk = Wide<T>(x[k]) - Wide<T>(z[k]);
      if (dk == 0) continue;
      const Wide<T>* row = St + k * r;
      for (int64_t l = 0; l < r; ++l) u[l] += row[l] * dk;
    }
    for (int64_t l = 0; l < r; ++l) s += u[l] * u[l];
  } else if (ex.s_mode == 2) {
    const int64_t r = ex.r;
    for (int64_t l = 0; l < r; ++l) {
      const T* Sl = ex.S + l * d;
      Wide<T> a = 0;
      for (int64_t k = 0; k < d; ++k) a += Wide<T>(Sl[k]) * (Wide<T>(x[k]) - Wide<T>(z[k]));
      s += a * a;
    }
  } else {
    for (int64_t k = 0; k < d; ++k) {
      Wide<T> dk = Wide<T>(x[k]) - Wide<T>(z[k]);
      if (ex.s_mode == 1) dk *= Wide<T>(ex.S[k]);
      s += dk * dk;
    }
  }
  return T(s);
}

// S^T (d x r) in wider arithmetic for exact_d2, when ex's factor is a matrix; else empty.
template <class T>
inline std::vector<Wide<T>> wide_factor_t(const Exact<T>* ex) {
  std::vector<Wide<T>> St;
  if (ex == nullptr || ex->s_mode != 2 || ex->S == nullptr) return St;
  const int64_t d = ex->d, r = ex->r;
  St.resize(d * r);
  for (int64_t l = 0; l < r; ++l)
    for (int64_t k = 0; k < d; ++k) St[k * r + l] = Wide<T>(ex->S[l * d + k]);
  return St;
}

// One tile row's place: the query's original row, the tile's first column and width; in
// gradient mode, where pairs resolved by differences go.
template <class T>
struct RowCtx {
  const T* x;  // the query's original row (d); unused without the distance rule
  int64_t j0, nb;
  std::vector<std::pair<int64_t, T>>* resolved;  // gradient mode: (column, weight) of such pairs
};

// The epilogue on one tile row: raw distance stage -> kernel value (weight = false) or the
// gradient weight (weight = true: K / D for laplace, K for gaussian; 0 for coincident pairs).
// With ex set, near pairs follow the distance rule (params.h); with ctx.resolved set, the pairs
// so resolved are listed there and zeroed in the row.
template <class T, bool weight>
struct Epilogue {
  Kind kind;
  T inv, ginv, eps, res;
  const Exact<T>* ex;       // null: no distance rule (l1 distances)
  std::vector<Wide<T>> St;  // ex's matrix factor transposed, for exact_d2

  Epilogue(Kind kind_, double bandwidth, const Exact<T>* ex_, double eps_ = 0)
      : kind(kind_),
        eps(T(eps_)),
        res(ex_ == nullptr ? T(0) : T(ex_->resolve)),
        ex(ex_),
        St(wide_factor_t(ex_)) {
    const T bw = T(bandwidth);
    inv = T(1) / bw;
    ginv = T(-0.5) / (bw * bw);
  }

  void operator()(T* row, int64_t nbp, T xn_i, const T* zn, const RowCtx<T>& ctx) const {
    constexpr int W = VT<T>::W;
    // locals, not members: stores to the row could otherwise alias them
    const Kind kind = this->kind;
    const T inv = this->inv, ginv = this->ginv, eps = this->eps, res = this->res;
    const Exact<T>* ex = this->ex;
    const Wide<T>* St = this->St.empty() ? nullptr : this->St.data();
    const vec<T> xn = bcast<T>(xn_i), zero{}, ratio = bcast<T>(res);
    for (int64_t j = 0; j < nbp; j += W) {
      vec<T> t = load(row + j);
      vec<T> out;
      if (kind == L1_LAPLACE) {
        out = vexp<T>(t * -inv);
      } else {
        const vec<T> s = xn + load(zn + j);
        vec<T> d2 = s - T(2) * t;
        d2 = d2 > zero ? d2 : zero;
        bool fixed = false;
        vec<T> fix_mask{};
        if (ex != nullptr && any_le(d2, ratio * s)) {  // rare: near pairs, self-pairs
          for (int l = 0; l < W; ++l) {
            if (j + l < ctx.nb && d2[l] <= res * s[l]) {
              d2[l] = exact_d2(ctx.x, ex->Z + (ctx.j0 + j + l) * ex->d, *ex, St);
              fix_mask[l] = T(1);
              fixed = true;
            }
          }
        }
        if (kind == GAUSSIAN) {
          out = vexp<T>(d2 * ginv);
          if (weight) out = d2 > zero ? out : zero;  // coincident: no gradient term
        } else {
          vec<T> dist = vsqrt(d2);
          vec<T> k = vexp<T>(dist * -inv);
          if (weight) {
            vec<T> safe = dist < eps ? bcast<T>(T(1)) : dist;
            out = dist < eps ? zero : k / safe;
          } else {
            out = k;
          }
        }
        if (fixed && ctx.resolved != nullptr) {
          for (int l = 0; l < W; ++l)
            if (fix_mask[l] != T(0)) {
              if (out[l] != T(0)) ctx.resolved->emplace_back(ctx.j0 + j + l, out[l]);
              out[l] = T(0);
            }
        }
      }
      store(row + j, out);
    }
  }
};

// Norms padded to the tile width, so the epilogue can read whole vectors.
template <class T>
inline void load_norms(const T* zn, int64_t j0, int64_t nb, int64_t nbp, T* buf) {
  std::memcpy(buf, zn + j0, sizeof(T) * nb);
  for (int64_t j = nb; j < nbp; ++j) buf[j] = T(0);
}

// One tile handed to an op: query rows [i0, i0 + mb) (mbp: rounded up to MR, the rows
// computed), center columns [j0, j0 + nb) (nbp: rounded up to NR), row i at data + i * ld, and
// the columns' norms zn (nbp, zero padded; all zero without norms).
template <class T>
struct Tile {
  int64_t i0, mb, mbp, j0, nb, nbp;
  T* data;
  int64_t ld;
  const T* zn;
};

struct NoState {};

// The loop every kernel op shares: row blocks of MB queries (p.xt, copied per block) over the
// threads, and for each block the column tiles [j0, j0 + nb) of the packed centers p.zp up to
// op.cols(i0, mb) = (first, end), each turned into a raw distance tile (dot products, or l1
// distances) with the column norms beside it. The op is a class with a per-thread State made
// by make(tid) (tid: the thread's index, below nthreads) and three steps: begin(state, i0, mb)
// before a block, tile(state, Tile) for each tile (the epilogue and what consumes it), end(state,
// i0, mb) after it. Ctrl-C stops it between blocks (Interrupted). rows: the block's queries, a
// multiple of MR up to MB (an op that keeps a block's whole row of kernel values sizes its blocks
// to the cache).
template <class T, class Op>
void for_each_tile(const DistanceParams<T>& p, const Op& op, int64_t rows = Blocks<T>::MB) {
  typedef Blocks<T> B;
  const int64_t r = p.r, nblocks = (p.n + rows - 1) / rows;
  const bool l1 = p.kind == L1_LAPLACE;
  std::atomic<bool> stop{false};
  auto last_poll = std::chrono::steady_clock::now();
  struct Scratch {
    int tid;
    std::vector<T> A, tile, znb;
    typename Op::State state;
  };
  const double work = double(p.n) * double(p.m) * double(r + 16);
  parallel_for(
      nblocks, threads_for(p.nthreads, work), 1,
      [&](int tid) {
        return Scratch{tid, std::vector<T>(B::MB * std::max<int64_t>(r, 1)),
                       std::vector<T>(B::MB * B::LD), std::vector<T>(B::NB, T(0)), op.make(tid)};
      },
      [&](Scratch& s, int64_t ib) {
        if (stop.load(std::memory_order_relaxed)) return;
        if (s.tid == 0 && interrupt_pending(last_poll)) stop.store(true);  // the calling thread
        const int64_t i0 = ib * rows, mb = std::min<int64_t>(rows, p.n - i0);
        const int64_t mbp = round_up(mb, MR);
        copy_rows(p.xt + i0 * r, mb, r, rows, s.A.data());
        op.begin(s.state, i0, mb);
        const auto [first, cend] = op.cols(i0, mb);
        for (int64_t j0 = first / B::NR * B::NR; j0 < cend; j0 += B::NB) {
          const int64_t nb = std::min<int64_t>(B::NB, cend - j0), nbp = round_up(nb, B::NR);
          distance_tile(s.A.data(), mbp, r, p.zp, j0, nb, l1, s.tile.data(), B::LD);
          if (p.zn != nullptr) load_norms(p.zn, j0, nb, nbp, s.znb.data());
          op.tile(s.state, Tile<T>{i0, mb, mbp, j0, nb, nbp, s.tile.data(), B::LD, s.znb.data()});
        }
        op.end(s.state, i0, mb);
      });
  if (stop.load()) throw Interrupted{};
}

}  // namespace RFMFAST_VARIANT
}  // namespace rfmfast
