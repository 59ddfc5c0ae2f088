// The web chat page `dsv3 serve` answers at GET /: one self-contained HTML document (styles and script
// inline, no external resources), so it works without internet access. It talks to the server's own
// /v1/chat/completions with streaming, shows reasoning in a collapsible block, the model name and each
// reply's tokens/s.
#pragma once

#include <string_view>

namespace dsv3 {

std::string_view web_page_html();

}  // namespace dsv3
