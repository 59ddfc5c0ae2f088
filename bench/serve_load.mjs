// Load on a running `dsv3 serve`: CLIENTS concurrent streaming chat clients over loopback, each sending
// REQUESTS requests one after another (prompts of 10–300 words of text, max_tokens 8–48, sampled with a
// seed), about a tenth of them aborted by the client mid-stream. bench/serve_load.sh starts the server and
// runs this.
//   node bench/serve_load.mjs --url http://127.0.0.1:PORT --pid SERVER_PID --rss-bound-mib N
//        [--clients 64] [--requests 3] [--abort-fraction 0.1] [--timeout-s 300] [--seed 1]
//
// Every request must end in one of three ways: completed (a well-formed stream: role chunk, content deltas,
// a finish chunk with finish_reason stop or length, the usage chunk, then [DONE], and no more tokens than
// max_tokens), aborted (the client chose to, after its k-th content delta), or refused (an HTTP error status
// with an OpenAI error body). Anything else — a stream that breaks off, an error event, a body that is not
// JSON, no answer within 150 s — fails the run. Afterwards the server must have released every KV page
// (/metrics dsv3_kv_pages_used 0, nothing running or queued), its finished and rejected counters must
// account for every request, and its peak RSS (VmHWM, and VmRSS sampled every 50 ms) must stay within the
// bound. Progress goes to stderr; stdout gets one JSON line of results. Exit status 1 on any failure.
import { readFileSync } from "node:fs";

const opts = { clients: "64", requests: "3", "abort-fraction": "0.1", "timeout-s": "300", seed: "1" };
for (let i = 2; i < process.argv.length; i += 2) opts[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
for (const name of ["url", "pid", "rss-bound-mib"]) {
  if (!opts[name]) {
    console.error(`serve_load.mjs: --${name} is missing`);
    process.exit(2);
  }
}
const base = opts.url.replace(/\/$/, "");
const clients = Number(opts.clients), per_client = Number(opts.requests);
const abort_fraction = Number(opts["abort-fraction"]), rss_bound_mib = Number(opts["rss-bound-mib"]);
const request_timeout_ms = 150_000;
const log = (...a) => console.error("[serve_load]", ...a);

// mulberry32: a small seeded generator, so a run's prompts and choices repeat for a seed.
let rng_state = Number(opts.seed) >>> 0;
function random() {
  rng_state = (rng_state + 0x6d2b79f5) >>> 0;
  let t = rng_state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const uniform_int = (lo, hi) => lo + Math.floor(random() * (hi - lo + 1));

// Common English words, each one token of DeepSeek-V3's tokenizer with its leading space, so a prompt of
// n words is about n tokens (the usage chunks give the exact counts, reported below).
const words = ("the of and to in is was for that with as on by at from his her they this which but not are " +
  "had have one all were when there been their more time would about into out other after first over only " +
  "new most could people state years said made many some what where such through back water world house " +
  "school system program during between under before great small never public these city").split(" ");
const prompt_text = n => Array.from({ length: n }, () => words[uniform_int(0, words.length - 1)]).join(" ");

// Peak memory of the server: VmHWM (the kernel's high-water mark) and the largest VmRSS sampled.
const status_kib = field => {
  const m = readFileSync(`/proc/${opts.pid}/status`, "utf8").match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"));
  return m ? Number(m[1]) : 0;
};
let rss_max_kib = 0;
const rss_sampler = setInterval(() => {
  try { rss_max_kib = Math.max(rss_max_kib, status_kib("VmRSS")); } catch { /* the server is gone: reported below */ }
}, 50);

async function metrics() {
  const text = await (await fetch(`${base}/metrics`)).text();
  const m = {};
  for (const line of text.split("\n")) {
    const hit = line.match(/^dsv3_(\w+) (\S+)$/);
    if (hit) m[hit[1]] = Number(hit[2]);
  }
  return m;
}

// One streaming chat request. abort_after: abort after that many content deltas (null: never).
async function chat_request(prompt_words, max_tokens, abort_after, seed) {
  const r = { prompt_words, max_tokens, abort_after, outcome: "failed", ttft_ms: null, completion_tokens: 0,
              prompt_tokens: null, content_deltas: 0, error: "" };
  const controller = new AbortController();
  let aborted_by_us = false, timed_out = false;
  const timer = setTimeout(() => { timed_out = true; controller.abort(); }, request_timeout_ms);
  const t0 = performance.now();
  try {
    const res = await fetch(`${base}/v1/chat/completions`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: prompt_text(prompt_words) }], max_tokens,
                             temperature: 0.8, seed, stream: true, stream_options: { include_usage: true } }),
      signal: controller.signal,
    });
    if (res.status !== 200) {
      const body = await res.text();
      let error;
      try { error = JSON.parse(body).error; } catch { /* not JSON: a failure */ }
      if (error && typeof error.message === "string") {
        r.outcome = res.status === 503 ? "refused" : "failed";
        r.error = `HTTP ${res.status}: ${error.message}`;
      } else {
        r.error = `HTTP ${res.status} without an OpenAI error body: ${body.slice(0, 200)}`;
      }
      return r;
    }
    const events = [];
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
        if (!event.startsWith("data: ")) throw new Error(`an event that is not 'data: ': ${event.slice(0, 100)}`);
        const data = event.slice(6);
        if (data === "[DONE]") { events.push(data); continue; }
        const chunk = JSON.parse(data);
        events.push(chunk);
        if (chunk.error) throw new Error(`error event: ${chunk.error.message}`);
        const delta = chunk.choices?.[0]?.delta;
        if (delta?.content) {
          if (r.content_deltas++ === 0) r.ttft_ms = performance.now() - t0;
          if (abort_after !== null && r.content_deltas >= abort_after) {
            aborted_by_us = true;
            controller.abort();
          }
        }
      }
    }
    if (buffer.length) throw new Error(`the stream ended inside an event: ${buffer.slice(0, 100)}`);
    // The shape of a finished stream: role chunk first, a finish chunk, the usage chunk, [DONE] last.
    const n = events.length;
    if (n < 4 || events[n - 1] !== "[DONE]") throw new Error(`the stream did not end with [DONE] (${n} events)`);
    if (events[0].choices?.[0]?.delta?.role !== "assistant") throw new Error("no role chunk first");
    const finish = events[n - 3].choices?.[0]?.finish_reason;
    if (finish !== "stop" && finish !== "length") throw new Error(`finish_reason '${finish}'`);
    const usage = events[n - 2].usage;
    if (!usage) throw new Error("no usage chunk before [DONE]");
    r.completion_tokens = usage.completion_tokens;
    r.prompt_tokens = usage.prompt_tokens;
    if (usage.completion_tokens > max_tokens || (finish === "length" && usage.completion_tokens !== max_tokens))
      throw new Error(`${usage.completion_tokens} tokens for max_tokens ${max_tokens}, finish ${finish}`);
    r.outcome = "completed";
  } catch (e) {
    if (aborted_by_us && !timed_out) {
      r.outcome = "aborted";
    } else {
      r.error = timed_out ? `no end within ${request_timeout_ms / 1000} s` : `${e.name}: ${e.message}`;
    }
  } finally {
    clearTimeout(timer);
  }
  return r;
}

async function client(index, results) {
  for (let i = 0; i < per_client; ++i) {
    const prompt_words = uniform_int(10, 300), max_tokens = uniform_int(8, 48);
    const abort_after = random() < abort_fraction ? uniform_int(1, Math.max(1, Math.floor(max_tokens / 4))) : null;
    const r = await chat_request(prompt_words, max_tokens, abort_after, index * 1000 + i);
    if (r.outcome === "failed") log(`client ${index} request ${i} failed: ${r.error}`);
    results.push(r);
  }
}

const percentile = (values, p) => {
  if (!values.length) return null;
  const v = [...values].sort((a, b) => a - b);
  return v[Math.min(v.length - 1, Math.ceil((p / 100) * v.length) - 1)];
};
const round = (x, digits = 1) => (x === null ? null : Number(x.toFixed(digits)));

const hard_timeout = setTimeout(() => {
  console.log(JSON.stringify({ bench: "serve_load", ok: false, error: `not finished within ${opts["timeout-s"]} s` }));
  process.exit(1);
}, Number(opts["timeout-s"]) * 1000);

// Warm-up, untimed: one request, which must complete.
const warm = await chat_request(20, 8, null, 0);
if (warm.outcome !== "completed") {
  console.log(JSON.stringify({ bench: "serve_load", ok: false, error: `warm-up request: ${warm.error}` }));
  process.exit(1);
}
log(`warm-up ok (${warm.prompt_tokens} prompt tokens, ${warm.completion_tokens} generated)`);

const before = await metrics();
const results = [];
const t_start = performance.now();
await Promise.all(Array.from({ length: clients }, (_, i) => client(i, results)));
const wall_s = (performance.now() - t_start) / 1000;

// Cancelled requests release their pages at the scheduler's next step: wait for it, briefly.
let after = await metrics();
for (let i = 0; i < 100 && (after.kv_pages_used || after.requests_running || after.requests_queued); ++i) {
  await new Promise(resolve => setTimeout(resolve, 100));
  after = await metrics();
}
clearInterval(rss_sampler);
clearTimeout(hard_timeout);
const hwm_kib = status_kib("VmHWM");
const peak_rss_mib = Math.max(hwm_kib, rss_max_kib) / 1024;

const count = outcome => results.filter(r => r.outcome === outcome).length;
const completed = count("completed"), aborted = count("aborted"), refused = count("refused");
const failed = count("failed");
const delta = name => after[name] - before[name];
const ttfts = results.filter(r => r.ttft_ms !== null).map(r => r.ttft_ms);
const prompt_tokens = results.filter(r => r.prompt_tokens !== null).map(r => r.prompt_tokens);
const completion_tokens = results.reduce((s, r) => s + r.completion_tokens, 0);
const problems = [];
if (results.length !== clients * per_client) problems.push(`${results.length} results for ${clients * per_client} requests`);
if (failed) problems.push(`${failed} requests failed`);
if (after.kv_pages_used !== 0) problems.push(`kv_pages_used ${after.kv_pages_used} after the run`);
if (after.requests_running || after.requests_queued)
  problems.push(`${after.requests_running} running, ${after.requests_queued} queued after the run`);
if (delta("requests_finished_total") !== completed + aborted)
  problems.push(`the server finished ${delta("requests_finished_total")} requests; clients saw ${completed + aborted}`);
if (delta("requests_rejected_total") !== refused)
  problems.push(`the server rejected ${delta("requests_rejected_total")} requests; clients saw ${refused}`);
if (peak_rss_mib > rss_bound_mib) problems.push(`peak RSS ${peak_rss_mib.toFixed(1)} MiB over the bound ${rss_bound_mib} MiB`);

console.log(JSON.stringify({
  bench: "serve_load", ok: problems.length === 0, clients, requests: results.length, completed, aborted, refused,
  failed, wall_s: round(wall_s, 2), ttft_p50_ms: round(percentile(ttfts, 50)), ttft_p99_ms: round(percentile(ttfts, 99)),
  prompt_tokens_min: Math.min(...prompt_tokens), prompt_tokens_median: percentile(prompt_tokens, 50),
  prompt_tokens_max: Math.max(...prompt_tokens), completed_tokens: completion_tokens,
  server_generated_tokens: delta("generation_tokens_total"),
  generated_tokens_per_s: round(delta("generation_tokens_total") / wall_s),
  server_prompt_tokens: delta("prompt_tokens_total"), prefix_cache_hit_tokens: delta("prefix_cache_hit_tokens_total"),
  preemptions: delta("preemptions_total"), kv_pages_used_after: after.kv_pages_used,
  peak_rss_mib: round(peak_rss_mib), rss_bound_mib: round(rss_bound_mib), problems,
}));
process.exit(problems.length ? 1 : 0);
