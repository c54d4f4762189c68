// Starting the real binaries (target/debug by default) on free loopback
// ports, each in its own data directory, and stopping them after a test.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const targetDir = process.env.CARGO_TARGET_DIR
  ? path.resolve(repoRoot, process.env.CARGO_TARGET_DIR)
  : path.join(repoRoot, 'target');
export const binDir = process.env.STRONGROOM_BIN_DIR ?? path.join(targetDir, 'debug');
export const bin = (name) => path.join(binDir, name);

export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** A child process whose output is kept (for assertions and for the failure message). */
export function run(cmd, args, { env = {}, cwd = repoRoot } = {}) {
  const child = spawn(cmd, args, {
    cwd,
    env: { ...process.env, NO_COLOR: '1', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const out = { stdout: '', stderr: '' };
  child.stdout.setEncoding('utf8').on('data', (d) => (out.stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (out.stderr += d));
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return {
    child,
    out,
    exited,
    /** Resolves with the first stdout line matching `re` (its match), or rejects after `ms`. */
    waitForLine(re, ms = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = out.stdout.match(re);
          if (m) {
            clearInterval(timer);
            clearTimeout(deadline);
            resolve(m);
          }
        };
        const timer = setInterval(check, 50);
        const deadline = setTimeout(() => {
          clearInterval(timer);
          reject(new Error(`no line matching ${re} within ${ms} ms\nstdout:\n${out.stdout}\nstderr:\n${out.stderr}`));
        }, ms);
        exited.then(({ code }) => {
          check();
          setTimeout(() => {
            clearInterval(timer);
            clearTimeout(deadline);
            reject(new Error(`${cmd} exited (${code}) before printing ${re}\nstdout:\n${out.stdout}\nstderr:\n${out.stderr}`));
          }, 100);
        });
      });
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** GET over TLS, trusting only the server's own dev CA. */
export function get(url, caFile) {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca: readFileSync(caFile) }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.setTimeout(5_000, () => req.destroy(new Error('timeout')));
  });
}

async function waitReady(url, caFile, ms = 30_000) {
  const until = Date.now() + ms;
  let last;
  while (Date.now() < until) {
    try {
      if (existsSync(caFile)) {
        const r = await get(url, caFile);
        if (r.status === 200) return;
        last = `status ${r.status}`;
      } else last = `no ${caFile} yet`;
    } catch (e) {
      last = e.code ?? e.message;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} not ready within ${ms} ms (${last})`);
}

/**
 * Strongroom on fresh ports and a fresh data dir, with the given config file
 * (relative to the repo) and extra environment. The dev CA it generates is
 * trusted for readiness polls (and by helpers that talk to it) through
 * `caFile`.
 */
export async function startStrongroom({ config = 'config/strongroom.toml', env = {} } = {}) {
  const port = await freePort();
  const mtlsPort = await freePort();
  const dataDir = mkdtempSync(path.join(tmpdir(), 'strongroom-browser-'));
  // The dev client of `strongroom try` is registered at start with the
  // redirect URI in this file: a free port of this run's.
  const tryPort = await freePort();
  mkdirSync(path.join(dataDir, 'dev-client'));
  writeFileSync(path.join(dataDir, 'dev-client', 'redirect_uri'), `https://localhost:${tryPort}/callback\n`);
  const issuer = `https://localhost:${port}`;
  const srEnv = {
    STRONGROOM_CONFIG: path.join(repoRoot, config),
    STRONGROOM_LISTEN: `127.0.0.1:${port}`,
    STRONGROOM_MTLS_LISTEN: `127.0.0.1:${mtlsPort}`,
    STRONGROOM_ISSUER: issuer,
    STRONGROOM_DATA_DIR: dataDir,
    STRONGROOM_LOG: 'info',
    // The internal listener's default port would collide between runs.
    STRONGROOM_ADMIN_LISTEN: 'none',
    ...env,
  };
  const proc = run(bin('strongroom'), ['serve'], { env: srEnv });
  const caFile = path.join(dataDir, 'dev-ca.pem');
  try {
    await waitReady(`${issuer}/readyz`, caFile);
  } catch (e) {
    await proc.stop();
    throw new Error(`${e.message}\n${proc.out.stdout}${proc.out.stderr}`);
  }
  return {
    issuer,
    port,
    mtlsPort,
    tryPort,
    dataDir,
    caFile,
    env: srEnv,
    proc,
    async stop() {
      await proc.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export { waitReady };
