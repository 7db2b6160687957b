/* The integer neuron update of sim/simulator.py's neuron_step, for T steps of one group at a time.
 *
 * The arithmetic is the same double-precision operations in the same order as the numpy code (every
 * value an integer held exactly in a double: products below 2**44, sums below 2**33), compiled with
 * -ffp-contract=off, so each result is bit for bit the numpy one: Loihi's fixed-point update as Lava
 * runs it (lava/proc/lif/models.py, AbstractPyLifModelFixed; see ../../shared/LOIHI.md).
 *
 * A thread takes rows [b0, b1) of the batch and runs all T steps for each row in turn: the row's u and
 * v stay in cache while its inputs stream past. The guards (32-bit wrap, 24-bit wrap of u, saturation
 * of v) are flags that sim.simulator.layer_bounds clears when it proves them idle; without them the
 * row loop has no branch and vectorises. */
#include <math.h>
#include <stdint.h>

#define UV_MAX 8388608.0          /* 2**23 */
#define UV_RANGE 16777216.0       /* 2**24 */
#define HALF32 2147483648.0       /* 2**31 */
#define RANGE32 4294967296.0      /* 2**32 */

/* numpy's floored modulo (npy_divmod) of an integer-valued double by 2**32, shifted to make it a
 * two's-complement wrap into 32 signed bits: mod(x + 2**31, 2**32) - 2**31. */
static inline double wrap32(double x) {
    double m = fmod(x + HALF32, RANGE32);
    if (m < 0.0) m += RANGE32;
    else if (m == 0.0) m = 0.0;   /* numpy gives +0 */
    return m - HALF32;
}

/* One step of one row, no guard: u = trunc(u cu) + x (or x without current), v = trunc(v cv) + u + b,
 * spike where v > vth, and v = v * (v <= vth). */
#define ROW_PLAIN(NAME, IN_T, OUT_T)                                                                           \
static void NAME(const IN_T *restrict x, double *restrict u, double *restrict v, const double *restrict cu, \
                 const double *restrict cv, const double *restrict vth, const double *restrict b,      \
                 OUT_T *restrict o, int64_t N, int no_current)                                        \
{                                                                                                       \
    for (int64_t n = 0; n < N; n++) {                                                                   \
        double un = no_current ? (double)x[n] : trunc(u[n] * cu[n]) + (double)x[n];                     \
        u[n] = un;                                                                                      \
        double vn = trunc(v[n] * cv[n]) + un;                                                           \
        vn = vn + b[n];                                                                                 \
        double keep = vn <= vth[n] ? 1.0 : 0.0;                                                         \
        v[n] = vn * keep;                                                                               \
        o[n] = (OUT_T)(vn > vth[n]);                                                                    \
    }                                                                                                   \
}

/* One step of one row with the guards the flags ask for, in numpy's order. */
#define ROW_GUARDED(NAME, IN_T, OUT_T)                                                                         \
static void NAME(const IN_T *restrict x, double *restrict u, double *restrict v, const double *restrict cu, \
                 const double *restrict cv, const double *restrict vth, const double *restrict b,      \
                 OUT_T *restrict o, int64_t N, int no_current, int f_wrap32, int f_wrap24, int f_saturate) \
{                                                                                                       \
    for (int64_t n = 0; n < N; n++) {                                                                   \
        double un = no_current ? (double)x[n] : trunc(u[n] * cu[n]) + (double)x[n];                     \
        if (f_wrap32) un = wrap32(un);                                                                  \
        if (f_wrap24) {                                                                                 \
            if (un > UV_MAX) un -= UV_RANGE;                                                            \
            if (un <= -UV_MAX) un += UV_RANGE;                                                          \
        }                                                                                               \
        u[n] = un;                                                                                      \
        double vn = trunc(v[n] * cv[n]) + un;                                                           \
        vn = vn + b[n];                                                                                 \
        if (f_wrap32) vn = wrap32(vn);                                                                  \
        if (f_saturate) vn = vn < -(UV_MAX - 1.0) ? -(UV_MAX - 1.0) : (vn > UV_MAX - 1.0 ? UV_MAX - 1.0 : vn); \
        double keep = vn <= vth[n] ? 1.0 : 0.0;                                                         \
        v[n] = vn * keep;                                                                               \
        o[n] = (OUT_T)(vn > vth[n]);                                                                  \
    }                                                                                                   \
}

/* a (T, B, N) input (a << 6; read one step late when `late`: step 0 then sees `zero`), u and v (B, N)
 * state, constants (N,), bias row (t, b) at bias + t bias_t + b bias_b, spikes (0/1) out (T, B, N), u and v
 * recorded into rec_u, rec_v (T, B, N) when not NULL; reset > 0 zeroes u and v before step t where
 * (t + 1) % reset == phase. */
#define STEPS(NAME, IN_T, OUT_T, PLAIN, GUARDED)                                                               \
ROW_PLAIN(PLAIN, IN_T, OUT_T)                                                                                \
ROW_GUARDED(GUARDED, IN_T, OUT_T)                                                                            \
void NAME(const IN_T *a, const IN_T *zero, int64_t T, int64_t B, int64_t N, int late,                  \
          double *u, double *v, const double *cu, const double *cv, const double *vth,                 \
          const double *bias, int64_t bias_t, int64_t bias_b,                                          \
          OUT_T *out, int32_t *rec_u, int32_t *rec_v,                                                    \
          int64_t reset, int64_t phase, int f_wrap32, int f_wrap24, int f_saturate, int no_current,    \
          int64_t b0, int64_t b1)                                                                      \
{                                                                                                       \
    int guarded = f_wrap32 || f_wrap24 || f_saturate;                                                   \
    for (int64_t b = b0; b < b1; b++) {                                                                 \
        double *ub = u + b * N, *vb = v + b * N;                                                        \
        for (int64_t t = 0; t < T; t++) {                                                               \
            const IN_T *xt = late ? (t ? a + ((t - 1) * B + b) * N : zero) : a + (t * B + b) * N;       \
            const double *bt = bias + t * bias_t + b * bias_b;                                          \
            OUT_T *ot = out + (t * B + b) * N;                                                        \
            if (reset > 0 && (t + 1) % reset == phase) {                                                \
                for (int64_t n = 0; n < N; n++) { ub[n] = 0.0; vb[n] = 0.0; }                           \
            }                                                                                           \
            if (guarded)                                                                                \
                GUARDED(xt, ub, vb, cu, cv, vth, bt, ot, N, no_current, f_wrap32, f_wrap24, f_saturate); \
            else                                                                                        \
                PLAIN(xt, ub, vb, cu, cv, vth, bt, ot, N, no_current);                                  \
            if (rec_u) {                                                                                \
                int32_t *ru = rec_u + (t * B + b) * N, *rv = rec_v + (t * B + b) * N;                   \
                for (int64_t n = 0; n < N; n++) { ru[n] = (int32_t)ub[n]; rv[n] = (int32_t)vb[n]; }     \
            }                                                                                           \
        }                                                                                               \
    }                                                                                                   \
}

/* inputs float32 or float64; spikes as uint8 or as float32 0/1 (what a float32 product reads next) */
STEPS(steps_f32_u8, float, uint8_t, row_plain_f32_u8, row_guarded_f32_u8)
STEPS(steps_f64_u8, double, uint8_t, row_plain_f64_u8, row_guarded_f64_u8)
STEPS(steps_f32_f32, float, float, row_plain_f32_f32, row_guarded_f32_f32)
STEPS(steps_f64_f32, double, float, row_plain_f64_f32, row_guarded_f64_f32)
