// Checks of a running `dsv3 serve` through OpenAI's official Node client and raw HTTP, for
// tests/cli/serve_smoke.sh. Each check prints "  ok   LABEL: what it saw" or "  FAIL LABEL: what was
// expected and what came back"; the exit status is the number of failures (capped at 100).
//
//   node serve_client.mjs api     --url URL --npm DIR --model-id ID --ctx N
//       a server started with --parallel 2 --ctx N --max-body-mb 1: the client's chat and text
//       completions (streamed and not), usage, logprobs, seeds, models.list, the prefix cache, error
//       bodies and statuses, special-token text, a client that disconnects, the web page
//   node serve_client.mjs guarded --url URL --npm DIR --model-id ID --key KEY
//       a server started with --api-key KEY --max-queue 0 --parallel 1: 401 without the key, 503 with
//       Retry-After for a request that finds the only slot busy
//   node serve_client.mjs stop    --url URL --pid PID --log FILE
//       SIGTERM to PID during a stream: the stream still ends with [DONE], a new request is refused
//       (the caller then checks the exit status)
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";

const [phase, ...rest] = process.argv.slice(2);
const args = {};
for (let i = 0; i < rest.length; i += 2) args[rest[i].replace(/^--/, "")] = rest[i + 1];
const base = args.url;

let failures = 0;

// check(label, fn): runs fn (which returns a description of what it saw, or throws), prints ok or FAIL.
async function check(label, fn) {
  try {
    const seen = await fn();
    console.log(`  ok   ${label}${seen ? `: ${seen}` : ""}`);
  } catch (e) {
    failures++;
    console.log(`  FAIL ${label}: ${e instanceof CheckFailed ? e.message : e?.stack ?? e}`);
  }
}

class CheckFailed extends Error {}

function expect(condition, message) {
  if (!condition) throw new CheckFailed(message);
}

const show = (value, limit = 300) => {
  const text = typeof value === "string" ? value : String(JSON.stringify(value));
  return text.length > limit ? `${text.slice(0, limit)}...` : text;
};

// The last two events of a stream, each shortened to its end.
const lastEvents = (events) => events.slice(-2).map((e) => (e.length > 150 ? `...${e.slice(-150)}` : e)).join(" | ");

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// One HTTP request: {status, headers, text, json (undefined when the body is not JSON)}.
async function http(method, route, { body, headers = {}, timeout = 30000 } = {}) {
  const init = { method, headers: { ...headers }, signal: AbortSignal.timeout(timeout) };
  if (body !== undefined) {
    init.body = typeof body === "string" || body instanceof Uint8Array ? body : JSON.stringify(body);
    init.headers["Content-Type"] ??= "application/json";
  }
  const res = await fetch(base + route, init);
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

const post = (route, body, options = {}) => http("POST", route, { body, ...options });

// The response must have `status` and OpenAI's error body {"error": {"message", "type", ...}}.
function expectErrorBody(res, status) {
  expect(res.status === status, `expected status ${status}, got ${res.status} with body ${show(res.text)}`);
  const error = res.json?.error;
  expect(error && typeof error === "object", `expected a JSON body {"error": {...}}, got ${show(res.text)}`);
  expect(typeof error.message === "string" && error.message.length > 0,
    `expected error.message to be a non-empty string, got ${show(res.text)}`);
  expect(typeof error.type === "string" && error.type.length > 0,
    `expected error.type to be a non-empty string, got ${show(res.text)}`);
  return `${status} ${error.type}: "${show(error.message, 100)}"`;
}

// A streamed completion read as server-sent events: awaits onEvent(payload, parsed JSON or undefined)
// for each "data:" event; onEvent returning false aborts the request (the client goes away). Resolves to
// {status, events: [payload...], aborted}.
async function stream(route, body, { headers = {}, onEvent = () => true, timeout = 60000 } = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error(`no end of stream within ${timeout} ms`)), timeout);
  try {
    const res = await fetch(base + route, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...headers },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (res.status !== 200) return { status: res.status, events: [], text: await res.text(), aborted: false };
    const type = res.headers.get("content-type") ?? "";
    expect(type.startsWith("text/event-stream"), `a stream answered with content-type ${type}, not text/event-stream`);
    const decoder = new TextDecoder();
    const events = [];
    let buffer = "";
    const reader = res.body.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        expect(event.startsWith("data: "), `a stream event that is not "data: ...": ${show(event)}`);
        const payload = event.slice(6);
        events.push(payload);
        let parsed;
        try {
          parsed = JSON.parse(payload);
        } catch {
          parsed = undefined;
        }
        if ((await onEvent(payload, parsed)) === false) {
          // Leave: close the connection as a client that goes away does.
          await reader.cancel().catch(() => {});
          controller.abort();
          return { status: 200, events, aborted: true };
        }
      }
    }
    expect(buffer.trim() === "", `the stream ended inside an event: ${show(buffer)}`);
    return { status: 200, events, aborted: false };
  } finally {
    clearTimeout(timer);
  }
}

// GET /metrics as {name: value}.
async function metrics(headers = {}) {
  const res = await http("GET", "/metrics", { headers });
  expect(res.status === 200, `GET /metrics: status ${res.status}, body ${show(res.text)}`);
  const out = {};
  for (const line of res.text.split("\n")) {
    const m = line.match(/^(dsv3_\w+) (\S+)$/);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

async function tokenize(content, addSpecial) {
  const res = await post("/tokenize", { content, add_special: addSpecial });
  expect(res.status === 200 && Array.isArray(res.json?.tokens), `POST /tokenize: ${res.status} ${show(res.text)}`);
  return res.json.tokens;
}

function openaiClient(apiKey) {
  const require = createRequire(path.join(args.npm, "package.json"));
  const module = require("openai");
  const OpenAI = module.OpenAI ?? module.default ?? module;
  return new OpenAI({ baseURL: `${base}/v1`, apiKey, maxRetries: 0, timeout: 60000 });
}

// usage must be consistent: integers, total = prompt + completion, cached within the prompt, and
// completion_tokens as finish_reason says for max_tokens.
function checkUsage(usage, maxTokens, finish) {
  expect(usage && typeof usage === "object", `no usage object: ${show(usage)}`);
  const { prompt_tokens: p, completion_tokens: c, total_tokens: t } = usage;
  const cached = usage.prompt_tokens_details?.cached_tokens;
  expect([p, c, t, cached].every(Number.isInteger),
    `usage fields prompt_tokens, completion_tokens, total_tokens, prompt_tokens_details.cached_tokens must be integers, got ${show(usage)}`);
  expect(p > 0 && t === p + c, `expected total_tokens = prompt_tokens + completion_tokens > 0, got ${show(usage)}`);
  expect(cached >= 0 && cached < p, `expected 0 <= cached_tokens < prompt_tokens, got ${show(usage)}`);
  expect(finish === "length" ? c === maxTokens : c >= 1 && c <= maxTokens,
    `finish_reason "${finish}" with max_tokens ${maxTokens}, but completion_tokens ${c}`);
  return `usage ${p}+${c}=${t}, cached ${cached}`;
}

const user = (content) => [{ role: "user", content }];

// ------------------------------------------------------------------------------------------------
// Phase api
// ------------------------------------------------------------------------------------------------

async function phaseApi() {
  const client = openaiClient("unused");
  const model = args["model-id"];
  const ctx = Number(args.ctx);

  await check("client: models.list() names the served model", async () => {
    const list = await client.models.list();
    const ids = list.data.map((m) => m.id);
    expect(ids.length === 1 && ids[0] === model && list.data[0].object === "model",
      `expected one model "${model}" of object "model", got ${show(list.data)}`);
    return ids.join(", ");
  });

  await check("client: chat completion, not streamed", async () => {
    const r = await client.chat.completions.create({ model, messages: user("Say hello."), max_tokens: 8, temperature: 0 });
    const choice = r.choices?.[0];
    expect(r.object === "chat.completion" && r.choices.length === 1, `expected one choice of a chat.completion, got ${show(r)}`);
    expect(choice.message?.role === "assistant" && typeof choice.message.content === "string",
      `expected message {role: "assistant", content: string}, got ${show(choice.message)}`);
    expect(["length", "stop"].includes(choice.finish_reason), `finish_reason ${choice.finish_reason}`);
    return `${checkUsage(r.usage, 8, choice.finish_reason)}, finish ${choice.finish_reason}`;
  });

  const seeded = { model, messages: user("Tell me a story."), max_tokens: 12, temperature: 1 };
  let seededText;
  await check("client: seed and temperature 1 reproduce the reply; another seed changes it", async () => {
    const a = await client.chat.completions.create({ ...seeded, seed: 11 });
    const b = await client.chat.completions.create({ ...seeded, seed: 11 });
    const c = await client.chat.completions.create({ ...seeded, seed: 12 });
    [a, b, c].forEach((r) => checkUsage(r.usage, 12, r.choices[0].finish_reason));
    seededText = a.choices[0].message.content;
    expect(seededText === b.choices[0].message.content,
      `seed 11 twice gave different replies: ${show(seededText)} and ${show(b.choices[0].message.content)}`);
    expect(seededText !== c.choices[0].message.content,
      `seeds 11 and 12 gave the same reply ${show(seededText)}: is the seed (or the temperature) ignored?`);
    return `seed 11: ${show(seededText, 60)}`;
  });

  await check("client: chat completion streamed with include_usage", async () => {
    const s = await client.chat.completions.create({ ...seeded, seed: 11, stream: true, stream_options: { include_usage: true } });
    const chunks = [];
    for await (const chunk of s) chunks.push(chunk);
    expect(chunks.length >= 4, `expected role, content, finish and usage chunks, got ${chunks.length}: ${show(chunks)}`);
    const first = chunks[0], usageChunk = chunks.at(-1), finishChunk = chunks.at(-2);
    expect(first.object === "chat.completion.chunk" && first.choices[0]?.delta?.role === "assistant",
      `expected the first chunk's delta to have role "assistant", got ${show(first)}`);
    const middle = chunks.slice(0, -2);
    for (const c of middle) {
      expect(c.choices.length === 1 && c.choices[0].finish_reason === null && c.usage === null,
        `a content chunk with finish_reason or usage set, or not one choice: ${show(c)}`);
    }
    const text = middle.map((c) => c.choices[0].delta.content ?? "").join("");
    expect(middle.slice(1).filter((c) => c.choices[0].delta.content).length >= 1, `no content deltas: ${show(chunks)}`);
    const finish = finishChunk.choices[0]?.finish_reason;
    expect(["length", "stop"].includes(finish) && Object.keys(finishChunk.choices[0].delta).length === 0,
      `expected the chunk before usage to have finish_reason length/stop and an empty delta, got ${show(finishChunk)}`);
    expect(usageChunk.choices.length === 0, `expected the last chunk to be the usage chunk (no choices), got ${show(usageChunk)}`);
    const usage = checkUsage(usageChunk.usage, 12, finish);
    expect(text === seededText, `the streamed deltas join to ${show(text)}, but the same seed gave ${show(seededText)} unstreamed`);
    return `${chunks.length} chunks, ${usage}, the deltas join to the unstreamed reply for the seed`;
  });

  await check("raw stream: chunks in order, then data: [DONE], then the end", async () => {
    const body = { messages: user("Count."), max_tokens: 5, temperature: 0, stream: true, stream_options: { include_usage: true } };
    const { status, events, text } = await stream("/v1/chat/completions", body);
    expect(status === 200, `status ${status}: ${show(text)}`);
    expect(events.at(-1) === "[DONE]" && events.indexOf("[DONE]") === events.length - 1,
      `expected exactly one [DONE], as the last event; the last events were ${lastEvents(events)}`);
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    const usageAt = chunks.findIndex((c) => c.usage);
    const finishAt = chunks.findIndex((c) => c.choices?.[0]?.finish_reason);
    expect(usageAt === chunks.length - 1 && finishAt === chunks.length - 2,
      `expected the finish chunk then the usage chunk just before [DONE]; finish at ${finishAt}, usage at ${usageAt} of ${chunks.length}`);
    return `${events.length} events`;
  });

  const completionArgs = { model, prompt: "The jury said", max_tokens: 8, temperature: 1, seed: 5 };
  let completionText;
  await check("client: text completion, not streamed", async () => {
    const r = await client.completions.create(completionArgs);
    const choice = r.choices?.[0];
    expect(r.object === "text_completion" && typeof choice?.text === "string", `expected a text_completion, got ${show(r)}`);
    completionText = choice.text;
    return `${checkUsage(r.usage, 8, choice.finish_reason)}, text ${show(choice.text, 60)}`;
  });

  await check("client: text completion streamed with include_usage equals it for the seed", async () => {
    const s = await client.completions.create({ ...completionArgs, stream: true, stream_options: { include_usage: true } });
    const chunks = [];
    for await (const chunk of s) chunks.push(chunk);
    const usageChunk = chunks.at(-1), finishChunk = chunks.at(-2);
    expect(usageChunk?.usage && usageChunk.choices.length === 0, `expected a usage chunk last, got ${show(usageChunk)}`);
    const finish = finishChunk?.choices?.[0]?.finish_reason;
    expect(["length", "stop"].includes(finish), `expected finish_reason in the chunk before usage, got ${show(finishChunk)}`);
    const text = chunks.slice(0, -1).map((c) => c.choices[0].text).join("");
    expect(text === completionText, `streamed text ${show(text)}, unstreamed ${show(completionText)}`);
    return `${chunks.length} chunks, ${checkUsage(usageChunk.usage, 8, finish)}`;
  });

  await check("client: chat logprobs with top_logprobs 3", async () => {
    const r = await client.chat.completions.create({
      model, messages: user("Name a colour."), max_tokens: 5, temperature: 0, logprobs: true, top_logprobs: 3,
    });
    const content = r.choices[0].logprobs?.content;
    expect(Array.isArray(content) && content.length === r.usage.completion_tokens,
      `expected logprobs.content with one entry per generated token (${r.usage.completion_tokens}), got ${show(r.choices[0].logprobs)}`);
    const bytes = [];
    let control = 0;
    for (const entry of content) {
      expect(typeof entry.token === "string" && entry.logprob <= 0 && Array.isArray(entry.bytes),
        `an entry without token, logprob <= 0 and bytes: ${show(entry)}`);
      expect(entry.top_logprobs.length === 3, `expected 3 top_logprobs, got ${show(entry.top_logprobs)}`);
      const values = entry.top_logprobs.map((t) => t.logprob);
      expect(values.every((v, i) => v <= 0 && (i === 0 || v <= values[i - 1])),
        `top_logprobs not descending log-probabilities: ${show(values)}`);
      // Greedy decoding takes the most likely token.
      expect(entry.top_logprobs[0].token === entry.token && entry.top_logprobs[0].logprob === entry.logprob,
        `temperature 0 chose ${show(entry.token)} (${entry.logprob}) but the top alternative is ${show(entry.top_logprobs[0])}`);
      // A random model may pick DeepSeek's control tokens (<｜...｜>): they have logprobs, but no text in the reply.
      if (/^<｜.*｜>$/.test(entry.token)) control++;
      else bytes.push(...entry.bytes);
    }
    const text = Buffer.from(bytes).toString("utf8");
    expect(text === r.choices[0].message.content,
      `the tokens' bytes (less control tokens) spell ${show(text)}, the reply is ${show(r.choices[0].message.content)}`);
    return `${content.length} tokens (${control} control tokens), each with 3 alternatives; their bytes spell the reply`;
  });

  await check("client: text completion logprobs 2 (the legacy layout)", async () => {
    const r = await client.completions.create({ model, prompt: "Once", max_tokens: 4, temperature: 0, logprobs: 2 });
    const lp = r.choices[0].logprobs;
    const n = r.usage.completion_tokens;
    expect(lp && [lp.tokens, lp.token_logprobs, lp.top_logprobs, lp.text_offset].every((a) => Array.isArray(a) && a.length === n),
      `expected tokens, token_logprobs, top_logprobs and text_offset of ${n} entries, got ${show(lp)}`);
    expect(lp.top_logprobs.every((t) => typeof t === "object" && Object.keys(t).length >= 1 && Object.keys(t).length <= 2),
      `expected top_logprobs maps of at most 2 tokens, got ${show(lp.top_logprobs)}`);
    // Tokens are whole UTF-8 text unless a character spans tokens (then they hold U+FFFD); control tokens
    // have no text in the reply.
    const joined = lp.tokens.filter((t) => !/^<｜.*｜>$/.test(t)).join("");
    if (!joined.includes("\uFFFD"))
      expect(joined === r.choices[0].text, `tokens join to ${show(joined)}, text is ${show(r.choices[0].text)}`);
    return `${n} tokens`;
  });

  await check("client: a repeated prompt of >= 130 tokens takes >= 64 tokens from the prefix cache", async () => {
    const system = "You are a careful assistant for a museum of clocks. ".repeat(14);
    const messages = [{ role: "system", content: system }, { role: "user", content: "When does the museum open?" }];
    const before = await metrics();
    const first = await client.chat.completions.create({ model, messages, max_tokens: 2, temperature: 0 });
    const second = await client.chat.completions.create({ model, messages, max_tokens: 2, temperature: 0 });
    const after = await metrics();
    const [c1, c2] = [first, second].map((r) => r.usage.prompt_tokens_details?.cached_tokens);
    expect(first.usage.prompt_tokens >= 130 && first.usage.prompt_tokens + 2 <= ctx,
      `the prompt is ${first.usage.prompt_tokens} tokens; the check needs 130 <= it <= ctx - 2 = ${ctx - 2}`);
    expect(c1 === 0, `the first time, cached_tokens should be 0 (a new prompt), got ${c1}`);
    expect(c2 >= 64, `the second time, expected cached_tokens >= 64 (a full 64-token page), got ${c2}`);
    const hits = after.dsv3_prefix_cache_hit_tokens_total - before.dsv3_prefix_cache_hit_tokens_total;
    expect(hits === c2, `dsv3_prefix_cache_hit_tokens_total grew by ${hits}, but usage reported ${c2} cached tokens`);
    return `${first.usage.prompt_tokens} prompt tokens; cached ${c1}, then ${c2}`;
  });

  // Errors: raw HTTP.
  const chatOk = { messages: user("hi"), max_tokens: 2 };
  const errorCases = [
    ["malformed JSON", "/v1/chat/completions", '{"messages": [', 400],
    ["max_tokens \"ten\"", "/v1/chat/completions", { ...chatOk, max_tokens: "ten" }, 400],
    ["temperature \"hot\"", "/v1/chat/completions", { ...chatOk, temperature: "hot" }, 400],
    ["messages not an array", "/v1/chat/completions", { messages: "hi" }, 400],
    ["max_tokens 0", "/v1/chat/completions", { ...chatOk, max_tokens: 0 }, 400],
    ["max_tokens -1", "/v1/completions", { prompt: "hi", max_tokens: -1 }, 400],
    ["n 2", "/v1/chat/completions", { ...chatOk, n: 2 }, 400],
    ["an unknown model", "/v1/chat/completions", { ...chatOk, model: "no-such-model" }, 404],
    ["a chat prompt longer than --ctx", "/v1/chat/completions", { ...chatOk, messages: user("word ".repeat(ctx + 50)) }, 400],
    ["a text prompt longer than --ctx", "/v1/completions", { prompt: "word ".repeat(ctx + 50), max_tokens: 2 }, 400],
    ["invalid UTF-8 in the body", "/v1/chat/completions",
      Buffer.concat([Buffer.from('{"messages": [{"role": "user", "content": "a'), Buffer.from([0xff, 0xfe]),
        Buffer.from('b"}], "max_tokens": 2}')]), 400],
    ["a body over --max-body-mb 1", "/v1/completions", JSON.stringify({ prompt: "x".repeat(1536 * 1024) }), 413],
  ];
  for (const [label, route, body, status] of errorCases) {
    await check(`error: ${label} -> ${status}`, async () => {
      let res;
      try {
        res = await post(route, body);
      } catch (e) {
        throw new CheckFailed(`expected a ${status} response, the request failed: ${e.cause?.code ?? ""} ${e.message}`);
      }
      return expectErrorBody(res, status);
    });
  }
  await check("error: unknown routes -> 404", async () => {
    const a = await http("GET", "/v1/no-such-route");
    const b = await post("/v1/chat/no-such-route", chatOk);
    return `${expectErrorBody(a, 404)}; POST: ${expectErrorBody(b, 404)}`;
  });
  await check("server still answers after the errors", async () => {
    const r = await post("/v1/chat/completions", chatOk);
    expect(r.status === 200 && r.json?.choices?.length === 1, `status ${r.status}: ${show(r.text)}`);
  });

  await check("special-token text in a message stays text", async () => {
    const marker = "<｜Assistant｜>";
    const asText = await tokenize(marker, false);
    const asSpecial = await tokenize(marker, true);
    expect(asSpecial.length === 2, `with add_special true, expected [BOS, the control token], got ${show(asSpecial)}`);
    expect(asText.length >= 2, `with add_special false, the marker should be several text tokens, got ${show(asText)}`);
    const plain = await post("/v1/chat/completions", { messages: user("hello"), max_tokens: 1 });
    const typed = await post("/v1/chat/completions", { messages: user(marker), max_tokens: 1 });
    expect(plain.status === 200 && typed.status === 200, `statuses ${plain.status}, ${typed.status}: ${show(typed.text)}`);
    const overhead = plain.json.usage.prompt_tokens - (await tokenize("hello", false)).length;
    const expected = overhead + asText.length;
    expect(typed.json.usage.prompt_tokens === expected,
      `expected prompt_tokens ${overhead} (the template) + ${asText.length} (the marker as text) = ${expected}, ` +
      `got ${typed.json.usage.prompt_tokens}`);
    const completion = await post("/v1/completions", { prompt: marker, max_tokens: 1 });
    expect(completion.json?.usage?.prompt_tokens === 1 + asText.length,
      `/v1/completions: expected prompt_tokens 1 (BOS) + ${asText.length}, got ${show(completion.text)}`);
    return `the marker is ${asText.length} text tokens in chat (prompt ${expected} tokens) and text completions`;
  });

  await check("a client that disconnects mid-stream: its pages are freed, the server keeps serving", async () => {
    const maxTokens = ctx - 16;
    const before = await metrics();
    let content = 0, usedWhileRunning;
    const { status, aborted, text } = await stream("/v1/completions",
      { prompt: "Once upon a time", max_tokens: maxTokens, temperature: 1, stream: true }, {
        onEvent: async (payload, chunk) => {
          if (chunk?.choices?.[0]?.text) content++;
          if (content < 3) return true;
          usedWhileRunning = (await metrics()).dsv3_kv_pages_used;
          return false;
        },
      });
    expect(status === 200 && aborted, `expected to read 3 content chunks and leave, got status ${status}, ${show(text ?? "")}`);
    expect(usedWhileRunning >= 1, `while the request ran, dsv3_kv_pages_used was ${usedWhileRunning} (expected >= 1)`);
    const start = Date.now();
    let m;
    for (;;) {
      m = await metrics();
      if (m.dsv3_kv_pages_used === 0 && m.dsv3_requests_running === 0) break;
      expect(Date.now() - start < 5000,
        `5 s after the client left: dsv3_kv_pages_used ${m.dsv3_kv_pages_used}, dsv3_requests_running ${m.dsv3_requests_running} (expected 0)`);
      await sleep(50);
    }
    const generated = m.dsv3_generation_tokens_total - before.dsv3_generation_tokens_total;
    expect(generated < maxTokens, `${generated} tokens were generated: the request ran to max_tokens ${maxTokens} instead of being cancelled`);
    const r = await post("/v1/chat/completions", chatOk);
    expect(r.status === 200, `the next request got ${r.status}: ${show(r.text)}`);
    return `${usedWhileRunning} pages used while it ran, 0 ${Date.now() - start} ms after it left; ${generated} of ${maxTokens} tokens generated`;
  });

  await check("GET / is the chat page", async () => {
    const r = await http("GET", "/");
    expect(r.status === 200 && /text\/html/.test(r.headers.get("content-type") ?? ""),
      `status ${r.status}, content-type ${r.headers.get("content-type")}`);
    expect(r.text.includes("dsv3 chat"), `the page does not contain "dsv3 chat": ${show(r.text, 200)}`);
    return `${r.text.length} bytes of HTML`;
  });
}

// ------------------------------------------------------------------------------------------------
// Phase guarded: --api-key KEY --max-queue 0 --parallel 1
// ------------------------------------------------------------------------------------------------

async function phaseGuarded() {
  const key = args.key;
  const auth = { Authorization: `Bearer ${key}` };
  const body = { messages: user("hi"), max_tokens: 2 };

  await check("--api-key: /health and / answer 200 without the key", async () => {
    const health = await http("GET", "/health");
    const page = await http("GET", "/");
    expect(health.status === 200 && page.status === 200, `/health ${health.status}, / ${page.status}`);
  });
  await check("--api-key: a missing or wrong key gets 401", async () => {
    const seen = [];
    for (const [label, route, method, headers] of [
      ["no key", "/v1/chat/completions", "POST", {}],
      ["wrong key", "/v1/chat/completions", "POST", { Authorization: `Bearer ${key}x` }],
      ["no key", "/v1/models", "GET", {}],
      ["no key", "/metrics", "GET", {}],
    ]) {
      const res = await http(method, route, { headers, body: method === "POST" ? body : undefined });
      seen.push(`${label} ${route}: ${expectErrorBody(res, 401).split(":")[0]}`);
    }
    return seen.join("; ");
  });
  await check("--api-key: the client with a wrong key gets AuthenticationError, with the key a reply", async () => {
    let status;
    try {
      await openaiClient("wrong").models.list();
    } catch (e) {
      status = e.status;
    }
    expect(status === 401, `expected the client to throw with status 401, got ${status}`);
    const r = await openaiClient(key).chat.completions.create({ model: args["model-id"], messages: user("hi"), max_tokens: 2 });
    expect(r.choices?.[0]?.message?.role === "assistant", `with the key: ${show(r)}`);
  });

  await check("--max-queue 0 --parallel 1: a request while one runs gets 503 with Retry-After", async () => {
    let busy;
    const first = await stream("/v1/completions",
      { prompt: "Once upon a time", max_tokens: 200, temperature: 1, stream: true }, {
        headers: auth,
        // The first request runs once its first chunk came: send the second then, and leave.
        onEvent: async () => {
          busy = await post("/v1/chat/completions", body, { headers: auth });
          return false;
        },
      });
    expect(first.status === 200 && first.aborted, `the first request: status ${first.status}, ${show(first.text ?? "")}`);
    const seen = expectErrorBody(busy, 503);
    const retryAfter = busy.headers.get("retry-after");
    expect(/^[0-9]+$/.test(retryAfter ?? ""), `expected a Retry-After header of seconds, got ${retryAfter}`);
    // The first request's client left: once it is cancelled the slot is free again.
    const start = Date.now();
    while ((await metrics(auth)).dsv3_requests_running !== 0) {
      expect(Date.now() - start < 5000, "the abandoned request still runs 5 s after its client left");
      await sleep(50);
    }
    const next = await post("/v1/chat/completions", body, { headers: auth });
    expect(next.status === 200, `once the slot is free, expected 200, got ${next.status}: ${show(next.text)}`);
    return `${seen}, Retry-After ${retryAfter}; the next request after the first left got 200`;
  });
}

// ------------------------------------------------------------------------------------------------
// Phase stop: SIGTERM during a stream
// ------------------------------------------------------------------------------------------------

async function phaseStop() {
  const pid = Number(args.pid);
  await check("SIGTERM during a stream: the stream ends with [DONE], new requests are refused", async () => {
    let signalled = false, afterSignal = 0, refusal;
    const maxTokens = 64;
    const result = await stream("/v1/completions",
      { prompt: "Once upon a time", max_tokens: maxTokens, temperature: 1, stream: true, stream_options: { include_usage: true } }, {
        onEvent: (payload, chunk) => {
          if (!chunk?.choices?.[0]?.text) return true;
          if (signalled) {
            afterSignal++;
          } else {
            signalled = true;
            process.kill(pid, "SIGTERM");
            // Kept as a settled value: a rejection before it is awaited would end the process.
            refusal = requestAfterSignal().then((seen) => ({ seen }), (error) => ({ error }));
          }
          return true;
        },
      });
    expect(signalled, `the stream had no content to send SIGTERM after: ${show(result.events)}`);
    const refused = await refusal;
    if (refused.error) throw refused.error;
    expect(result.status === 200 && result.events.at(-1) === "[DONE]",
      `expected the stream to end with data: [DONE]; its last events were ${lastEvents(result.events)}`);
    const usage = JSON.parse(result.events.at(-2)).usage;
    const finish = JSON.parse(result.events.at(-3)).choices[0].finish_reason;
    const seen = checkUsage(usage, maxTokens, finish);
    expect(afterSignal >= 1, "no content chunk came after SIGTERM: the request had finished before it, so nothing was checked");
    return `${afterSignal} content chunks after SIGTERM, ${seen}; the request sent after it: ${refused.seen}`;
  });

  // Once the server has logged the signal, a new request must get 503 or find no listener.
  async function requestAfterSignal() {
    const start = Date.now();
    while (!readFileSync(args.log, "utf8").includes("SIGTERM")) {
      expect(Date.now() - start < 5000, `the server did not log the SIGTERM within 5 s (${args.log})`);
      await sleep(10);
    }
    try {
      const res = await post("/v1/chat/completions", { messages: user("hi"), max_tokens: 2 });
      return expectErrorBody(res, 503);
    } catch (e) {
      if (e instanceof CheckFailed) throw e;
      expect(e.cause?.code === "ECONNREFUSED", `expected 503 or a refused connection, the request failed: ${e.cause?.code} ${e.message}`);
      return "connection refused";
    }
  }
}

const phases = { api: phaseApi, guarded: phaseGuarded, stop: phaseStop };
if (!phases[phase]) {
  console.log(`  FAIL serve_client.mjs: unknown phase '${phase}' (api, guarded or stop)`);
  process.exit(1);
}
await phases[phase]();
process.exit(Math.min(failures, 100));
