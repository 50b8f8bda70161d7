// hyperprox device kernels (CUDA C, compiled at run time by NVRTC, once per process and
// device). Every kernel exists for float (suffix _f32) and double (_f64); indices are 64-bit.
// Elementwise kernels use grid-stride loops. Reductions write one partial per thread
// (grid-stride, fixed launch shape), summed on the host in a fixed order: deterministic, and
// no __syncthreads, so the same source also runs on the host (see tests/cuda_kernels.rs).
// Layout conventions are the CPU ones: images row-major h x w, gradients [d_h; d_v] (2n),
// forward differences with Neumann boundary (the last column/row difference is 0).

#ifndef HP_HOST
#define HP_KERNEL extern "C" __global__
#define HP_DEV __device__ __forceinline__
#define HP_IDX ((long long)blockIdx.x * (long long)blockDim.x + (long long)threadIdx.x)
#define HP_STRIDE ((long long)gridDim.x * (long long)blockDim.x)
#endif

template <typename T> HP_DEV T hp_abs(T x) { return x < (T)0 ? -x : x; }
template <typename T> HP_DEV T hp_soft(T x, T t) {
    if (x != x) return x;
    T a = hp_abs(x) - t;
    if (a <= (T)0) return (T)0;
    return x < (T)0 ? -a : a;
}
template <typename T> HP_DEV T hp_min(T a, T b) { return b < a ? b : a; }
template <typename T> HP_DEV T hp_max(T a, T b) { return b > a ? b : a; }
template <typename T> HP_DEV bool hp_finite(T x) { return x - x == (T)0; }

// Separable functions: kind 0 l1 (p1 = threshold), 1 l0 (p1 = hard threshold), 2 box
// [p1, p2], 3 nonnegative, 4 elastic net (p1 = threshold, p2 = divisor).
template <typename T> HP_DEV T hp_sep_prox(int kind, T x, T p1, T p2) {
    switch (kind) {
    case 0: return hp_soft(x, p1);
    case 1: return hp_abs(x) > p1 ? x : (T)0;
    case 2: return hp_min(hp_max(x, p1), p2);
    case 3: return hp_max(x, (T)0);
    default: return hp_soft(x, p1) / p2;
    }
}
// Values: kind 0 p1|x|, 1 p1[x != 0], 2 box indicator (tolerance p3), 3 nonnegative
// indicator (tolerance p3), 4 p1|x| + p2 x^2.
template <typename T> HP_DEV T hp_sep_value(int kind, T x, T p1, T p2, T p3) {
    switch (kind) {
    case 0: return p1 * hp_abs(x);
    case 1: return x != (T)0 ? p1 : (T)0;
    case 2: return (x >= p1 - p3 && x <= p2 + p3) ? (T)0 : (T)1 / (T)0;
    case 3: return x >= -p3 ? (T)0 : (T)1 / (T)0;
    default: return p1 * hp_abs(x) + p2 * x * x;
    }
}

// Convex conjugates: kind 0 indicator of |y| <= p1 (tolerance p3), 2 support function of
// [p1, p2], 3 indicator of y <= 0 (tolerance p3), 4 elastic net (t = p1, q = p2, tolerance p3).
template <typename T> HP_DEV T hp_sep_conj_value(int kind, T y, T p1, T p2, T p3) {
    switch (kind) {
    case 0: return hp_abs(y) <= p1 + p3 ? (T)0 : (T)1 / (T)0;
    case 2: return y > (T)0 ? p2 * y : (y < (T)0 ? p1 * y : (T)0);
    case 3: return y <= p3 ? (T)0 : (T)1 / (T)0;
    default: {
        T ex = hp_max(hp_abs(y) - p1, (T)0);
        if (p2 > (T)0) return ex * ex / ((T)2 * p2);
        return ex <= p3 ? (T)0 : (T)1 / (T)0;
    }
    }
}

// Per-coordinate parameters (arrays a, b, v1, v2): kind 0 weighted l1 (a = w), 2 box
// (a = l, b = h). prox of s*phi_i.
template <typename T> HP_DEV T hp_pc_prox(int kind, T x, T a, T b, T s) {
    if (kind == 0) return hp_soft(x, s * a);
    return hp_min(hp_max(x, a), b);
}

// The row of pixel p in an image of width w: 32-bit division when the index fits (a 64-bit
// division is a long software sequence on the GPU and would cost as much as the memory traffic
// of a bandwidth-bound kernel).
HP_DEV long long hp_row(long long p, long long w) {
    if (p < 2147483647LL && w < 2147483647LL) return (long long)((unsigned)p / (unsigned)w);
    return p / w;
}

// x = v - grad^T r at pixel (i, j): v + rh(i,j)[j<w-1] - rh(i,j-1) + rv(i,j)[i<h-1] - rv(i-1,j).
template <typename T>
HP_DEV T hp_x_at(long long h, long long w, const T *v, const T *r, long long i, long long j) {
    long long n = h * w, p = i * w + j;
    T x = v[p];
    if (j + 1 < w) x += r[p];
    if (j > 0) x -= r[p - 1];
    if (i + 1 < h) x += r[n + p];
    if (i > 0) x -= r[n + p - w];
    return x;
}


// Activations (the CPU's Activation::eval): kind 0 ReLU, 1 leaky ReLU (slope a), 2 tanh,
// 3 sigmoid, 4 softplus (sharpness a), 5 GELU (exact, evaluated in double as on the CPU).
// deriv = 0: sigma(x); deriv = 1: sigma'(x).
template <typename T> HP_DEV T hp_sigmoid(T z) {
    if (z >= (T)0) return (T)1 / ((T)1 + exp(-z));
    T e = exp(z);
    return e / ((T)1 + e);
}
template <typename T> HP_DEV T hp_act(int kind, T x, T a, int deriv) {
    switch (kind) {
    case 0: return x > (T)0 ? (deriv ? (T)1 : x) : (T)0;
    case 1: return x > (T)0 ? (deriv ? (T)1 : x) : (deriv ? a : a * x);
    case 2: { T t = tanh(x); return deriv ? (T)1 - t * t : t; }
    case 3: { T s = hp_sigmoid(x); return deriv ? s * ((T)1 - s) : s; }
    case 4: {
        T bt = a * x, e = exp(-hp_abs(bt)), inv = (T)1 / ((T)1 + e);
        T sig = bt >= (T)0 ? inv : e * inv;
        return deriv ? sig : hp_max(x, (T)0) + log1p(e) / a;
    }
    default: {
        double xf = (double)x;
        double cdf = 0.5 * erfc(-xf / 1.4142135623730951);
        if (!deriv) return (T)(xf * cdf);
        double pdf = exp(-0.5 * xf * xf) / 2.5066282746310002;
        return (T)(cdf + xf * pdf);
    }
    }
}

#define HP_DEFINE(T, S)                                                                        \
HP_KERNEL void fill_##S(long long n, T *y, T a) {                                              \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE) y[i] = a;                                \
}                                                                                              \
HP_KERNEL void scale_##S(long long n, T *y, T a) {                                             \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE) y[i] = a * y[i];                         \
}                                                                                              \
HP_KERNEL void axpy_##S(long long n, T *y, T a, const T *x) {                                  \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE) y[i] = y[i] + a * x[i];                  \
}                                                                                              \
HP_KERNEL void set_axpy_##S(long long n, T *out, const T *x, T a, const T *y) {                \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE) out[i] = x[i] + a * y[i];                \
}                                                                                              \
HP_KERNEL void xpay_##S(long long n, T *out, const T *x, T a) {                                \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE) out[i] = x[i] + a * out[i];              \
}                                                                                              \
HP_KERNEL void extrap_##S(long long n, T *out, const T *z, const T *x, T beta) {               \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE) out[i] = z[i] + beta * (z[i] - x[i]);    \
}                                                                                              \
HP_KERNEL void mul_##S(long long n, T *out, const T *x, const T *m) {                          \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE) out[i] = m[i] * x[i];                    \
}                                                                                              \
HP_KERNEL void sep_prox_##S(long long n, T *out, const T *x, int kind, T p1, T p2) {           \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE) out[i] = hp_sep_prox<T>(kind, x[i], p1, p2); \
}                                                                                              \
/* The conjugate's prox by Moreau, fused: out = x - gamma prox_{phi/gamma}(x/gamma), with     */ \
/* (p1, p2) the parameters of prox_{phi/gamma}.                                             */ \
HP_KERNEL void sep_conj_prox_##S(long long n, T *out, const T *x, int kind, T p1, T p2,       \
                                 T gamma) {                                                    \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE)                                          \
        out[i] = x[i] - gamma * hp_sep_prox<T>(kind, x[i] / gamma, p1, p2);                    \
}                                                                                              \
/* One forward-backward step of FISTA fused: out = prox(y - step*g), then the momentum      */ \
/* point y = out + beta*(out - x_old) is formed by extrap_ after the certificate.           */ \
HP_KERNEL void fb_step_##S(long long n, T *out, const T *y, T step, const T *g, int kind,     \
                           T p1, T p2) {                                                       \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE)                                          \
        out[i] = hp_sep_prox<T>(kind, y[i] - step * g[i], p1, p2);                              \
}                                                                                              \
/* Group l2,1: group g holds the indices idx[off[g] .. off[g+1]];                          */ \
/* out_g = max(0, 1 - t w_g/||x_g||) x_g.                                                   */ \
HP_KERNEL void group_l21_##S(long long groups, T *out, const T *x, const long long *off,      \
                             const long long *idx, const T *wt, T t) {                         \
    for (long long g = HP_IDX; g < groups; g += HP_STRIDE) {                                   \
        T s2 = (T)0;                                                                           \
        for (long long k = off[g]; k < off[g + 1]; k++) s2 += x[idx[k]] * x[idx[k]];           \
        T nr = sqrt(s2), th = t * wt[g];                                                       \
        T s = nr > th ? (T)1 - th / nr : (T)0;                                                 \
        for (long long k = off[g]; k < off[g + 1]; k++) out[idx[k]] = s * x[idx[k]];           \
    }                                                                                          \
}                                                                                              \
HP_KERNEL void group_l21_value_##S(long long groups, const T *x, const long long *off,        \
                                   const long long *idx, const T *wt, T *partial) {            \
    T acc = (T)0;                                                                              \
    for (long long g = HP_IDX; g < groups; g += HP_STRIDE) {                                   \
        T s2 = (T)0;                                                                           \
        for (long long k = off[g]; k < off[g + 1]; k++) s2 += x[idx[k]] * x[idx[k]];           \
        acc += wt[g] * sqrt(s2);                                                               \
    }                                                                                          \
    partial[HP_IDX] = acc;                                                                     \
}                                                                                              \
/* Forward differences [d_h; d_v], Neumann boundary.                                        */ \
HP_KERNEL void grad2d_##S(long long h, long long w, T *out, const T *x) {                      \
    long long n = h * w;                                                                       \
    for (long long p = HP_IDX; p < n; p += HP_STRIDE) {                                        \
        long long i = hp_row(p, w), j = p - i * w;                                             \
        out[p] = j + 1 < w ? x[p + 1] - x[p] : (T)0;                                           \
        out[n + p] = i + 1 < h ? x[p + w] - x[p] : (T)0;                                       \
    }                                                                                          \
}                                                                                              \
/* The adjoint of grad2d (minus the divergence), in the CPU's order of operations.         */ \
HP_KERNEL void negdiv2d_##S(long long h, long long w, T *out, const T *y) {                    \
    long long n = h * w;                                                                       \
    for (long long p = HP_IDX; p < n; p += HP_STRIDE) {                                        \
        long long i = hp_row(p, w), j = p - i * w;                                             \
        T v = (T)0;                                                                            \
        if (j + 1 < w) v -= y[p];                                                              \
        if (j > 0) v += y[p - 1];                                                              \
        if (i + 1 < h) v -= y[n + p];                                                          \
        if (i > 0) v += y[n + p - w];                                                          \
        out[p] = v;                                                                            \
    }                                                                                          \
}                                                                                              \
/* One FGP step on the ROF dual, fused: at pixel p, x = v - grad^T r_in at p and its right  */ \
/* and lower neighbours, g = grad x, q+ = Proj_mu(r_in + g/8), r_out = q+ + beta(q+ - q).   */ \
/* Reads v, r_in, q, writes q, r_out once (9 numbers per pixel); r_in, r_out distinct.      */ \
HP_KERNEL void fgp_step_##S(long long h, long long w, const T *v, T mu, T beta, int iso,      \
                            T *q, const T *r_in, T *r_out) {                                   \
    long long n = h * w;                                                                       \
    for (long long p = HP_IDX; p < n; p += HP_STRIDE) {                                        \
        long long i = hp_row(p, w), j = p - i * w;                                             \
        T xc = hp_x_at<T>(h, w, v, r_in, i, j);                                                \
        T gh = j + 1 < w ? hp_x_at<T>(h, w, v, r_in, i, j + 1) - xc : (T)0;                    \
        T gv = i + 1 < h ? hp_x_at<T>(h, w, v, r_in, i + 1, j) - xc : (T)0;                    \
        T a = r_in[p] + (T)0.125 * gh;                                                         \
        T c = r_in[n + p] + (T)0.125 * gv;                                                     \
        if (iso) {                                                                             \
            T nr = sqrt(a * a + c * c);                                                        \
            T s = hp_min<T>(mu / nr, (T)1);                                                    \
            a *= s;                                                                            \
            c *= s;                                                                            \
        } else {                                                                               \
            a = hp_min<T>(hp_max<T>(a, -mu), mu);                                              \
            c = hp_min<T>(hp_max<T>(c, -mu), mu);                                              \
        }                                                                                      \
        r_out[p] = a + beta * (a - q[p]);                                                      \
        r_out[n + p] = c + beta * (c - q[n + p]);                                              \
        q[p] = a;                                                                              \
        q[n + p] = c;                                                                          \
    }                                                                                          \
}                                                                                              \
/* x = v - grad^T q.                                                                        */ \
HP_KERNEL void fgp_x_##S(long long h, long long w, T *x, const T *v, const T *q) {            \
    long long n = h * w;                                                                       \
    for (long long p = HP_IDX; p < n; p += HP_STRIDE) {                                        \
        long long i = hp_row(p, w), j = p - i * w;                                             \
        x[p] = hp_x_at<T>(h, w, v, q, i, j);                                                   \
    }                                                                                          \
}                                                                                              \
/* The FGP certificate's three sums at x (from fgp_x_): sum_p ||(grad x)_p|| (2-norm iso,   */ \
/* 1-norm aniso), <q, grad x>, ||x - v||^2; partial[3k + 0..3] for thread k.                */ \
HP_KERNEL void fgp_cert_##S(long long h, long long w, const T *x, const T *v, const T *q,     \
                            int iso, T *partial) {                                             \
    long long n = h * w;                                                                       \
    T tv = (T)0, qg = (T)0, d2 = (T)0;                                                         \
    for (long long p = HP_IDX; p < n; p += HP_STRIDE) {                                        \
        long long i = hp_row(p, w), j = p - i * w;                                             \
        T gh = j + 1 < w ? x[p + 1] - x[p] : (T)0;                                             \
        T gv = i + 1 < h ? x[p + w] - x[p] : (T)0;                                             \
        tv += iso ? sqrt(gh * gh + gv * gv) : hp_abs(gh) + hp_abs(gv);                         \
        qg += q[p] * gh + q[n + p] * gv;                                                       \
        T d = x[p] - v[p];                                                                     \
        d2 += d * d;                                                                           \
    }                                                                                          \
    long long k = HP_IDX;                                                                      \
    partial[3 * k] = tv;                                                                       \
    partial[3 * k + 1] = qg;                                                                   \
    partial[3 * k + 2] = d2;                                                                   \
}                                                                                              \
/* "Same"-size 2-D convolution (the CPU's Conv2d): y[i,j] = sum_{a,b} k[a,b] P[i+kh-1-a,     */ \
/* j+kw-1-b], P the extended image, rows[p] / cols[q] its source row / column (-1: zero).   */ \
HP_KERNEL void conv2d_##S(long long h, long long w, long long kh, long long kw, T *out,        \
                          const T *x, const T *k, const long long *rows,                       \
                          const long long *cols) {                                             \
    for (long long p = HP_IDX; p < h * w; p += HP_STRIDE) {                                    \
        long long i = hp_row(p, w), j = p - i * w;                                             \
        T acc = (T)0;                                                                          \
        for (long long a = 0; a < kh; a++) {                                                   \
            long long s = rows[i + kh - 1 - a];                                                \
            if (s < 0) continue;                                                               \
            for (long long b = 0; b < kw; b++) {                                               \
                long long t = cols[j + kw - 1 - b];                                            \
                if (t >= 0) acc += k[a * kw + b] * x[s * w + t];                               \
            }                                                                                  \
        }                                                                                      \
        out[p] = acc;                                                                          \
    }                                                                                          \
}                                                                                              \
/* Its adjoint as a gather: pixel (s,t) sums, over the padded rows p with rows[p] = s       */ \
/* (rinv[roff[s] .. roff[s+1]]) and columns q likewise, the correlation of y with k at     */ \
/* (p, q).                                                                                  */ \
HP_KERNEL void conv2d_adj_##S(long long h, long long w, long long kh, long long kw, T *out,    \
                              const T *y, const T *k, const long long *roff,                   \
                              const long long *rinv, const long long *coff,                    \
                              const long long *cinv) {                                         \
    for (long long px = HP_IDX; px < h * w; px += HP_STRIDE) {                                 \
        long long s = hp_row(px, w), t = px - s * w;                                           \
        T acc = (T)0;                                                                          \
        for (long long e = roff[s]; e < roff[s + 1]; e++) {                                    \
            long long p = rinv[e];                                                             \
            for (long long f = coff[t]; f < coff[t + 1]; f++) {                                \
                long long q = cinv[f];                                                         \
                for (long long a = 0; a < kh; a++) {                                           \
                    long long i = p - kh + 1 + a;                                              \
                    if (i < 0 || i >= h) continue;                                             \
                    for (long long b = 0; b < kw; b++) {                                       \
                        long long j = q - kw + 1 + b;                                          \
                        if (j >= 0 && j < w) acc += k[a * kw + b] * y[i * w + j];              \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
        out[px] = acc;                                                                         \
    }                                                                                          \
}                                                                                              \
/* Trainable blocks. out = sigma(x).                                                       */ \
HP_KERNEL void act_##S(long long n, T *out, const T *x, int kind, T a) {                      \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE) out[i] = hp_act<T>(kind, x[i], a, 0);   \
}                                                                                              \
/* out = g * sigma'(x), in the CPU's form (ReLU selects g, leaky ReLU scales by a).         */ \
HP_KERNEL void act_vjp_##S(long long n, T *out, const T *x, const T *g, int kind, T a) {      \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE) {                                        \
        T xv = x[i];                                                                           \
        if (kind == 0) out[i] = xv > (T)0 ? g[i] : (T)0;                                       \
        else if (kind == 1) out[i] = xv <= (T)0 ? g[i] * a : g[i];                             \
        else out[i] = g[i] * hp_act<T>(kind, xv, a, 1);                                        \
    }                                                                                          \
}                                                                                              \
/* Every row of the rows x cols batch out set to b (the bias before the GEMM adds X W^T).   */ \
HP_KERNEL void bias_rows_##S(long long rows, long long cols, T *out, const T *b) {           \
    long long n = rows * cols;                                                                 \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE) out[i] = b[i % cols];                    \
}                                                                                              \
/* out[c] = sum over rows of g[r, c], rows in order (one thread per column).               */ \
HP_KERNEL void col_sums_##S(long long rows, long long cols, T *out, const T *g) {            \
    for (long long c = HP_IDX; c < cols; c += HP_STRIDE) {                                     \
        T s = (T)0;                                                                            \
        for (long long r = 0; r < rows; r++) s += g[r * cols + c];                             \
        out[c] = s;                                                                            \
    }                                                                                          \
}                                                                                              \
/* Squared error: g = scale (x - t) and partial = sum (x - t)^2.                           */ \
HP_KERNEL void sqerr_##S(long long n, T *g, const T *x, const T *t, T scale, T *partial) {    \
    T acc = (T)0;                                                                              \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE) {                                        \
        T d = x[i] - t[i];                                                                     \
        acc += d * d;                                                                          \
        g[i] = d * scale;                                                                      \
    }                                                                                          \
    partial[HP_IDX] = acc;                                                                     \
}                                                                                              \
/* The penalty of the unsupervised objective at x: l1 = 1: partial = sum |x|,              */ \
/* g += lam_b sign(x) where x != 0; l1 = 0: partial = number of nonzeros.                   */ \
HP_KERNEL void penalty_grad_##S(long long n, T *g, const T *x, T lam_b, int l1, T *partial) { \
    T acc = (T)0;                                                                              \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE) {                                        \
        T xv = x[i];                                                                           \
        if (l1) {                                                                              \
            acc += hp_abs(xv);                                                                 \
            if (xv != (T)0) g[i] += lam_b * (xv > (T)0 ? (T)1 : (T)-1);                        \
        } else if (xv != (T)0) acc += (T)1;                                                    \
    }                                                                                          \
    partial[HP_IDX] = acc;                                                                     \
}                                                                                              \
/* The DU-ISTA/DU-IHT step after g = A^T(y - Ax): u = x + alpha g, out = soft (l1 = 1) or   */ \
/* hard (l1 = 0) threshold of u at th.                                                      */ \
HP_KERNEL void shrink_step_##S(long long n, T *out, T *u, const T *x, const T *g, T alpha,   \
                               T th, int l1) {                                                 \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE) {                                        \
        T uv = x[i] + g[i] * alpha;                                                            \
        u[i] = uv;                                                                             \
        out[i] = l1 ? hp_soft(uv, th) : (hp_abs(uv) > th ? uv : (T)0);                         \
    }                                                                                          \
}                                                                                              \
/* Its pull-back: d = gbar where |u| > th, else 0; partial[2k] = sum d g,                   */ \
/* partial[2k + 1] = - sum over |u| > th of gbar sign(u).                                   */ \
HP_KERNEL void shrink_vjp_##S(long long n, T *d, const T *gbar, const T *u, const T *g, T th, \
                              T *partial) {                                                    \
    T dg = (T)0, gth = (T)0;                                                                   \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE) {                                        \
        T uv = u[i];                                                                           \
        if (hp_abs(uv) > th) {                                                                 \
            T gv = gbar[i];                                                                    \
            d[i] = gv;                                                                         \
            dg += gv * g[i];                                                                   \
            gth -= uv > (T)0 ? gv : -gv;                                                       \
        } else d[i] = (T)0;                                                                    \
    }                                                                                          \
    partial[2 * HP_IDX] = dg;                                                                  \
    partial[2 * HP_IDX + 1] = gth;                                                             \
}                                                                                              \
HP_KERNEL void dot_##S(long long n, const T *x, const T *y, T *partial) {                     \
    T acc = (T)0;                                                                              \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE) acc += x[i] * y[i];                      \
    partial[HP_IDX] = acc;                                                                     \
}                                                                                              \
HP_KERNEL void asum_##S(long long n, const T *x, T *partial) {                                 \
    T acc = (T)0;                                                                              \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE) acc += hp_abs(x[i]);                     \
    partial[HP_IDX] = acc;                                                                     \
}                                                                                              \
/* max |x_i|, NaN once any entry is NaN.                                                    */ \
HP_KERNEL void amax_##S(long long n, const T *x, T *partial) {                                 \
    T acc = (T)0;                                                                              \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE) {                                        \
        T a = hp_abs(x[i]);                                                                    \
        if (a != a || acc != acc) acc = a != a ? a : acc;                                      \
        else if (a > acc) acc = a;                                                             \
    }                                                                                          \
    partial[HP_IDX] = acc;                                                                     \
}                                                                                              \
/* max |a_i - b_i|, NaN once any difference is not finite.                                  */ \
HP_KERNEL void maxdiff_##S(long long n, const T *a, const T *b, T *partial) {                  \
    T acc = (T)0;                                                                              \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE) {                                        \
        T d = hp_abs(a[i] - b[i]);                                                             \
        if (!hp_finite(d)) acc = d - d;                                                        \
        else if (acc == acc && d > acc) acc = d;                                               \
    }                                                                                          \
    partial[HP_IDX] = acc;                                                                     \
}                                                                                              \
HP_KERNEL void nonfinite_##S(long long n, const T *x, T *partial) {                            \
    T acc = (T)0;                                                                              \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE) if (!hp_finite(x[i])) acc += (T)1;       \
    partial[HP_IDX] = acc;                                                                     \
}                                                                                              \
/* <a - b, c - d>                                                                           */ \
HP_KERNEL void diffdot_##S(long long n, const T *a, const T *b, const T *c, const T *d,       \
                           T *partial) {                                                       \
    T acc = (T)0;                                                                              \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE) acc += (a[i] - b[i]) * (c[i] - d[i]);    \
    partial[HP_IDX] = acc;                                                                     \
}                                                                                              \
/* ||x/s - b||^2                                                                            */ \
HP_KERNEL void scaled_diff_sq_##S(long long n, const T *x, T s, const T *b, T *partial) {     \
    T acc = (T)0;                                                                              \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE) {                                        \
        T d = x[i] / s - b[i];                                                                 \
        acc += d * d;                                                                          \
    }                                                                                          \
    partial[HP_IDX] = acc;                                                                     \
}                                                                                              \
HP_KERNEL void sep_conj_value_##S(long long n, const T *x, int kind, T p1, T p2, T p3,        \
                                  T *partial) {                                                \
    T acc = (T)0;                                                                              \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE)                                          \
        acc += hp_sep_conj_value<T>(kind, x[i], p1, p2, p3);                                   \
    partial[HP_IDX] = acc;                                                                     \
}                                                                                              \
/* Separable functions with per-coordinate parameters (see hp_pc_prox).                     */ \
HP_KERNEL void sep_prox_pc_##S(long long n, T *out, const T *x, int kind, const T *a,        \
                               const T *b, T s) {                                              \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE)                                          \
        out[i] = hp_pc_prox<T>(kind, x[i], a[i], b[i], s);                                     \
}                                                                                              \
/* out = x - gamma prox_{phi/gamma}(x/gamma).                                               */ \
HP_KERNEL void sep_conj_prox_pc_##S(long long n, T *out, const T *x, int kind, const T *a,   \
                                    const T *b, T gamma) {                                     \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE)                                          \
        out[i] = x[i] - gamma * hp_pc_prox<T>(kind, x[i] / gamma, a[i], b[i], (T)1 / gamma);   \
}                                                                                              \
HP_KERNEL void fb_step_pc_##S(long long n, T *out, const T *y, T step, const T *g, int kind, \
                              const T *a, const T *b) {                                        \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE)                                          \
        out[i] = hp_pc_prox<T>(kind, y[i] - step * g[i], a[i], b[i], step);                    \
}                                                                                              \
/* Values: kind 0 sum w|x| ; kind 2 the box indicator with the tolerant bounds v1, v2.      */ \
HP_KERNEL void sep_value_pc_##S(long long n, const T *x, int kind, const T *a, const T *v1,  \
                                const T *v2, T *partial) {                                     \
    T acc = (T)0;                                                                              \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE) {                                        \
        T xv = x[i];                                                                           \
        if (kind == 0) acc += a[i] * hp_abs(xv);                                               \
        else if (!(xv >= v1[i] && xv <= v2[i])) acc += (T)1 / (T)0;                            \
    }                                                                                          \
    partial[HP_IDX] = acc;                                                                     \
}                                                                                              \
/* Conjugates: kind 0 the indicator of |y| <= v2 ; kind 2 the support function h y, l y.   */ \
HP_KERNEL void sep_conj_value_pc_##S(long long n, const T *y, int kind, const T *a,          \
                                     const T *b, const T *v2, T *partial) {                    \
    T acc = (T)0;                                                                              \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE) {                                        \
        T yv = y[i];                                                                           \
        if (kind == 0) acc += hp_abs(yv) <= v2[i] ? (T)0 : (T)1 / (T)0;                        \
        else acc += yv > (T)0 ? b[i] * yv : (yv < (T)0 ? a[i] * yv : (T)0);                    \
    }                                                                                          \
    partial[HP_IDX] = acc;                                                                     \
}                                                                                              \
HP_KERNEL void sep_value_##S(long long n, const T *x, int kind, T p1, T p2, T p3,             \
                             T *partial) {                                                     \
    T acc = (T)0;                                                                              \
    for (long long i = HP_IDX; i < n; i += HP_STRIDE) acc += hp_sep_value<T>(kind, x[i], p1, p2, p3); \
    partial[HP_IDX] = acc;                                                                     \
}

HP_DEFINE(float, f32)
HP_DEFINE(double, f64)
