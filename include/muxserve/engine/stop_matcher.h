// Stop strings over streamed text: text that might be the start of a stop string is held back
// until it is known not to be one, so a match is never leaked to the client.
#pragma once

#include <string>
#include <vector>

namespace muxserve::engine {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}

  // Adds new text. Returns the text now safe to send; sets *stopped when a stop string matched
  // (the returned text then ends just before the match).
  std::string Push(const std::string& text, bool* stopped);
  // At the end of the stream, whatever is still held back.
  std::string Flush();

 private:
  std::vector<std::string> stops_;
  std::string held_;
};

}  // namespace muxserve::engine
