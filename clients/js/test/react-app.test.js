// @vitest-environment node
// The package as a user installs it: a fresh Vite React TypeScript app (test/react-app, the
// template's files) gets it the way the README says (the tarball `npm pack` makes), type-checks
// and builds with the app's own `npm run build` (tsc -b, vite build), and its build, served on a
// port of its own, shows a real service's data in Debian's Chromium over one WebSocket.
import { execFile } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, extname, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import { chromium } from "playwright-core";
import { afterAll, beforeAll, expect, test } from "vitest";

import { Service, webhookService } from "./service.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const PACKAGE = resolve(HERE, "..");
const TEMPLATE = join(HERE, "react-app");
// Debian's Chromium and the flags it needs here, shared with the Python tests (Playwright cannot download one).
const CHROMIUM = JSON.parse(readFileSync(resolve(HERE, "../../../tests/chromium.json"), "utf8"));
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css" };
const ADW = "a1b2c3d4"; // the id the app's ADWDetailView follows
const run = promisify(execFile);

let app;
let service;
let webhook;
let site;
let browser;

/** npm in `cwd`, without the settings of the `npm test` and vitest that run this file (NODE_ENV=test among them). */
function npm(args, cwd, env = {}) {
  const ours = (key) => key.startsWith("npm_") || key.startsWith("VITE") || key === "NODE_ENV" || key === "TEST";
  const clean = Object.fromEntries(Object.entries(process.env).filter(([key]) => !ours(key)));
  return run("npm", args, { cwd, env: { ...clean, ...env }, maxBuffer: 16 * 1024 * 1024 }).catch((error) => {
    throw new Error(`npm ${args.join(" ")} failed:\n${error.stdout}${error.stderr}`);
  });
}

/** Serve the app's build (dist/) on a free loopback port. */
function serveBuild(root) {
  const server = createServer((request, response) => {
    const path = new URL(request.url, "http://x").pathname;
    const file = normalize(join(root, path === "/" ? "index.html" : path));
    if (!file.startsWith(root) || !existsSync(file)) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { "Content-Type": TYPES[extname(file)] ?? "application/octet-stream" });
    response.end(readFileSync(file));
  });
  return new Promise((done) => server.listen(0, "127.0.0.1", () => done(server)));
}

beforeAll(async () => {
  app = mkdtempSync(join(tmpdir(), "adwb-react-app-"));
  cpSync(TEMPLATE, app, { recursive: true, filter: (source) => !/node_modules|dist/.test(source.slice(TEMPLATE.length)) });
  webhook = await webhookService();
  service = new Service({ webhookUrl: webhook.url });
  service.createDatabase();
  service.writeState(ADW, { issue_number: "42", status: "running", branch_name: "feat-42" });
  await service.start();
  // As the README says: pack the package, install the tarball into the app.
  const packed = await npm(["pack", PACKAGE, "--pack-destination", app], app);
  const tarball = packed.stdout.trim().split("\n").pop();
  await npm(["install", `./${tarball}`, "--no-audit", "--no-fund"], app);
  await npm(["run", "build"], app, { VITE_BROADCASTER_URL: service.url });
  site = await serveBuild(join(app, "dist"));
  browser = await chromium.launch({ executablePath: CHROMIUM.executable, args: CHROMIUM.flags });
}, 240000);

afterAll(async () => {
  await browser?.close();
  site?.close();
  await service?.remove();
  webhook?.close();
  if (app) rmSync(app, { recursive: true, force: true });
});

test("the installed package builds in a fresh React app, whose page shows every hook's data from one socket", async () => {
  const installed = JSON.parse(readFileSync(join(app, "node_modules/adw-broadcaster-client/package.json"), "utf8"));
  expect(installed.name).toBe("adw-broadcaster-client");
  expect(existsSync(join(app, "node_modules/adw-broadcaster-client/test"))).toBe(false); // only the package's files

  const page = await browser.newPage();
  const problems = [];
  const sockets = [];
  page.on("console", (message) => ["error", "warning"].includes(message.type()) && problems.push(message.text()));
  page.on("pageerror", (error) => problems.push(String(error)));
  page.on("websocket", (socket) => sockets.push(socket.url()));
  const text = (section) => page.locator(`#${section}`).innerText();
  await page.goto(`http://127.0.0.1:${site.address().port}/`);

  await expect.poll(() => text("adw-state"), { timeout: 15000 }).toBe("Status: running\nBranch: feat-42\nIssue: 42");
  await expect.poll(() => text("monitor")).toBe("Total: 1\nRunning: 1\nCompleted: 0\nFailed: 0\nrunning");
  await expect.poll(() => text("workflows")).toBe(`${ADW} plan`);
  await expect.poll(() => text("queue")).toBe("Queue Active\n7 - queued");
  await expect.poll(() => text("history")).toBe("Total: 1\nSuccess Rate: 100%\na1: completed");
  await expect.poll(() => text("webhook-status")).toBe("Status: healthy");
  await expect.poll(() => text("system-status")).toMatch(/^Overall: (healthy|degraded|error)$/);
  await expect.poll(() => text("routes")).toContain("GET /api/v1/adw-monitor");

  // Live: a change of the state file reaches the page without a reload.
  service.writeState(ADW, { issue_number: "42", status: "completed", branch_name: "feat-42" });
  await expect.poll(() => text("monitor")).toBe("Total: 1\nRunning: 0\nCompleted: 1\nFailed: 0\ncompleted");
  await expect.poll(() => text("adw-state")).toBe("Status: completed\nBranch: feat-42\nIssue: 42");

  expect(sockets).toEqual([`ws://127.0.0.1:${service.port}/ws`]);
  expect(problems).toEqual([]);
  await page.close();
}, 60000);
