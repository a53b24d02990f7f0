// The local stack over https: a CA made by deploy/local/tls.sh, trusted by Chromium through
// an NSS database in a throwaway HOME (as a developer would import it), a login through the
// IdP form, and the session cookie Secure with the __Host- prefix.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { artifacts, CHROMIUM_ARGS, root, startStack } from './stack.mjs';

const env = {};

before(async () => {
  mkdirSync(artifacts, { recursive: true });
  const dir = mkdtempSync(join(tmpdir(), 'stsvend-https-'));
  const tls = execFileSync(join(root, 'deploy/local/tls.sh'), [join(dir, 'tls')]).toString().trim();
  env.home = join(dir, 'home');
  const nssdb = join(env.home, '.pki', 'nssdb');
  mkdirSync(nssdb, { recursive: true });
  execFileSync('certutil', ['-N', '-d', `sql:${nssdb}`, '--empty-password']);
  execFileSync('certutil', ['-A', '-d', `sql:${nssdb}`, '-n', 'stsvend local CA', '-t', 'C,,', '-i', join(tls, 'ca.pem')]);
  env.stack = await startStack({ tls });
  const { chromium } = await import('playwright-core');
  env.browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
    env: { ...process.env, HOME: env.home },
  });
});

after(async () => {
  await env.browser?.close();
  await env.stack?.stop();
});

test('over https with the local CA, a browser logs in and gets a Secure __Host- session cookie', async () => {
  const context = await env.browser.newContext();
  const page = await context.newPage();
  const response = await page.goto(`${env.stack.app}/whoami`);
  assert.ok(response, 'navigated');
  assert.ok(page.url().startsWith(`${env.stack.issuer}/interaction/`), `at the IdP form: ${page.url()}: ${await page.locator('body').innerText()}`);
  await page.fill('#username', 'carol');
  await page.fill('#password', 'carol-pw');
  await Promise.all([
    page.waitForURL(`${env.stack.app}/whoami`),
    page.click('#login'),
  ]);
  const body = JSON.parse(await page.locator('body').innerText());
  assert.equal(body.user_id, 'carol');
  assert.equal(body.authenticated_by, 'session');
  const cookies = await context.cookies(env.stack.app);
  const session = cookies.find((c) => c.name === '__Host-stsvend_session');
  assert.ok(session, `cookies: ${cookies.map((c) => c.name).join(', ')}`);
  assert.equal(session.secure, true);
  assert.equal(session.httpOnly, true);
  assert.equal(session.path, '/');
  await page.screenshot({ path: join(artifacts, 'https-whoami.png') });
  await context.close();
});
