// confroute's C++ core: semantic entropy and its baselines, no Python required.
#pragma once
#include "confroute/clustering.hpp"
#include "confroute/entropy.hpp"
#include "confroute/logprobs.hpp"
#include "confroute/pipeline.hpp"
#include "confroute/ragged.hpp"
