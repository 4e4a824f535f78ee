#include "confroute/ragged.hpp"

#include <stdexcept>

namespace confroute {

void check_offsets(const int64_t* offsets, std::size_t n_offsets, int64_t total,
                   const std::string& name, const std::string& rows, bool nonempty) {
  if (n_offsets == 0)
    throw std::invalid_argument(name + " is empty: it needs n+1 entries, starting with 0");
  if (offsets[0] != 0)
    throw std::invalid_argument(name + "[0] is " + std::to_string(offsets[0]) +
                                ", it must be 0");
  for (std::size_t i = 1; i < n_offsets; ++i) {
    if (offsets[i] < offsets[i - 1])
      throw std::invalid_argument(name + " decreases at index " + std::to_string(i) + " (" +
                                  std::to_string(offsets[i - 1]) + " -> " +
                                  std::to_string(offsets[i]) + ")");
    if (nonempty && offsets[i] == offsets[i - 1])
      throw std::invalid_argument(name + ": entry " + std::to_string(i - 1) + " has no " +
                                  rows + " (offsets " + std::to_string(offsets[i]) +
                                  " and " + std::to_string(offsets[i]) + ")");
  }
  if (offsets[n_offsets - 1] != total)
    throw std::invalid_argument(name + " ends at " + std::to_string(offsets[n_offsets - 1]) +
                                " but there are " + std::to_string(total) + " " + rows);
}

}  // namespace confroute
