// llama.cpp's view of a GGUF file, through node-llama-cpp's prebuilt CPU binding (deps/npm), for
// tests/cli/export_gguf.sh:
//
//   node llama_logits.mjs logits   --npm DIR --model FILE.gguf --tokens 1,2,3 --out FILE.npy [--kv-type F32|F16]
//       llama.cpp's next-token logits at every position of the token ids, float32 [n_tokens, vocab]
//   node llama_logits.mjs compare  --expected A.npy --actual B.npy --bound X [--criterion max|median]
//       prints max |A - B|, max |A| and their ratio, and the median over positions of each position's
//       max |A - B| / max |A|; exits 1 when the ratio (or with --criterion median, the median) exceeds X
//       or the shapes differ
//   node llama_logits.mjs tokenize --npm DIR --model FILE.gguf --text TEXT
//       prints llama.cpp's token ids of TEXT (special tokens recognised, no BOS) as a JSON array
//
// Nothing is downloaded or built: the binding is loaded with build "never", and a missing prebuilt
// binary is an error.
import { createRequire } from "node:module";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [command, ...rest] = process.argv.slice(2);
const args = {};
for (let i = 0; i < rest.length; i += 2) args[rest[i].replace(/^--/, "")] = rest[i + 1];

// Loads node-llama-cpp from the npm prefix DIR and returns {llama, model}: CPU only, two threads unless
// told otherwise, llama.cpp's own messages at warning level and above.
export async function loadLlamaModel(npmDir, modelPath, threads = 2) {
  const entry = createRequire(path.join(path.resolve(npmDir), "package.json")).resolve("node-llama-cpp");
  const { getLlama, LlamaLogLevel } = await import(pathToFileURL(entry).href);
  const llama = await getLlama({ gpu: false, build: "never", maxThreads: threads, logLevel: LlamaLogLevel.warn });
  const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
  return { llama, model };
}

// A float32 array [rows, cols] as a .npy file (version 1.0, C order).
function writeNpy(file, data, rows, cols) {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${rows}, ${cols}), }`;
  header += " ".repeat(63 - ((10 + header.length) % 64)) + "\n";  // pad so the data starts 64-aligned
  const prefix = Buffer.alloc(10);
  Buffer.from([0x93, ...Buffer.from("NUMPY"), 1, 0]).copy(prefix);
  prefix.writeUInt16LE(header.length, 8);
  writeFileSync(file, Buffer.concat([prefix, Buffer.from(header, "latin1"), Buffer.from(data.buffer)]));
}

// Reads a float32 C-order .npy file: {shape, data}.
function readNpy(file) {
  const bytes = readFileSync(file);
  if (bytes.readUInt8(0) !== 0x93 || bytes.toString("latin1", 1, 6) !== "NUMPY") throw new Error(`${file} is not .npy`);
  const major = bytes.readUInt8(6);
  const headerLength = major === 1 ? bytes.readUInt16LE(8) : bytes.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = bytes.toString("latin1", start, start + headerLength);
  if (!header.includes("'<f4'") || header.includes("'fortran_order': True"))
    throw new Error(`${file}: expected little-endian float32 in C order, got ${header.trim()}`);
  const shape = header.match(/'shape': \(([^)]*)\)/)[1].split(",").filter((s) => s.trim()).map(Number);
  const offset = start + headerLength;
  const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset + offset, bytes.byteOffset + bytes.length));
  return { shape, data };
}

async function logits() {
  const tokens = args.tokens.split(",").map(Number);
  const { model } = await loadLlamaModel(args.npm, args.model);
  const kvType = args["kv-type"] ?? "F16";
  const context = await model.createContext({
    contextSize: Math.max(256, tokens.length), batchSize: Math.max(256, tokens.length), sequences: 1,
    experimentalKvCacheKeyType: kvType, experimentalKvCacheValueType: kvType,
  });
  const n_vocab = model.fileInfo.metadata.deepseek2.vocab_size;
  const input = tokens.map((t) => [t, { generateNext: { logits: true } }]);
  const results = await context.getSequence().controlledEvaluate(input);
  const out = new Float32Array(tokens.length * n_vocab);
  results.forEach((result, i) => {
    const map = result?.next?.logits;
    if (!map || map.size !== n_vocab) throw new Error(`position ${i}: got ${map?.size} logits, expected ${n_vocab}`);
    for (const [token, value] of map) out[i * n_vocab + token] = value;
  });
  writeNpy(args.out, out, tokens.length, n_vocab);
  console.log(`llama.cpp logits [${tokens.length} x ${n_vocab}] (KV cache ${kvType}) -> ${args.out}`);
}

function compare() {
  const a = readNpy(args.expected), b = readNpy(args.actual);
  if (a.shape.join() !== b.shape.join()) {
    console.log(`shapes differ: ${args.expected} [${a.shape}] vs ${args.actual} [${b.shape}]`);
    process.exit(1);
  }
  const [rows, cols] = a.shape;
  let maxDiff = 0, maxRef = 0, where = 0;
  const rowDiff = new Array(rows).fill(0);  // per position: max |A - B| over the vocabulary
  for (let i = 0; i < a.data.length; i++) {
    const d = Math.abs(a.data[i] - b.data[i]), r = Math.floor(i / cols);
    if (!(d <= rowDiff[r])) rowDiff[r] = d;  // NaN counts as the largest difference
    if (!(d <= maxDiff)) { maxDiff = d; where = i; }
    maxRef = Math.max(maxRef, Math.abs(a.data[i]));
  }
  const ratio = maxDiff / maxRef, bound = Number(args.bound);
  const sorted = rowDiff.map((d) => d / maxRef).sort((x, y) => x - y);
  const median = rows % 2 ? sorted[rows >> 1] : (sorted[rows / 2 - 1] + sorted[rows / 2]) / 2;
  const checked = args.criterion === "median" ? median : ratio;
  const ok = checked <= bound;
  console.log(`max |diff| ${maxDiff.toExponential(3)} at [${Math.floor(where / cols)}, ${where % cols}], ` +
              `max |expected| ${maxRef.toFixed(4)}, ratio ${ratio.toExponential(3)} (median over positions ` +
              `${median.toExponential(3)}): ${args.criterion === "median" ? "median" : "ratio"} ` +
              `${ok ? "within" : "OVER"} bound ${bound}`);
  process.exit(ok ? 0 : 1);
}

async function tokenize() {
  const { model } = await loadLlamaModel(args.npm, args.model);
  console.log(JSON.stringify(Array.from(model.tokenize(args.text, true))));
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const commands = { logits, compare, tokenize };
  if (!commands[command]) {
    console.error(`usage: node llama_logits.mjs logits|compare|tokenize ... (got '${command}')`);
    process.exit(2);
  }
  await commands[command]();
  process.exit(0);
}
