#include "serve/web_page.h"

namespace dsv3 {

namespace {

// The page. Kept as one literal so the binary carries it; the script uses only what every current
// browser has (fetch streams, TextDecoder).
constexpr std::string_view kPage = R"PAGE(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dsv3 chat</title>
<link rel="icon" href="data:,">  <!-- no icon: browsers would otherwise ask for /favicon.ico, a 404 -->
<style>
  :root { --fg: #1d2125; --muted: #6a737d; --bg: #f6f7f9; --card: #fff; --accent: #3867d6; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.5 system-ui, sans-serif; color: var(--fg); background: var(--bg);
         display: flex; flex-direction: column; height: 100vh; }
  header { padding: 10px 16px; background: var(--card); border-bottom: 1px solid #dde1e6;
           display: flex; gap: 12px; align-items: baseline; }
  header h1 { font-size: 16px; margin: 0; }
  #model, #status { color: var(--muted); font-size: 13px; }
  #log { flex: 1; overflow-y: auto; padding: 16px; display: flex; flex-direction: column; gap: 10px; }
  .msg { max-width: 820px; padding: 10px 14px; border-radius: 10px; background: var(--card);
         border: 1px solid #e3e6ea; white-space: pre-wrap; word-wrap: break-word; }
  .user { align-self: flex-end; background: #e8effd; border-color: #cfdcf8; }
  .assistant { align-self: flex-start; }
  details.reasoning { color: var(--muted); font-size: 13px; margin-bottom: 6px; }
  details.reasoning summary { cursor: pointer; }
  .stats { color: var(--muted); font-size: 12px; margin-top: 4px; }
  form { display: flex; gap: 8px; padding: 12px 16px; background: var(--card); border-top: 1px solid #dde1e6; }
  textarea { flex: 1; resize: none; height: 56px; padding: 8px; font: inherit; border: 1px solid #c9ced6;
             border-radius: 8px; }
  button { padding: 0 18px; border: 0; border-radius: 8px; background: var(--accent); color: #fff; font: inherit; }
  button:disabled { opacity: .5; }
</style>
</head>
<body>
<header><h1>dsv3 chat</h1><span id="model">connecting…</span><span id="status"></span></header>
<div id="log" aria-live="polite"></div>
<form id="form">
  <textarea id="input" placeholder="Message (Enter sends, Shift+Enter for a new line)" autofocus></textarea>
  <button id="send" type="submit">Send</button>
</form>
<script>
"use strict";
const log = document.getElementById("log"), input = document.getElementById("input");
const send = document.getElementById("send"), statusEl = document.getElementById("status");
const history = [];
let modelId = "";

fetch("/v1/models").then(r => r.json()).then(j => {
  modelId = j.data[0].id;
  document.getElementById("model").textContent = modelId;
}).catch(() => { document.getElementById("model").textContent = "server not reachable"; });

function bubble(role) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  log.appendChild(div);
  return div;
}

async function ask(text) {
  history.push({ role: "user", content: text });
  bubble("user").textContent = text;
  const box = bubble("assistant");
  box.dataset.state = "streaming";
  const details = document.createElement("details");
  details.className = "reasoning";
  details.innerHTML = "<summary>reasoning</summary>";
  const reasoningEl = document.createElement("div");
  details.appendChild(reasoningEl);
  const contentEl = document.createElement("div");
  contentEl.className = "content";
  const stats = document.createElement("div");
  stats.className = "stats";
  box.append(contentEl, stats);
  let content = "", reasoning = "";
  send.disabled = true;
  statusEl.textContent = "generating…";
  try {
    const res = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model: modelId, messages: history, stream: true,
                             stream_options: { include_usage: true } }),
    });
    if (!res.ok) {
      const err = await res.json().catch(() => ({}));
      throw new Error((err.error && err.error.message) || res.statusText);
    }
    const reader = res.body.getReader(), decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        if (!event.startsWith("data: ")) continue;
        const data = event.slice(6);
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        if (chunk.timings) {
          const t = chunk.timings;
          stats.textContent = `${t.predicted_n} tokens · ${t.predicted_per_second.toFixed(1)} tokens/s · ` +
                              `prompt ${t.prompt_per_second.toFixed(1)} tokens/s`;
        }
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (!delta) continue;
        if (delta.reasoning_content) {
          reasoning += delta.reasoning_content;
          if (!details.parentNode) box.insertBefore(details, contentEl);
          reasoningEl.textContent = reasoning;
        }
        if (delta.content) { content += delta.content; contentEl.textContent = content; }
        log.scrollTop = log.scrollHeight;
      }
    }
    history.push({ role: "assistant", content });
    statusEl.textContent = "";
  } catch (e) {
    history.pop();
    contentEl.textContent = content;
    stats.textContent = "error: " + e.message;
    statusEl.textContent = "";
  } finally {
    box.dataset.state = "done";
    send.disabled = false;
    input.focus();
  }
}

document.getElementById("form").addEventListener("submit", e => {
  e.preventDefault();
  const text = input.value.trim();
  if (!text || send.disabled) return;
  input.value = "";
  ask(text);
});
input.addEventListener("keydown", e => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); document.getElementById("form").requestSubmit(); }
});
</script>
</body>
</html>
)PAGE";

}  // namespace

std::string_view web_page_html() { return kPage; }

}  // namespace dsv3
