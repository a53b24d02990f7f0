// Starts the real components for browser tests: the demo IdP and a stsvend process (the
// binary cargo built) on free loopback ports. Everything is stopped by `stop()` and, should
// the test process die, by the components' own parent-process watch.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { existsSync, mkdirSync, mkdtempSync, createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export async function freePort() {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  return port;
}

function start(name, cmd, args, env, logDir) {
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const log = createWriteStream(join(logDir, `${name}.log`));
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  return child;
}

async function waitFor(url, what, timeoutMs = 30000, child = undefined) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    // Exited (its port was taken, say): no use waiting.
    if (child && child.exitCode !== null) throw new Error(`${what} exited (${child.exitCode})`);
    try {
      const res = await fetch(url);
      if (res.status === 200) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not come up at ${url}`);
}

async function waitForLine(file, text, what, timeoutMs, child) {
  const { readFileSync: read } = await import('node:fs');
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${what} exited (${child.exitCode})`);
    try {
      if (read(file, 'utf8').includes(text)) return;
    } catch {
      // no log yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not say it was ready`);
}

// `tls`: a folder made by deploy/local/tls.sh; stsvend then serves https with Secure cookies.
// `moto`: also moto (STS and S3, seeded with the demo buckets), for tests that vend.
export async function startStack({ tls, moto } = {}) {
  const logDir = mkdtempSync(join(tmpdir(), 'stsvend-browser-'));
  // Ports found free can be taken before the IdP or stsvend binds them: the whole stack is
  // tried on up to three sets of new ports (stsvend's public URL and the IdP's redirect URIs
  // name them, so they move together).
  let idpPort, appPort, motoPort, issuer, app, motoUrl;
  const bin = process.env.STSVEND_BIN
    ?? join(process.env.CARGO_TARGET_DIR ?? join(root, 'target'), 'debug', 'stsvend');
  if (!existsSync(bin)) throw new Error(`no stsvend binary at ${bin}: build it, or set STSVEND_BIN`);
  const children = [];
  const stop = async () => {
    const exits = children.map((c) => (c.exitCode === null ? once(c, 'exit') : null));
    for (const child of children) child.kill('SIGTERM');
    const force = setTimeout(() => children.forEach((c) => c.kill('SIGKILL')), 5000);
    await Promise.all(exits);
    clearTimeout(force);
  };
  const failures = [];
  for (let attempt = 1; attempt <= 3; attempt += 1) {
    idpPort = await freePort();
    appPort = await freePort();
    issuer = `http://127.0.0.1:${idpPort}`;
    app = `${tls ? 'https' : 'http'}://127.0.0.1:${appPort}`;
    motoPort = moto ? await freePort() : undefined;
    motoUrl = moto ? `http://127.0.0.1:${motoPort}` : undefined;
    try {
      await startAll();
      for (const f of failures) console.error(`stack: an earlier attempt failed: ${f}`);
      return { app, issuer, moto: motoUrl, logDir, stop };
    } catch (err) {
      await stop();
      children.length = 0;
      failures.push(`${err.message} (ports ${idpPort}, ${appPort})`);
    }
  }
  throw new Error(`${failures.join('; ')} (logs in ${logDir})`);

  async function startAll() {
    children.push(start('idp', 'node', [join(root, 'deploy/local/idp/server.mjs')], {
      IDP_PORT: String(idpPort),
      IDP_PARENT_PID: String(process.pid),
      IDP_HTTPS_REDIRECT_URIS: `${app}/login`,
    }, logDir));
    await waitFor(`${issuer}/.well-known/openid-configuration`, 'the IdP', 30000, children.at(-1));
    if (moto) {
      children.push(start('moto', join(root, 'deploy/local/.venv/bin/python'),
        [join(root, 'deploy/local/moto_stack.py'), '--port', String(motoPort), '--parent-pid', String(process.pid)], {}, logDir));
      // moto_stack.py says when it is seeded.
      await waitForLine(join(logDir, 'moto.log'), '"event": "ready"', 'moto', 60000, children.at(-1));
    }
    children.push(start('stsvend', bin, ['serve', '--config', join(root, 'config/local.toml')], {
      STSVEND_SERVER__BIND: `127.0.0.1:${appPort}`,
      STSVEND_SERVER__PUBLIC_URL: app,
      STSVEND_SERVER__LOG_FORMAT: 'json',
      STSVEND_REVOCATIONS__FILE: join(logDir, 'revocations.json'),
      STSVEND_OIDC__ISSUER: issuer,
      // Without moto no STS call happens; the endpoint only has to be well-formed.
      STSVEND_STS__ENDPOINT_URL: motoUrl ?? 'http://127.0.0.1:9',
      ...(moto ? { STSVEND_S3__ENDPOINT_URL: motoUrl, STSVEND_S3__FORCE_PATH_STYLE: 'true' } : {}),
      AWS_ACCESS_KEY_ID: 'testing',
      AWS_SECRET_ACCESS_KEY: 'testing',
      ...(tls ? {
        STSVEND_SERVER__TLS__CERT_FILE: join(tls, 'server.pem'),
        STSVEND_SERVER__TLS__KEY_FILE: join(tls, 'server.key'),
        STSVEND_SESSION__SECURE: 'true',
        STSVEND_OIDC__CLIENT_ID: 'stsvend-local-https',
        STSVEND_OIDC__AUDIENCES: '["stsvend-local"]',
        NODE_EXTRA_CA_CERTS: join(tls, 'ca.pem'),
      } : {}),
    }, logDir));
    if (tls) process.env.NODE_EXTRA_CA_CERTS = join(tls, 'ca.pem');
    await waitFor(tls ? `http://127.0.0.1:${idpPort}/.well-known/openid-configuration` : `${app}/readyz`, 'stsvend', 30000, children.at(-1));
    if (tls) await waitForTls(`${app}/readyz`, join(tls, 'ca.pem'));
  }
}

// Node's fetch does not read NODE_EXTRA_CA_CERTS after start-up: ask curl with the CA.
async function waitForTls(url, ca, timeoutMs = 30000) {
  const { execFileSync } = await import('node:child_process');
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      execFileSync('curl', ['-fsS', '-o', '/dev/null', '--cacert', ca, url]);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`stsvend did not come up at ${url}`);
}

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

// Where screenshots go (outside the repository).
export const artifacts = process.env.BROWSER_ARTIFACTS
  ?? join(process.env.CARGO_TARGET_DIR ?? join(root, 'target'), 'browser-artifacts');

// Register before/after hooks that start the stack and Chromium once per test file.
// Returns an object whose `stack` and `browser` are set once the hooks ran.
export function useStackAndBrowser({ before, after }, options = {}) {
  const env = { stack: undefined, browser: undefined };
  before(async () => {
    mkdirSync(artifacts, { recursive: true });
    env.stack = await startStack(options);
    const { chromium } = await import('playwright-core');
    env.browser = await chromium.launch({
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      args: CHROMIUM_ARGS,
    });
  });
  after(async () => {
    await env.browser?.close();
    await env.stack?.stop();
  });
  return env;
}

// A page at `path` of the stack, recording console errors and warnings (`problems`) and any
// request that leaves the service and the IdP (`foreign`).
export async function watchedPage(stack, context, path) {
  const page = await context.newPage();
  const problems = [];
  page.on('console', (msg) => { if (msg.type() === 'error' || msg.type() === 'warning') problems.push(msg.text()); });
  page.on('pageerror', (err) => problems.push(String(err)));
  const foreign = [];
  page.on('request', (req) => { if (!req.url().startsWith(stack.app) && !req.url().startsWith(stack.issuer)) foreign.push(req.url()); });
  const res = await page.goto(`${stack.app}${path}`);
  return { page, res, problems, foreign };
}
