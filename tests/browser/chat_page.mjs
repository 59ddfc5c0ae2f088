// The chat page of `dsv3 serve` in headless Chromium, driven by playwright-core (tests/browser/chat_page.sh
// starts the server and runs this):
//   node tests/browser/chat_page.mjs --url http://127.0.0.1:PORT/ --model-id ID --chromium /usr/bin/chromium \
//        --playwright DIR/node_modules/playwright-core --profile EMPTY_DIR --screenshot OUT.png
// Prints one "ok"/"FAIL" line per check and exits 1 if any failed.
import { createRequire } from "node:module";

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
for (const name of ["url", "model-id", "chromium", "playwright", "profile", "screenshot"]) {
  if (!args[name]) {
    console.error(`chat_page.mjs: --${name} is missing`);
    process.exit(2);
  }
}
const { chromium } = createRequire(import.meta.url)(args.playwright);
const origin = new URL(args.url).origin;
const message = "Hello! Which model are you?";
let failures = 0;
const check = (ok, label, detail = "") => {
  console.log(`  ${ok ? "ok  " : "FAIL"} ${label}${detail ? ": " + detail : ""}`);
  if (!ok) failures++;
};

// Everything the browser fetches, from any page of the context, and the page's own errors.
const requests = [];
const page_errors = [];
const context = await chromium.launchPersistentContext(args.profile, {
  executablePath: args.chromium,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"],  // containers often have a small /dev/shm
  viewport: { width: 900, height: 640 },
  timeout: 60_000,
});
try {
  context.on("request", r => requests.push(r.url()));
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("pageerror", e => page_errors.push(e.message));
  page.on("console", m => {
    if (m.type() === "error") page_errors.push(`${m.text()} (${m.location().url || "no url"})`);
  });
  page.setDefaultTimeout(60_000);

  // Records every change of the streaming bubble's text, to tell a streamed reply from one set at once.
  await page.addInitScript(() => {
    window.__stream_lengths = [];
    document.addEventListener("DOMContentLoaded", () => {
      new MutationObserver(() => {
        const box = document.querySelector(".msg.assistant[data-state='streaming'] .content");
        const n = box ? box.textContent.length : 0;
        const seen = window.__stream_lengths;
        if (n > 0 && n !== seen[seen.length - 1]) seen.push(n);
      }).observe(document.getElementById("log"), { subtree: true, childList: true, characterData: true });
    });
  });

  const response = await page.goto(args.url);
  check(response.status() === 200, "GET / answers 200", `status ${response.status()}`);
  check((await page.title()) === "dsv3 chat", "the page is the chat page", `title '${await page.title()}'`);
  await page.waitForFunction(() => document.getElementById("model").textContent !== "connecting…");
  const shown = await page.textContent("#model");
  check(shown === args["model-id"], "the header shows the model name", `'${shown}'`);

  await page.fill("#input", message);
  await page.press("#input", "Enter");
  await page.waitForSelector(".msg.assistant[data-state='done']", { timeout: 120_000 });
  const reply = await page.evaluate(() => ({
    user: document.querySelector(".msg.user")?.textContent,
    content: document.querySelector(".msg.assistant .content")?.textContent ?? "",
    stats: document.querySelector(".msg.assistant .stats")?.textContent ?? "",
    input: document.getElementById("input").value,
    send_enabled: !document.getElementById("send").disabled,
    stream_lengths: window.__stream_lengths,
  }));
  check(reply.user === message, "Enter sent the message: it shows as the user's bubble", `'${reply.user}'`);
  check(reply.input === "" && reply.send_enabled, "the input is cleared and Send enabled again");
  check(reply.content.length > 0, "the assistant bubble holds the reply",
        `${reply.content.length} characters: '${reply.content.slice(0, 60)}…'`);
  check(reply.stream_lengths.length >= 2, "the reply streamed in: its text grew while the bubble was streaming",
        `${reply.stream_lengths.length} updates, lengths ${reply.stream_lengths.slice(0, 5).join(", ")}…`);
  check(/^\d+ tokens · \d+(\.\d)? tokens\/s · prompt \d+(\.\d)? tokens\/s$/.test(reply.stats),
        "the stats line shows tokens and tokens/s (not an error)", `'${reply.stats}'`);

  const elsewhere = requests.filter(u => new URL(u).origin !== origin);
  check(requests.length >= 3 && elsewhere.length === 0, "every request went to the server, none elsewhere",
        `${requests.length} requests: ${[...new Set(requests.map(u => new URL(u).pathname))].join(" ")}` +
        (elsewhere.length ? `; elsewhere: ${elsewhere.join(" ")}` : ""));
  check(page_errors.length === 0, "no script errors on the page", page_errors.join(" | "));

  await page.screenshot({ path: args.screenshot, fullPage: true });
  console.log(`  screenshot: ${args.screenshot}`);
} finally {
  await context.close();
}
process.exit(failures > 0 ? 1 : 0);
