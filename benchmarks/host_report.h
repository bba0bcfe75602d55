// What every CPU-side benchmark report carries besides its figures: the machine, the date and
// the command that produced it.
#pragma once

#include <chrono>
#include <ctime>
#include <fstream>
#include <string>
#include <thread>

namespace muxserve::bench {

inline std::string CpuName() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown CPU";
}

// "<CPU model>, N cores".
inline std::string HostCard() {
  return CpuName() + ", " + std::to_string(std::thread::hardware_concurrency()) + " cores";
}

// Today in UTC, YYYY-MM-DD.
inline std::string UtcDate() {
  const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char date[32];
  std::strftime(date, sizeof(date), "%Y-%m-%d", std::gmtime(&now));
  return date;
}

inline std::string CommandLine(int argc, char** argv) {
  std::string command;
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);
  return command;
}

}  // namespace muxserve::bench
