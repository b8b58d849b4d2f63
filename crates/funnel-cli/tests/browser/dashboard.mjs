// The dashboard in headless Chromium (Debian's), driven by playwright-core, against a
// running `funnel run` with pipelines `a` and `b` (generator -> file). Run by
// crates/funnel-cli/tests/dashboard.rs, which starts funnel and passes:
//   FUNNEL_URL, FUNNEL_TOKEN, SINK_A, SINK_B (the file destinations' paths),
//   SCREENSHOTS (a directory), CHROMIUM (the browser), PLAYWRIGHT_DIR (where
//   node_modules/playwright-core is installed).
// Exits 0 when every check passes; prints what failed otherwise.

import { createRequire } from "node:module";
import { readFileSync, existsSync, mkdirSync } from "node:fs";
import path from "node:path";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const url = env("FUNNEL_URL");
const token = env("FUNNEL_TOKEN");
const shots = env("SCREENSHOTS");
mkdirSync(shots, { recursive: true });
const require = createRequire(path.join(env("PLAYWRIGHT_DIR"), "package.json"));
const { chromium } = require("playwright-core");

const DEADLINE_MS = 30_000;

// Waits for `condition` (async, truthy when met) until the deadline.
async function waitFor(what, condition, timeout = DEADLINE_MS) {
  const end = Date.now() + timeout;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function apiGet(pathname) {
  const response = await fetch(url + pathname, { headers: { Authorization: `Bearer ${token}` } });
  if (!response.ok) throw new Error(`GET ${pathname}: ${response.status}`);
  return response.json();
}

// The positions written to a file destination so far (base64 decoded).
function sinkPositions(file) {
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((line) => line.endsWith("}"))
    .map((line) => Buffer.from(JSON.parse(line).position, "base64").toString());
}

const number = (text) => Number(text.replace(/,/g, ""));

const browser = await chromium.launch({
  executablePath: env("CHROMIUM"),
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
let failed = false;
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
page.on("pageerror", (e) => {
  console.error(`page error: ${e.message}`);
  failed = true;
});
try {
  await page.goto(url + "/");

  // A wrong token shows an error and no pipeline.
  await page.fill("#token", "not-the-token");
  await page.click("#login button");
  await page.waitForSelector("#error:not([hidden])");
  const error = await page.textContent("#error");
  if (!/401|token/i.test(error)) throw new Error(`the error for a wrong token says ${JSON.stringify(error)}`);
  if ((await page.locator(".pipeline").count()) !== 0) throw new Error("pipelines shown with a wrong token");
  await page.screenshot({ path: path.join(shots, "wrong-token.png") });
  console.log("ok: a wrong token shows an error");

  // The right one lists both pipelines, running.
  await page.fill("#token", token);
  await page.click("#login button");
  for (const id of ["a", "b"]) {
    await page.waitForSelector(`[data-pipeline="${id}"] .status.running`);
  }
  await page.waitForSelector("#error[hidden]", { state: "attached" });
  console.log("ok: both pipelines listed as running");

  // The numbers move.
  const readOf = async (id) => number(await page.textContent(`[data-pipeline="${id}"] [data-total="read"]`));
  const first = await readOf("a");
  await waitFor("the read total of a to grow", async () => (await readOf("a")) > first);
  await waitFor("a throughput above 0", async () =>
    number(await page.textContent('[data-pipeline="a"] [data-total="rate"]')) > 0,
  );
  await waitFor("a rate on the source node", async () =>
    /rec\/s/.test(await page.textContent('[data-rate="a:gen"]')),
  );
  // Latency: read to ack for the pipeline, time per record on each connector.
  await waitFor("a read-to-ack latency", async () =>
    /\d (µs|ms)$/.test(await page.textContent('[data-pipeline="a"] [data-total="latency"]')),
  );
  for (const id of ["a:gen", "a:out"]) {
    await waitFor(`a latency on ${id}`, async () =>
      /\d (µs|ms) per record$/.test(await page.textContent(`[data-latency="${id}"]`)),
    );
  }
  await page.screenshot({ path: path.join(shots, "dashboard.png") });
  console.log("ok: the numbers move");

  // The inspector pane shows records whose positions the sink holds.
  await page.click('.node[data-component="a:out"]');
  await waitFor("five records in the inspector", async () => (await page.locator("#records li").count()) >= 5);
  const shown = await page.locator("#records [data-position]").allTextContents();
  await waitFor("the sink to hold the inspected positions", async () => {
    const written = new Set(sinkPositions(env("SINK_A")));
    return shown.every((p) => written.has(p));
  });
  await page.screenshot({ path: path.join(shots, "inspector.png") });
  console.log(`ok: the inspector shows records the sink holds (${shown.slice(0, 3).join(", ")}, ...)`);
  await page.click("#close");

  // Stopping b from the page stops it: the API says so and its sink stops growing.
  await page.click('[data-pipeline="b"] [data-action="stop"]');
  await waitFor("the API to say b stopped", async () => {
    const b = await apiGet("/v1/pipelines/b");
    return b.state.status === "STATUS_STOPPED";
  });
  await page.waitForSelector('[data-pipeline="b"] .status.stopped');
  const atStop = sinkPositions(env("SINK_B")).length;
  const aAtStop = sinkPositions(env("SINK_A")).length;
  // a keeps writing meanwhile: the clock for "b wrote nothing more".
  await waitFor("a to write 300 more records", async () => sinkPositions(env("SINK_A")).length > aAtStop + 300);
  const later = sinkPositions(env("SINK_B")).length;
  if (later !== atStop) throw new Error(`b's sink grew from ${atStop} to ${later} after the stop`);
  const a = await apiGet("/v1/pipelines/a");
  if (a.state.status !== "STATUS_RUNNING") throw new Error(`a is ${a.state.status}`);
  await page.screenshot({ path: path.join(shots, "stopped.png") });
  console.log(`ok: stopping b from the page stopped it at ${atStop} records`);
} catch (e) {
  console.error(`FAILED: ${e.message}`);
  await page.screenshot({ path: path.join(shots, "failure.png") }).catch(() => {});
  failed = true;
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
