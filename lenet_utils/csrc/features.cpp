// LeNet-5's feature extractor -- C1, S2, C3, S4 -- forward and backward on the CPU.
//
// Why: on a small CPU, PyTorch's convolutions with 1 and 6 input maps and its
// elementwise squashing and pooling passes are far from the machine's speed. Here
// 16 images share each SIMD vector ("batch in lanes"): every multiply-add of the
// network becomes one vector instruction over 16 images, with no im2col, no
// transposes inside the network, and each block of 16 images kept in cache.
//
// The math is the reference implementation's (lenet_utils/layers.py): valid 5x5
// convolutions (C3 with a 0/1 connection table), subsampling
// f(coefficient * (sum of a 2x2 block) + bias), and f(a) = A tanh(S a). Only the order
// of float additions differs. tests/test_fused.py checks outputs and every gradient
// against autograd on the reference model.
//
// Layout: a block holds L images; every array is [map][row][column] of vectors whose
// lanes are the block's images. Called from Python through ctypes (lenet_utils/fused.py).

#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

namespace {

constexpr int L = 16;                                         // images per vector
typedef float vec __attribute__((vector_size(4 * L)));       // GCC/Clang vector extension
typedef std::int32_t ivec __attribute__((vector_size(4 * L)));

// Shapes of LeNet-5 up to S4.
constexpr int IN = 32, K = 5, KK = K * K, M1 = 6, H1 = 28, H2 = 14, M3 = 16, H3 = 10, H4 = 5;
constexpr int NX = IN * IN, NY1 = M1 * H1 * H1, NY2 = M1 * H2 * H2, NY3 = M3 * H3 * H3,
              NY4 = M3 * H4 * H4;

// What the forward pass keeps, per block, for the backward pass.
constexpr int OFF_X = 0, OFF_Y1 = OFF_X + NX, OFF_T2 = OFF_Y1 + NY1, OFF_Y2 = OFF_T2 + NY2,
              OFF_Y3 = OFF_Y2 + NY2, OFF_T4 = OFF_Y3 + NY3, OFF_Y4 = OFF_T4 + NY4,
              SAVED = OFF_Y4 + NY4;

// The parameters, flattened in this order (see fused.py's _flat_parameters).
constexpr int P_W1 = 0, P_B1 = P_W1 + M1 * KK, P_C2 = P_B1 + M1, P_B2 = P_C2 + M1,
              P_W3 = P_B2 + M1, P_B3 = P_W3 + M3 * M1 * KK, P_C4 = P_B3 + M3, P_B4 = P_C4 + M3,
              NPARAM = P_B4 + M3;

// Scratch of one backward block: G4, D3, G2 (becomes D2), D1.
constexpr int OFF_G4 = 0, OFF_D3 = OFF_G4 + NY4, OFF_G2 = OFF_D3 + NY3, OFF_D1 = OFF_G2 + NY2,
              SCRATCH = OFF_D1 + NY1;

inline vec splat(float s) { return vec{} + s; }
inline vec select(ivec mask, vec a, vec b) { return (vec)((mask & (ivec)a) | (~mask & (ivec)b)); }

// exp as in Cephes' expf: exp(x) = 2^n exp(r), |r| <= ln(2)/2, relative error ~1e-7.
inline vec vexp(vec x) {
    x = select(x > splat(30.0f), splat(30.0f), x);
    x = select(x < splat(-30.0f), splat(-30.0f), x);
    vec fx = x * 1.44269504088896341f + 0.5f;
    vec fn = __builtin_convertvector(__builtin_convertvector(fx, ivec), vec);
    fn = select(fn > fx, fn - 1.0f, fn);  // floor
    x = x - fn * 0.693359375f + fn * 2.12194440e-4f;
    vec p = splat(1.9875691500e-4f);
    p = p * x + 1.3981999507e-3f;
    p = p * x + 8.3334519073e-3f;
    p = p * x + 4.1665795894e-2f;
    p = p * x + 1.6666665459e-1f;
    p = p * x + 5.0000001201e-1f;
    p = p * x * x + x + 1.0f;
    ivec e = (__builtin_convertvector(fn, ivec) + 127) << 23;
    return p * (vec)e;
}

struct Squash {
    float A, S;
    // f(a) = A tanh(S a) = A - 2A / (1 + exp(2 S a))
    vec operator()(vec a) const { return A - (2.0f * A) / (1.0f + vexp(a * (2.0f * S))); }
    // f'(a) written with y = f(a): A S (1 - tanh^2) = (S / A) (A - y) (A + y)
    vec slope(vec y) const { return (S / A) * (A - y) * (A + y); }
};

// acc[x] += sum_k w[k] * row[x + k] for x < W: one kernel row across one output row,
// with the W + 4 inputs loaded once.
template <int W>
inline void row_conv(vec* acc, const vec* row, const float* w) {
    vec r[W + K - 1];
    for (int i = 0; i < W + K - 1; ++i) r[i] = row[i];
    for (int k = 0; k < K; ++k)
        for (int x = 0; x < W; ++x) acc[x] += w[k] * r[x + k];
}

// acc[k] += sum_x d[x] * row[x + k] for k < K: one kernel row's weight gradient, in
// tiles of T columns whose d and row values are loaded once for all K shifts.
template <int W, int T = (W % 7 == 0 ? 7 : W)>
inline void row_corr(vec* acc, const vec* d, const vec* row) {
    for (int x0 = 0; x0 < W; x0 += T) {
        vec dv[T], r[T + K - 1];
        for (int i = 0; i < T; ++i) dv[i] = d[x0 + i];
        for (int i = 0; i < T + K - 1; ++i) r[i] = row[x0 + i];
        for (int k = 0; k < K; ++k)
            for (int x = 0; x < T; ++x) acc[k] += dv[x] * r[x + k];
    }
}

// Subsampling forward: T = sum of each 2x2 block of Y, out = f(c T + b), per map.
void subsample(const vec* Y, vec* T, vec* out, int maps, int h, const float* c, const float* b,
               const Squash& f) {
    const int H = 2 * h;
    for (int m = 0; m < maps; ++m)
        for (int i = 0; i < h; ++i)
            for (int j = 0; j < h; ++j) {
                const vec* y = Y + (m * H + 2 * i) * H + 2 * j;
                vec t = (y[0] + y[1]) + (y[H] + y[H + 1]);
                T[(m * h + i) * h + j] = t;
                out[(m * h + i) * h + j] = f(c[m] * t + b[m]);
            }
}

void forward_block(const float* p, const std::uint8_t* conn, const Squash& f, vec* s) {
    const vec* X = s + OFF_X;
    vec *Y1 = s + OFF_Y1, *T2 = s + OFF_T2, *Y2 = s + OFF_Y2, *Y3 = s + OFF_Y3,
        *T4 = s + OFF_T4, *Y4 = s + OFF_Y4;
    for (int c = 0; c < M1; ++c)  // C1: 1 -> 6 maps, 32x32 -> 28x28, in tiles of 7 columns
        for (int y = 0; y < H1; ++y)
            for (int x0 = 0; x0 < H1; x0 += 7) {
                vec acc[7];
                for (auto& a : acc) a = splat(p[P_B1 + c]);
                for (int ky = 0; ky < K; ++ky)
                    row_conv<7>(acc, X + (y + ky) * IN + x0, p + P_W1 + c * KK + ky * K);
                for (int x = 0; x < 7; ++x) Y1[(c * H1 + y) * H1 + x0 + x] = f(acc[x]);
            }
    subsample(Y1, T2, Y2, M1, H2, p + P_C2, p + P_B2, f);
    for (int o = 0; o < M3; ++o)  // C3: 6 -> 16 maps through the connection table
        for (int y = 0; y < H3; ++y) {
            vec acc[H3];
            for (auto& a : acc) a = splat(p[P_B3 + o]);
            for (int ci = 0; ci < M1; ++ci) {
                if (!conn[o * M1 + ci]) continue;
                const float* w = p + P_W3 + (o * M1 + ci) * KK;
                for (int ky = 0; ky < K; ++ky)
                    row_conv<H3>(acc, Y2 + (ci * H2 + y + ky) * H2, w + ky * K);
            }
            for (int x = 0; x < H3; ++x) Y3[(o * H3 + y) * H3 + x] = f(acc[x]);
        }
    subsample(Y3, T4, Y4, M3, H4, p + P_C4, p + P_B4, f);
}

// Subsampling backward, with the squashing of the layer below: from G (gradient of the
// subsampling's output) to D = gradient of the pre-activation of the layer below.
void subsample_backward(const vec* G, const vec* Yout, const vec* T, const vec* Yin, vec* D,
                        int maps, int h, const float* c, vec* gc, vec* gb, const Squash& f) {
    const int H = 2 * h;
    for (int m = 0; m < maps; ++m)
        for (int i = 0; i < h; ++i)
            for (int j = 0; j < h; ++j) {
                const int q = (m * h + i) * h + j;
                vec d = G[q] * f.slope(Yout[q]);
                gc[m] += d * T[q];
                gb[m] += d;
                vec cd = c[m] * d;
                for (int di = 0; di < 2; ++di)
                    for (int dj = 0; dj < 2; ++dj) {
                        const int r = (m * H + 2 * i + di) * H + 2 * j + dj;
                        D[r] = cd * f.slope(Yin[r]);
                    }
            }
}

void backward_block(const float* p, const std::uint8_t* conn, const Squash& f, const vec* s,
                    vec* scratch, vec* g) {
    const vec *X = s + OFF_X, *Y1 = s + OFF_Y1, *T2 = s + OFF_T2, *Y2 = s + OFF_Y2,
              *Y3 = s + OFF_Y3, *T4 = s + OFF_T4, *Y4 = s + OFF_Y4;
    vec *G4 = scratch + OFF_G4, *D3 = scratch + OFF_D3, *G2 = scratch + OFF_G2,
        *D1 = scratch + OFF_D1;
    subsample_backward(G4, Y4, T4, Y3, D3, M3, H4, p + P_C4, g + P_C4, g + P_B4, f);
    for (int o = 0; o < M3; ++o) {  // C3 bias and weights
        vec sum{};
        for (int q = 0; q < H3 * H3; ++q) sum += D3[o * H3 * H3 + q];
        g[P_B3 + o] += sum;
        for (int ci = 0; ci < M1; ++ci) {
            if (!conn[o * M1 + ci]) continue;
            for (int ky = 0; ky < K; ++ky) {
                vec acc[K] = {};
                for (int y = 0; y < H3; ++y)
                    row_corr<H3>(acc, D3 + (o * H3 + y) * H3, Y2 + (ci * H2 + y + ky) * H2);
                for (int kx = 0; kx < K; ++kx) g[P_W3 + (o * M1 + ci) * KK + ky * K + kx] += acc[kx];
            }
        }
    }
    for (int ci = 0; ci < M1; ++ci)  // C3 input: each S2 row gathers what it fed
        for (int yy = 0; yy < H2; ++yy) {
            vec acc[H2] = {};
            for (int o = 0; o < M3; ++o) {
                if (!conn[o * M1 + ci]) continue;
                for (int ky = 0; ky < K; ++ky) {
                    const int y = yy - ky;
                    if (y < 0 || y >= H3) continue;
                    vec d[H3];
                    for (int x = 0; x < H3; ++x) d[x] = D3[(o * H3 + y) * H3 + x];
                    const float* w = p + P_W3 + (o * M1 + ci) * KK + ky * K;
                    for (int kx = 0; kx < K; ++kx)
                        for (int x = 0; x < H3; ++x) acc[x + kx] += w[kx] * d[x];
                }
            }
            for (int x = 0; x < H2; ++x) G2[(ci * H2 + yy) * H2 + x] = acc[x];
        }
    subsample_backward(G2, Y2, T2, Y1, D1, M1, H2, p + P_C2, g + P_C2, g + P_B2, f);
    for (int c = 0; c < M1; ++c) {  // C1 bias and weights (the input needs no gradient)
        vec sum{};
        for (int q = 0; q < H1 * H1; ++q) sum += D1[c * H1 * H1 + q];
        g[P_B1 + c] += sum;
        for (int ky = 0; ky < K; ++ky) {
            vec acc[K] = {};
            for (int y = 0; y < H1; ++y)
                row_corr<H1>(acc, D1 + (c * H1 + y) * H1, X + (y + ky) * IN);
            for (int kx = 0; kx < K; ++kx) g[P_W1 + c * KK + ky * K + kx] += acc[kx];
        }
    }
}

// Rows [b L, b L + L) of a (n, width) matrix to/from one block of lane vectors.
void to_lanes(const float* rows, std::int64_t n, std::int64_t b, int width, vec* out) {
    for (int l = 0; l < L; ++l) {
        const std::int64_t i = b * L + l;
        for (int k = 0; k < width; ++k) out[k][l] = i < n ? rows[i * width + k] : 0.0f;
    }
}

void from_lanes(const vec* in, std::int64_t n, std::int64_t b, int width, float* rows) {
    for (int l = 0; l < L && b * L + l < n; ++l)
        for (int k = 0; k < width; ++k) rows[(b * L + l) * width + k] = in[k][l];
}

// Run body(thread, first block, end block) on `threads` threads over `blocks` blocks,
// split in fixed contiguous ranges, so that results do not depend on timing. With
// OpenMP, the threads are PyTorch's own (the same libgomp), which avoids two thread
// pools spinning against each other on a small machine.
template <class Body>
void parallel_blocks(std::int64_t blocks, int threads, Body body) {
    threads = static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(threads, blocks)));
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static, 1)
    for (int t = 0; t < threads; ++t) body(t, blocks * t / threads, blocks * (t + 1) / threads);
#else
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t)
        pool.emplace_back(body, t, blocks * t / threads, blocks * (t + 1) / threads);
    body(0, 0, blocks / threads);
    for (auto& th : pool) th.join();
#endif
}

}  // namespace

extern "C" {

int lenet_lanes() { return L; }
int lenet_saved_per_block() { return SAVED * L; }
int lenet_parameter_count() { return NPARAM; }

// x: (n, 32*32) inputs; params: NPARAM floats; conn: (16, 6) 0/1 table;
// saved: (ceil(n / L), SAVED * L) floats, filled for the backward pass;
// out: (n, 16*5*5) S4 outputs.
void lenet_features_forward(std::int64_t n, int threads, float A, float S, const float* x,
                            const float* params, const std::uint8_t* conn, float* saved,
                            float* out) {
    const Squash f{A, S};
    const std::int64_t blocks = (n + L - 1) / L;
    parallel_blocks(blocks, threads, [&](int, std::int64_t first, std::int64_t end) {
        for (std::int64_t b = first; b < end; ++b) {
            vec* s = reinterpret_cast<vec*>(saved) + b * SAVED;
            to_lanes(x, n, b, NX, s + OFF_X);
            forward_block(params, conn, f, s);
            from_lanes(s + OFF_Y4, n, b, NY4, out);
        }
    });
}

// grad_out: (n, 16*5*5) gradient of the S4 outputs; grads: NPARAM floats (overwritten).
void lenet_features_backward(std::int64_t n, int threads, float A, float S, const float* params,
                             const std::uint8_t* conn, const float* saved, const float* grad_out,
                             float* grads) {
    const Squash f{A, S};
    const std::int64_t blocks = (n + L - 1) / L;
    threads = static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(threads, blocks)));
    std::vector<std::vector<vec>> partial(threads, std::vector<vec>(NPARAM));
    parallel_blocks(blocks, threads, [&](int t, std::int64_t first, std::int64_t end) {
        std::vector<vec> scratch(SCRATCH);
        for (std::int64_t b = first; b < end; ++b) {
            const vec* s = reinterpret_cast<const vec*>(saved) + b * SAVED;
            to_lanes(grad_out, n, b, NY4, scratch.data() + OFF_G4);
            backward_block(params, conn, f, s, scratch.data(), partial[t].data());
        }
    });
    for (int k = 0; k < NPARAM; ++k) {  // lanes, then threads, in a fixed order
        float total = 0.0f;
        for (int t = 0; t < threads; ++t)
            for (int l = 0; l < L; ++l) total += partial[t][k][l];
        grads[k] = total;
    }
}

}  // extern "C"
