// A real adw-broadcaster process for the hook tests: its own agents directory, database and
// webhook service, on a free loopback port; stopped and started again on the same port.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

/** The Python that runs the service: BROADCASTER_PYTHON, else the repository's .venv (the README's test command makes it). */
export function python() {
  const found = process.env.BROADCASTER_PYTHON || join(REPO, ".venv", "bin", "python");
  if (!existsSync(found)) {
    throw new Error(`no Python for the service at ${found}: run the README's test command (it makes .venv), or set BROADCASTER_PYTHON`);
  }
  return found;
}

export function freePort() {
  return new Promise((done, fail) => {
    const server = createNetServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
  });
}

/** A webhook service answering the real webhook's JSON. */
export async function webhookService() {
  const body = JSON.stringify({
    status: "healthy",
    uptime: 120,
    stats: { total_received: 4, successful: 4, failed: 0, success_rate: 100 },
    recent_failures: [],
    last_successful: "2026-11-26T10:00:00Z",
  });
  const server = createServer((request, response) => {
    response.writeHead(200, { "Content-Type": "application/json" });
    response.end(body);
  });
  await new Promise((done) => server.listen(0, "127.0.0.1", done));
  return { url: `http://127.0.0.1:${server.address().port}/webhook-status`, close: () => server.close() };
}

export class Service {
  /**
   * @param {object} [settings] heartbeat (s), maxConnections, webhookUrl
   */
  constructor({ heartbeat = 10, maxConnections = 1000, webhookUrl = "" } = {}) {
    this.root = mkdtempSync(join(tmpdir(), "adwb-hooks-"));
    this.agents = join(this.root, "agents");
    mkdirSync(this.agents);
    mkdirSync(join(this.root, "trees"));
    this.settings = { heartbeat, maxConnections, webhookUrl };
    this.proc = null;
    this.port = 0;
    this.log = [];
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Write an ADW's state file the way agents do (a temp file, then a rename). */
  writeState(adwId, fields) {
    const directory = join(this.agents, adwId);
    mkdirSync(directory, { recursive: true });
    writeFileSync(join(directory, ".tmp"), JSON.stringify({ adw_id: adwId, ...fields }));
    renameSync(join(directory, ".tmp"), join(directory, "adw_state.json"));
  }

  /** Create the agents' database with one queued phase and one finished run. */
  createDatabase() {
    const script = [
      "import sys; from pathlib import Path",
      `sys.path.insert(0, ${JSON.stringify(REPO)})`,
      "from tests.agents_db import AgentsDb",
      `db = AgentsDb(Path(${JSON.stringify(join(this.root, "agents.db"))})).create()`,
      "db.add_phase('q1', 1, title='Plan the thing', parent_issue=7, issue_number=7)",
      "db.add_history('a1', 'completed', issue_number=7, duration_seconds=60, actual_cost_total=1.5)",
    ].join("\n");
    const run = spawnSync(python(), ["-c", script], { encoding: "utf8" });
    if (run.status !== 0) throw new Error(`cannot create the database: ${run.stderr}`);
  }

  async start() {
    if (!this.port) this.port = await freePort();
    const { heartbeat, maxConnections, webhookUrl } = this.settings;
    const config = [
      "[server]",
      `port = ${this.port}`,
      `heartbeat_interval = ${heartbeat}`,
      `max_connections = ${maxConnections}`,
      "[broadcast]",
      "min_interval = 0",
      "[adw]",
      "agents_dir = 'agents'",
      "trees_dir = 'trees'",
      ...(existsSync(join(this.root, "agents.db")) ? ["[database]", "path = 'agents.db'"] : []),
      "[webhook]",
      `status_url = '${webhookUrl}'`,
      "poll_interval = 0.5",
      "[event_log]",
      "path = 'events.db'",
      "",
    ].join("\n");
    writeFileSync(join(this.root, "config.toml"), config);
    this.proc = spawn(python(), ["-m", "broadcaster", "--config", "config.toml"], {
      cwd: this.root,
      env: { ...process.env, PYTHONPATH: REPO },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.proc.stderr.on("data", (chunk) => this.log.push(String(chunk)));
    const exited = new Promise((done) => this.proc.once("exit", done));
    this.exited = exited;
    await new Promise((done, fail) => {
      let banner = "";
      const timer = setTimeout(() => fail(new Error(`no banner in 20 s: ${this.log.join("")}`)), 20000);
      this.proc.stdout.on("data", (chunk) => {
        banner += String(chunk);
        if (banner.includes("listening on")) {
          clearTimeout(timer);
          done();
        }
      });
      exited.then((code) => fail(new Error(`the service exited (${code}): ${this.log.join("")}`)));
    });
    return this;
  }

  /** SIGTERM, and wait for the process to end. */
  async stop() {
    if (this.proc === null) return;
    const proc = this.proc;
    this.proc = null;
    if (proc.exitCode === null) proc.kill("SIGTERM");
    await this.exited;
  }

  async remove() {
    await this.stop();
    rmSync(this.root, { recursive: true, force: true });
  }

  /** The value of one sample of /metrics (0 when absent), e.g. ('adw_broadcaster_clients', {channel: 'queue'}). */
  async metric(name, labels = {}) {
    const text = await (await fetch(`${this.url}/metrics`)).text();
    const wanted = Object.entries(labels)
      .map(([k, v]) => `${k}="${v}"`)
      .join(",");
    const head = wanted ? `${name}{${wanted}} ` : `${name} `;
    const line = text.split("\n").find((l) => l.startsWith(head));
    return line ? Number(line.slice(head.length)) : 0;
  }
}
