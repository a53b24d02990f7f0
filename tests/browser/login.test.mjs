// A person in a browser: visit a protected page, get sent to the IdP, fill in the login form,
// come back to JSON. Debian's chromium, driven by playwright-core.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';

import { artifacts, useStackAndBrowser } from './stack.mjs';

const env = useStackAndBrowser({ before, after });

test('a browser logs in through the IdP form and lands on its JSON identity', async () => {
  const context = await env.browser.newContext();
  const page = await context.newPage();
  const consoleErrors = [];
  page.on('console', (msg) => { if (msg.type() === 'error') consoleErrors.push(msg.text()); });

  await page.goto(`${env.stack.app}/whoami`);
  assert.ok(page.url().startsWith(`${env.stack.issuer}/interaction/`), `at the IdP form: ${page.url()}`);
  await page.screenshot({ path: join(artifacts, 'idp-login-form.png') });

  await page.fill('#username', 'carol');
  await page.fill('#password', 'carol-pw');
  await Promise.all([
    page.waitForURL(`${env.stack.app}/whoami`),
    page.click('#login'),
  ]);
  const body = JSON.parse(await page.locator('body').innerText());
  assert.equal(body.user_id, 'carol');
  assert.deepEqual(body.groups, ['restricted', 'science']);
  assert.equal(body.authenticated_by, 'session');
  await page.screenshot({ path: join(artifacts, 'whoami-after-login.png') });

  const cookies = await context.cookies(env.stack.app);
  const session = cookies.find((c) => c.name === 'stsvend_session');
  assert.ok(session, 'session cookie set');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Lax');
  assert.ok(!cookies.some((c) => c.name.startsWith('stsvend_session_login_') && c.value), 'login state consumed');
  assert.deepEqual(consoleErrors, []);
  await context.close();
});

test('a wrong password stays on the IdP form with an error', async () => {
  const context = await env.browser.newContext();
  const page = await context.newPage();
  await page.goto(`${env.stack.app}/whoami`);
  await page.fill('#username', 'alice');
  await page.fill('#password', 'not-the-password');
  await page.click('#login');
  await page.waitForSelector('#error');
  assert.ok(page.url().startsWith(env.stack.issuer), page.url());
  const cookies = await context.cookies(env.stack.app);
  assert.ok(!cookies.some((c) => c.name === 'stsvend_session'), 'no session without a login');
  await context.close();
});
