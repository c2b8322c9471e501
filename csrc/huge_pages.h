// Cheaper first touch of a big fresh output buffer on Linux.
//
// A multi-megabyte tensor that torch has just allocated is usually fresh mmap'ed memory:
// writing it costs one page fault per 4 KiB page (the kernel maps and zeroes each one;
// in a VM a second-level fault too), and for a scatter's output that is most of the
// time of the op. Asking for transparent huge pages over the buffer's 2 MiB-aligned
// interior makes those faults 512 times fewer. This only touches the op's own output,
// which it overwrites completely, so no memory is added; it is a hint, a no-op where THP
// is disabled, already "always", or the pages are mapped already (memory that the
// allocator reused), and a failure only loses the speed-up.
#pragma once
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace fmae {

inline void advise_huge_pages(void* buffer, int64_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{1} << 21;
  // Below two huge pages the interior may hold none, and the faults cost little anyway.
  if (bytes < static_cast<int64_t>(2 * kHuge)) return;
  const uintptr_t start = reinterpret_cast<uintptr_t>(buffer);
  const uintptr_t begin = (start + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (start + static_cast<uintptr_t>(bytes)) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)buffer;
  (void)bytes;
#endif
}

}  // namespace fmae
