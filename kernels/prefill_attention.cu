#include <cmath>

#include "kernels/prefill_attention.cuh"

namespace muxserve::kernels {
namespace {

constexpr int kRows = kPrefillTileRows;  // query rows per block
constexpr int kKeys = 64;                // keys per K/V tile
constexpr int kWarps = kRows / 16;       // one m16 row slab per warp
constexpr int kThreads = kWarps * 32;
constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ uint32_t SharedAddress(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared without going through registers; zero-fills when !valid.
__device__ __forceinline__ void CopyAsync16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(SharedAddress(dst)),
               "l"(src), "r"(valid ? 16 : 0));
}

__device__ __forceinline__ void CopyAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }

// Waits until at most `kPending` of this thread's committed copy groups are still in flight.
template <int kPending>
__device__ __forceinline__ void CopyAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

__device__ __forceinline__ void LoadMatrix(uint32_t r[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SharedAddress(p))
               : "memory");
}

__device__ __forceinline__ void LoadMatrixTransposed(uint32_t r[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SharedAddress(p))
               : "memory");
}

// c [16 x 8] += a [16 x 16] (row-major fragments) * b [16 x 8] (column-major fragments), a and b
// of element type T.
template <typename T>
__device__ __forceinline__ void Mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<T, bf16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

template <typename T>
__device__ __forceinline__ uint32_t Pack(float low, float high) {
  const Pair<T> v = FromFloat2<T>(low, high);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// Element offset of 16-byte chunk `chunk` of tile row `row`: chunks are XOR-swizzled with the
// row so that the eight rows an ldmatrix reads fall in distinct banks.
template <int kHeadDim>
__device__ __forceinline__ int Swizzle(int row, int chunk) {
  return row * kHeadDim + ((chunk ^ (row & 7)) << 3);
}

template <typename T, int kHeadDim>
__global__ void __launch_bounds__(kThreads) PrefillAttentionKernel(PrefillAttentionParams<T> p) {
  constexpr int kChunks = kHeadDim / 8;  // 16-byte chunks per row
  extern __shared__ __align__(16) unsigned char shared_raw[];
  // Swizzled tiles: Q [kRows, kHeadDim], then two stages of K and V [kKeys, kHeadDim] each, so
  // that the next key tile loads while this one is used.
  T* q_tile = reinterpret_cast<T*>(shared_raw);
  T* k_tiles = q_tile + kRows * kHeadDim;
  T* v_tiles = k_tiles + 2 * kKeys * kHeadDim;
  BeginKernel();

  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;
  const PrefillTile tile = p.tiles[blockIdx.x];
  const int head = blockIdx.y;
  const StepSequence seq = p.seqs[tile.seq];
  const int rows = min(kRows, seq.q_len - tile.first_row);
  // Position of the tile's row 0; row r sees keys at positions <= first_position + r.
  const int first_position = seq.context_len - seq.q_len + tile.first_row;
  const int last_position = first_position + rows - 1;
  const int kv_head = head / static_cast<int>(p.num_q_heads / p.kv.num_kv_heads);
  const int32_t* table = p.block_tables + seq.table_offset;
  const int64_t first_token_row = seq.q_start + tile.first_row;
  const T* q_base = p.qkv + first_token_row * p.row_stride + head * kHeadDim;

  const int num_key_tiles = last_position / kKeys + 1;
  const int tokens_per_block = static_cast<int>(p.kv.tokens_per_block);
  const int64_t table_stride = p.kv.num_layers * p.kv.num_kv_heads;  // ids per token block
  const int64_t table_column = p.layer * p.kv.num_kv_heads + kv_head;
  const auto* pool = static_cast<const char*>(p.kv.pool);
  // Issues the copies of key tile `kt` into stage kt % 2: every block-table read first, then
  // every copy, so that the reads overlap instead of each waiting for the last. Keys past the
  // chunk's last position are zero-filled: they are masked, and their V rows meet a zero weight.
  auto load_key_tile = [&](int kt) {
    constexpr int kPerThread = kKeys * kChunks / kThreads;
    T* k_tile = k_tiles + (kt & 1) * kKeys * kHeadDim;
    T* v_tile = v_tiles + (kt & 1) * kKeys * kHeadDim;
    int32_t blocks[kPerThread];
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      const int token = kt * kKeys + (tid + i * kThreads) / kChunks;
      // Past the chunk, read token block 0's id (always there) and copy nothing.
      const int token_block = token <= last_position ? token / tokens_per_block : 0;
      blocks[i] = table[token_block * table_stride + table_column];
    }
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      const int c = tid + i * kThreads;
      const int r = c / kChunks;
      const int chunk = c % kChunks;
      const int token = kt * kKeys + r;
      const bool valid = token <= last_position;
      const auto* k_row =
          reinterpret_cast<const T*>(pool + static_cast<int64_t>(blocks[i]) * p.kv.block_bytes) +
          (token % tokens_per_block) * kHeadDim + chunk * 8;
      CopyAsync16(k_tile + Swizzle<kHeadDim>(r, chunk), valid ? k_row : p.qkv, valid);
      CopyAsync16(v_tile + Swizzle<kHeadDim>(r, chunk),
                  valid ? k_row + tokens_per_block * kHeadDim : p.qkv, valid);
    }
  };

#pragma unroll
  for (int i = 0; i < kRows * kChunks / kThreads; ++i) {
    const int c = tid + i * kThreads;
    const int r = c / kChunks;
    const int chunk = c % kChunks;
    const bool valid = r < rows;
    CopyAsync16(q_tile + Swizzle<kHeadDim>(r, chunk),
                valid ? q_base + r * p.row_stride + chunk * 8 : p.qkv, valid);
  }
  CopyAsyncCommit();
  load_key_tile(0);
  CopyAsyncCommit();
  CopyAsyncWait<1>();  // Q is in; key tile 0 may still be on its way
  __syncthreads();

  uint32_t q_frag[kHeadDim / 16][4];
#pragma unroll
  for (int kk = 0; kk < kHeadDim / 16; ++kk) {
    const int r = warp * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
    LoadMatrix(q_frag[kk], q_tile + Swizzle<kHeadDim>(r, kk * 2 + (lane >> 4)));
  }

  float o[kHeadDim / 8][4] = {};
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0.0f, 0.0f};
  const float scale = p.scale * kLog2e;
  const int row0 = warp * 16 + (lane >> 2);  // this thread's rows: row0 and row0 + 8

  for (int kt = 0; kt < num_key_tiles; ++kt) {
    if (kt + 1 < num_key_tiles) load_key_tile(kt + 1);
    CopyAsyncCommit();   // possibly empty: keeps the group count uniform
    CopyAsyncWait<1>();  // everything but the newest group, so tile kt, has landed
    __syncthreads();
    const T* k_tile = k_tiles + (kt & 1) * kKeys * kHeadDim;
    const T* v_tile = v_tiles + (kt & 1) * kKeys * kHeadDim;

    // S = Q K^T for this warp's 16 rows and the tile's 64 keys.
    float s[kKeys / 8][4] = {};
#pragma unroll
    for (int kk = 0; kk < kHeadDim / 16; ++kk) {
#pragma unroll
      for (int np = 0; np < kKeys / 16; ++np) {
        uint32_t b[4];
        const int key = np * 16 + (lane & 7) + (lane >> 4) * 8;
        LoadMatrix(b, k_tile + Swizzle<kHeadDim>(key, kk * 2 + ((lane >> 3) & 1)));
        Mma<T>(s[2 * np], q_frag[kk], b[0], b[1]);
        Mma<T>(s[2 * np + 1], q_frag[kk], b[2], b[3]);
      }
    }

    // Causal mask and online softmax (log2 units); a row's values sit in one lane quad.
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int key = kt * kKeys + nt * 8 + (lane & 3) * 2 + (j & 1);
        const int position = first_position + row0 + (j >> 1) * 8;
        s[nt][j] = key <= position ? s[nt][j] * scale : -INFINITY;
        tile_max[j >> 1] = fmaxf(tile_max[j >> 1], s[nt][j]);
      }
    }
    float correction[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
      // Key 0 is visible to every row, so the first tile makes every row's max finite.
      const float new_max = fmaxf(row_max[r], tile_max[r]);
      correction[r] = exp2f(row_max[r] - new_max);
      row_max[r] = new_max;
    }
    float tile_sum[2] = {0.0f, 0.0f};
#pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        s[nt][j] = exp2f(s[nt][j] - row_max[j >> 1]);
        tile_sum[j >> 1] += s[nt][j];
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) row_sum[r] = row_sum[r] * correction[r] + tile_sum[r];
#pragma unroll
    for (int dn = 0; dn < kHeadDim / 8; ++dn) {
      o[dn][0] *= correction[0];
      o[dn][1] *= correction[0];
      o[dn][2] *= correction[1];
      o[dn][3] *= correction[1];
    }

    // O += P V: the score fragments are already laid out as the A operand.
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      const uint32_t a[4] = {
          Pack<T>(s[2 * kk][0], s[2 * kk][1]), Pack<T>(s[2 * kk][2], s[2 * kk][3]),
          Pack<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]), Pack<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int dp = 0; dp < kHeadDim / 16; ++dp) {
        uint32_t b[4];
        const int key = kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
        LoadMatrixTransposed(b, v_tile + Swizzle<kHeadDim>(key, dp * 2 + (lane >> 4)));
        Mma<T>(o[2 * dp], a, b[0], b[1]);
        Mma<T>(o[2 * dp + 1], a, b[2], b[3]);
      }
    }
    __syncthreads();  // every warp is done with stage kt % 2 before tile kt + 2 reuses it
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 1);
    row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 2);
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int local = row0 + r * 8;
    if (local >= rows) continue;
    const float inverse = 1.0f / row_sum[r];
    T* dst = p.out + ((first_token_row + local) * p.num_q_heads + head) * kHeadDim + (lane & 3) * 2;
#pragma unroll
    for (int dn = 0; dn < kHeadDim / 8; ++dn) {
      *reinterpret_cast<Pair<T>*>(dst + dn * 8) =
          FromFloat2<T>(o[dn][2 * r] * inverse, o[dn][2 * r + 1] * inverse);
    }
  }
}

template <typename T, int kHeadDim>
cudaError_t Launch(const PrefillAttentionParams<T>& p, cudaStream_t stream) {
  constexpr size_t kShared = static_cast<size_t>(kRows + 4 * kKeys) * kHeadDim * sizeof(T);
  if constexpr (kShared > 48 * 1024) {
    static const cudaError_t raised = cudaFuncSetAttribute(
        PrefillAttentionKernel<T, kHeadDim>, cudaFuncAttributeMaxDynamicSharedMemorySize,
        static_cast<int>(kShared));
    if (raised != cudaSuccess) return raised;
  }
  const dim3 grid(static_cast<unsigned int>(p.num_tiles), static_cast<unsigned int>(p.num_q_heads));
  return LaunchKernel(PrefillAttentionKernel<T, kHeadDim>, grid, kThreads, kShared, stream, p);
}

}  // namespace

bool PrefillAttentionSupportsHeadDim(int64_t head_dim) { return head_dim == 64 || head_dim == 128; }

template <typename T>
cudaError_t PrefillAttentionCuda(const PrefillAttentionParams<T>& p, cudaStream_t stream) {
  if (p.num_tiles == 0) return cudaSuccess;
  if (p.kv.num_kv_heads < 1 || p.num_q_heads % p.kv.num_kv_heads != 0 || p.row_stride % 8 != 0) {
    return cudaErrorInvalidValue;
  }
  switch (p.kv.head_dim) {
    case 64:
      return Launch<T, 64>(p, stream);
    case 128:
      return Launch<T, 128>(p, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

template cudaError_t PrefillAttentionCuda(const PrefillAttentionParams<bf16>&, cudaStream_t);
template cudaError_t PrefillAttentionCuda(const PrefillAttentionParams<fp16>&, cudaStream_t);

}  // namespace muxserve::kernels
