// llama.cpp's side of bench/llamacpp_side_by_side.sh, through node-llama-cpp's prebuilt CPU binding:
//
//   node llamacpp_side_by_side.mjs prompt --npm DIR --model FILE.gguf --tokens N --source TEXT_FILE --out FILE
//       writes the longest whole-word prefix of TEXT_FILE (repeated as needed) that llama.cpp tokenizes,
//       with BOS, to at most N tokens, topped up with " a" to exactly N; fails if it cannot hit N
//   node llamacpp_side_by_side.mjs run --npm DIR --model FILE.gguf --prompt FILE --decode N --threads T
//       one timed run: prefill of the prompt (until the first token is sampled), then N decode steps of one
//       token each (greedy); prints one JSON line {prompt_tokens, prefill_s, decode_steps, decode_s, tokens}
//
// Model loading is outside the timings. The context holds prompt + decode tokens, prefills in one batch,
// and keeps llama.cpp's defaults otherwise (F16 KV cache, flash attention "auto").
import { readFileSync, writeFileSync } from "node:fs";
import { loadLlamaModel } from "../tests/cli/lib/llama_logits.mjs";

const [command, ...rest] = process.argv.slice(2);
const args = {};
for (let i = 0; i < rest.length; i += 2) args[rest[i].replace(/^--/, "")] = rest[i + 1];

// The prompt's token ids as dsv3 generate makes them: BOS (when the vocabulary has one), then the text
// with added tokens recognised.
function promptTokens(model, text) {
  const tokens = Array.from(model.tokenize(text, true));
  return model.tokens.bos != null ? [model.tokens.bos, ...tokens] : tokens;
}

async function prompt() {
  const { model } = await loadLlamaModel(args.npm, args.model);
  const want = Number(args.tokens);
  const words = readFileSync(args.source, "utf8").split(/\s+/).filter((w) => w.length > 0);
  let pool = words;
  while (promptTokens(model, pool.join(" ")).length < want) pool = pool.concat(words);
  // Binary search for the most words that stay within `want` tokens.
  let lo = 1, hi = pool.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (promptTokens(model, pool.slice(0, mid).join(" ")).length <= want) lo = mid;
    else hi = mid - 1;
  }
  // A word may be several tokens: top up with " a" (one token each) to land exactly on `want`.
  let text = pool.slice(0, lo).join(" ");
  let n = promptTokens(model, text).length;
  while (n < want) {
    text += " a";
    n = promptTokens(model, text).length;
  }
  if (n !== want) throw new Error(`no whole-word prefix of ${args.source} plus \" a\"s is exactly ${want} tokens (got ${n})`);
  writeFileSync(args.out, text);
  console.log(`prompt of ${n} tokens (${lo} words) -> ${args.out}`);
}

async function run() {
  const threads = Number(args.threads ?? 2), decode = Number(args.decode);
  const { model } = await loadLlamaModel(args.npm, args.model, threads);
  const tokens = promptTokens(model, readFileSync(args.prompt, "utf8"));
  const context = await model.createContext({
    contextSize: tokens.length + decode + 8, batchSize: tokens.length, sequences: 1, threads,
  });
  const sequence = context.getSequence();
  const generated = [];
  const start = performance.now();
  let firstAt = 0;
  for await (const token of sequence.evaluate(tokens, { temperature: 0 })) {
    if (generated.length === 0) firstAt = performance.now();
    generated.push(token);
    if (generated.length > decode) break;  // the first token comes from the prefill, then `decode` steps
  }
  const end = performance.now();
  console.log(JSON.stringify({
    prompt_tokens: tokens.length, prefill_s: (firstAt - start) / 1000, decode_steps: generated.length - 1,
    decode_s: (end - firstAt) / 1000, tokens: generated,
  }));
  await context.dispose();
  await model.dispose();
}

const commands = { prompt, run };
if (!commands[command]) {
  console.error(`usage: node llamacpp_side_by_side.mjs prompt|run ... (got '${command}')`);
  process.exit(2);
}
await commands[command]();
process.exit(0);
