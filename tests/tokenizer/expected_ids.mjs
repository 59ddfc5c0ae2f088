// Reference token ids for tests/test_tokenizer.cpp, computed by @lenml/tokenizers (an independent
// JavaScript port of Hugging Face tokenizers), installed by scripts/npm-deps.sh.
//
//   node expected_ids.mjs DEPS_DIR REQUEST.json RESPONSE.json
//
// REQUEST:  {"tokenizer": PATH, "config": PATH,
//            "encode": [text...],        ids with added tokens recognised
//            "encode_plain": [text...],  ids with no added token recognised (a copy without added_tokens)
//            "decode": [[id...]...], "decode_skip_special": [[id...]...],
//            "chat": [{"messages": [{"role", "content"}...], "add_generation_prompt": bool}...]}
// RESPONSE: the same keys with the results; "chat" gives {"text", "ids"} per conversation.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [depsDir, requestPath, responsePath] = process.argv.slice(2);
if (!depsDir || !requestPath || !responsePath) {
  console.error("usage: node expected_ids.mjs DEPS_DIR REQUEST.json RESPONSE.json");
  process.exit(2);
}
const library = join(depsDir, "node_modules", "@lenml", "tokenizers", "dist", "main.mjs");
const { TokenizerLoader } = await import(pathToFileURL(library).href);

const request = JSON.parse(readFileSync(requestPath, "utf8"));
const tokenizerJSON = JSON.parse(readFileSync(request.tokenizer, "utf8"));
const tokenizerConfig = request.config ? JSON.parse(readFileSync(request.config, "utf8")) : {};

const full = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });
let plain = null;
const encodeWith = (tokenizer, text) => tokenizer.encode(text, { add_special_tokens: false });

const response = {};
if (request.encode) response.encode = request.encode.map((text) => encodeWith(full, text));
if (request.encode_plain) {
  plain = TokenizerLoader.fromPreTrained({ tokenizerJSON: { ...tokenizerJSON, added_tokens: [] }, tokenizerConfig });
  response.encode_plain = request.encode_plain.map((text) => encodeWith(plain, text));
}
if (request.decode) response.decode = request.decode.map((ids) => full.decode(ids, { skip_special_tokens: false }));
if (request.decode_skip_special)
  response.decode_skip_special = request.decode_skip_special.map((ids) => full.decode(ids, { skip_special_tokens: true }));
if (request.chat) {
  response.chat = request.chat.map(({ messages, add_generation_prompt }) => ({
    text: full.apply_chat_template(messages, { tokenize: false, add_generation_prompt }),
    ids: Array.from(full.apply_chat_template(messages, { tokenize: true, add_generation_prompt, return_tensor: false })),
  }));
}
writeFileSync(responsePath, JSON.stringify(response));
