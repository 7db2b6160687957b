/* The neuron time loop of train/neurons.py in C, for the CPU: forward and backward, the same contract
 * as the Triton kernels (train/triton_kernels.py) and the same arithmetic, operation for operation,
 * as the torch reference loop (neurons._NeuronSequence), which the tests compare it with.
 *
 * Forward, steps t0 .. t0+n-1, neurons of rows [row0, row1) of the flat (B, NF) step:
 *     i = x + i * ds                     (CUBA; LIF: i = x)
 *     v = i + r * dm (+ b);  o = v > th;  r = v - v * o
 * Backward, steps t_hi-1 down to t_hi-n, with c = gv_next * dm:
 *     g  = grad[t] (+ rec) (- c * v unless detach);  gh = g * h(v - th)
 *     gv = gh + (c - c * o);  ga = gv + gi_next * ds (CUBA; LIF: ga = gv);  GI[t] = ga
 * (o recomputed as v > th, bit for bit what the forward wrote, saves reading the spikes back)
 * and per-neuron sums over t of gv * r[t-1] (decay_mem), ga * i[t-1] (decay_syn), gh (threshold,
 * negated by the caller) and gv (bias). State between calls lives in the *_state buffers; `init`
 * starts from rest. Parameters are read at p * stride (stride 0: one shared value).
 * Built without FP contraction (-ffp-contract=off) so that a * b + c rounds twice, as in torch.
 * Loop order: time outside, then the batch rows, the row's neurons innermost (contiguous, vectorised):
 * every array is read as a sequential stream. The inner loops are specialised on the model and the
 * surrogate (always-inline helpers called with constant arguments); spikes are selected without
 * branches. Built for the host CPU (-march=native; the cache key holds the CPU's flags).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))
#define BWD(SUF, C, K)                                                                               \
    (has_rec ? backward_row_##SUF(G, rec, V, I, GI, gv, gi, sm, ss, st, sb, gh_row, ds, dm, th, c0,  \
                                  c1, K, keep, M, NF, base, t, C, 1, need_mem, need_syn, need_th,    \
                                  need_bias)                                                         \
             : backward_row_##SUF(G, rec, V, I, GI, gv, gi, sm, ss, st, sb, gh_row, ds, dm, th, c0,  \
                                  c1, K, keep, M, NF, base, t, C, 0, need_mem, need_syn, need_th,    \
                                  need_bias))

#define DEFINE_LOOPS(T, SUF, EXP, ABS)                                                               \
INLINE T surrogate_##SUF(T x, const int code, T c0, T c1) {                                          \
    switch (code) {                                                                                  \
    case 0: return (T)(ABS(x) < c0) / c1;                        /* rectangular */                   \
    case 1: { T h = c0 - c1 * ABS(x); return h > 0 ? h : (T)0; } /* polynomial */                    \
    case 2: { T s = (T)1 / ((T)1 + EXP(-(x / c0))); return (s - s * s) / c1; } /* sigmoid */         \
    case 3: return EXP(-(x * x) / c0) / c1;                      /* gaussian */                      \
    case 4: { T y = x * c0; return (T)1 / ((T)1 + y * y); }      /* arctan */                        \
    default: { T y = (T)1 + ABS(x) / c0; return (T)1 / (y * y); } /* fast_sigmoid */                 \
    }                                                                                                \
}                                                                                                    \
                                                                                                     \
/* One row (NF neurons) over steps t0 .. t0+n-1. */                                                  \
INLINE void forward_row_##SUF(const T *restrict x, int64_t x_step, T *restrict V, T *restrict O,     \
                              T *restrict I, T *restrict r, T *restrict cur, const T *restrict ds,   \
                              const T *restrict dm, const T *restrict th, const T *restrict b,       \
                              int64_t M, int64_t NF, int64_t base, int64_t t0, int64_t n,            \
                              const int cuba, const int save_i) {                                    \
    for (int64_t t = t0; t < t0 + n; ++t) {                                                          \
        const T *restrict xt = x + t * x_step + base;                                                \
        T *restrict Vt = V + t * M + base, *restrict Ot = O + t * M + base;                          \
        T *restrict It = I + t * M + base;                                                           \
        for (int64_t p = 0; p < NF; ++p) {                                                           \
            T c = xt[p];                                                                             \
            if (cuba) {                                                                              \
                c = c + cur[p] * ds[p];                                                              \
                cur[p] = c;                                                                          \
                if (save_i) It[p] = c;                                                               \
            }                                                                                        \
            T v = c + r[p] * dm[p];                                                                  \
            v = v + b[p];                                                                            \
            T o = (T)(v > th[p]);                                                                    \
            Vt[p] = v;                                                                               \
            Ot[p] = o;                                                                               \
            r[p] = v - v * o;                                                                        \
        }                                                                                            \
    }                                                                                                \
}                                                                                                    \
                                                                                                     \
/* Parameters arrive expanded to NF values each; a missing bias is zeros (v + 0 = v exactly). */     \
void forward_##SUF(const T *x, int64_t x_step, T *V, T *O, T *I, T *r_state, T *i_state,             \
                   const T *ds, const T *dm, const T *th, const T *b,                                \
                   int64_t M, int64_t NF, int64_t row0, int64_t row1, int64_t t0, int64_t n,        \
                   int cuba, int save_i, int init) {                                                 \
    if (init) {                                                                                      \
        memset(r_state + row0 * NF, 0, (size_t)((row1 - row0) * NF) * sizeof(T));                   \
        memset(i_state + row0 * NF, 0, (size_t)((row1 - row0) * NF) * sizeof(T));                   \
    }                                                                                                \
    for (int64_t t = t0; t < t0 + n; ++t)                                                            \
        for (int64_t row = row0; row < row1; ++row) {                                                \
            int64_t base = row * NF;                                                                 \
            T *r = r_state + base, *cur = i_state + base;                                            \
            if (!cuba)                                                                               \
                forward_row_##SUF(x, x_step, V, O, I, r, cur, ds, dm, th, b, M, NF, base, t, 1, 0, 0); \
            else if (!save_i)                                                                        \
                forward_row_##SUF(x, x_step, V, O, I, r, cur, ds, dm, th, b, M, NF, base, t, 1, 1, 0); \
            else                                                                                     \
                forward_row_##SUF(x, x_step, V, O, I, r, cur, ds, dm, th, b, M, NF, base, t, 1, 1, 1); \
        }                                                                                            \
}                                                                                                    \
                                                                                                     \
/* One row, one step t. keep = 1 - detach (g - c v * 1 rounds as g - c v). The main loop has no     \
 * conditional stores (it vectorises); the parameter sums follow in loops of their own, gh kept in    \
 * a row of scratch. */                                                                              \
INLINE void backward_row_##SUF(const T *restrict G, const T *restrict rec, const T *restrict V,      \
                               const T *restrict I, T *restrict GI, T *restrict gv_next,             \
                               T *restrict gi_next, T *restrict s_mem, T *restrict s_syn,            \
                               T *restrict s_th, T *restrict s_bias, T *restrict gh_row,             \
                               const T *restrict ds, const T *restrict dm, const T *restrict th,     \
                               T c0, T c1, const int code, T keep, int64_t M, int64_t NF,            \
                               int64_t base, int64_t t, const int cuba, const int has_rec,           \
                               int need_mem, int need_syn, int need_th, int need_bias) {             \
    const T *restrict Vt = V + t * M + base;                                                         \
    const T *restrict Gt = G + t * M + base;                                                         \
    const T *restrict Rt = rec + base;                                                               \
    T *restrict GIt = GI + t * M + base;                                                             \
    for (int64_t p = 0; p < NF; ++p) {                                                               \
        T vt = Vt[p];                                                                                \
        T carry = gv_next[p] * dm[p];                                                                \
        T g = Gt[p];                                                                                 \
        if (has_rec) g = g + Rt[p];                                                                  \
        g = g - carry * vt * keep;                                                                   \
        T gh = g * surrogate_##SUF(vt - th[p], code, c0, c1);                                        \
        T gv = gh + (carry - carry * (T)(vt > th[p]));  /* o[t], recomputed: one read fewer */       \
        T ga = gv;                                                                                   \
        if (cuba) {                                                                                  \
            ga = gv + gi_next[p] * ds[p];                                                            \
            gi_next[p] = ga;                                                                         \
        }                                                                                            \
        GIt[p] = ga;                                                                                 \
        gv_next[p] = gv;                                                                             \
        gh_row[p] = gh;                                                                              \
    }                                                                                                \
    if (need_th)                                                                                     \
        for (int64_t p = 0; p < NF; ++p) s_th[p] += gh_row[p];                                       \
    if (need_bias)                                                                                   \
        for (int64_t p = 0; p < NF; ++p) s_bias[p] += gv_next[p];                                    \
    if (t > 0 && need_mem) {                                                                         \
        const T *restrict Vp = Vt - M;                                                               \
        for (int64_t p = 0; p < NF; ++p) s_mem[p] += gv_next[p] * (Vp[p] - Vp[p] * (T)(Vp[p] > th[p])); \
    }                                                                                                \
    if (t > 0 && need_syn) {                                                                         \
        const T *restrict Ip = I + (t - 1) * M + base;                                               \
        for (int64_t p = 0; p < NF; ++p) s_syn[p] += gi_next[p] * Ip[p];                             \
    }                                                                                                \
}                                                                                                    \
                                                                                                     \
int backward_##SUF(const T *G, const T *rec, const T *V, const T *O, const T *I, T *GI,            \
                    T *gv_state, T *gi_state, T *acc_mem, T *acc_syn, T *acc_th, T *acc_bias,        \
                    const T *ds, const T *dm, const T *th, double c0d, double c1d, int code,         \
                    int64_t M, int64_t NF, int64_t row0, int64_t row1, int64_t t_hi, int64_t n,     \
                    int cuba, int has_rec, int detach, int need_mem, int need_syn, int need_th,      \
                    int need_bias, int init) {                                                       \
    T c0 = (T)c0d, c1 = (T)c1d, keep = detach ? (T)0 : (T)1;                                         \
    if (init) {                                                                                      \
        int64_t lo = row0 * NF;                                                                      \
        size_t bytes = (size_t)((row1 - row0) * NF) * sizeof(T);                                     \
        memset(gv_state + lo, 0, bytes);                                                             \
        memset(gi_state + lo, 0, bytes);                                                             \
        if (need_mem) memset(acc_mem + lo, 0, bytes);                                                \
        if (need_syn) memset(acc_syn + lo, 0, bytes);                                                \
        if (need_th) memset(acc_th + lo, 0, bytes);                                                  \
        if (need_bias) memset(acc_bias + lo, 0, bytes);                                              \
    }                                                                                                \
    T *gh_row = (T *)malloc((size_t)NF * sizeof(T));                                                 \
    if (!gh_row) return 1;  /* out of memory: the caller raises */                                  \
    for (int64_t t = t_hi - 1; t >= t_hi - n; --t)                                                   \
        for (int64_t row = row0; row < row1; ++row) {                                                \
            int64_t base = row * NF;                                                                 \
            T *gv = gv_state + base, *gi = gi_state + base;                                          \
            T *sm = acc_mem + base, *ss = acc_syn + base, *st = acc_th + base, *sb = acc_bias + base;\
            switch (code + 6 * (cuba != 0)) { /* specialised loops: surrogate, model as constants */ \
            case 0: BWD(SUF, 0, 0); break;  case 1: BWD(SUF, 0, 1); break;                           \
            case 2: BWD(SUF, 0, 2); break;  case 3: BWD(SUF, 0, 3); break;                           \
            case 4: BWD(SUF, 0, 4); break;  case 5: BWD(SUF, 0, 5); break;                           \
            case 6: BWD(SUF, 1, 0); break;  case 7: BWD(SUF, 1, 1); break;                           \
            case 8: BWD(SUF, 1, 2); break;  case 9: BWD(SUF, 1, 3); break;                           \
            case 10: BWD(SUF, 1, 4); break; default: BWD(SUF, 1, 5); break;                          \
            }                                                                                        \
        }                                                                                            \
    free(gh_row);                                                                                    \
    return 0;                                                                                        \
}

DEFINE_LOOPS(float, f32, expf, fabsf)
DEFINE_LOOPS(double, f64, exp, fabs)
