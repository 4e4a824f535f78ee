// Ragged batches: values plus offsets (n+1 entries, 0 .. total, non-decreasing).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace confroute {

// Throws std::invalid_argument unless `offsets` (length n_offsets) starts at 0, never
// decreases and ends at `total`. `name` and `rows` make the message say which argument
// and what it indexes. With `nonempty`, every range must hold at least one row.
void check_offsets(const int64_t* offsets, std::size_t n_offsets, int64_t total,
                   const std::string& name, const std::string& rows, bool nonempty);

}  // namespace confroute
