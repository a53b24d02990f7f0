// The /s3credentialsREADME page as people see it: renders with no console errors and no
// requests leaving the service, on a desktop and on a phone, signed out and signed in.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';

import { devices } from 'playwright-core';

import { artifacts, useStackAndBrowser, watchedPage } from './stack.mjs';

const env = useStackAndBrowser({ before, after });

const open = (context, path) => watchedPage(env.stack, context, path);

test('the README page renders for a signed-out visitor, desktop and phone', async () => {
  for (const [name, options] of [['desktop', {}], ['phone', devices['Pixel 7']]]) {
    const context = await env.browser.newContext(options);
    const { page, res, problems, foreign } = await open(context, '/s3credentialsREADME');
    assert.equal(res.status(), 200);
    assert.equal(await page.locator('#endpoint').innerText(), `${env.stack.app}/s3credentials`);
    assert.match(await page.locator('body').innerText(), /us-west-2/);
    assert.match(await page.locator('body').innerText(), /not signed in/);
    for (const id of ['curl-netrc', 'curl-bearer', 'cli', 'boto3', 's3fs', 'gdal']) {
      assert.equal(await page.locator(`#${id}`).count(), 1, id);
    }
    // Readable on a phone: nothing wider than the viewport except scrollable code blocks.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `${name}: page is ${overflow}px wider than the screen`);
    await page.screenshot({ path: join(artifacts, `readme-${name}.png`), fullPage: true });
    assert.deepEqual(problems, [], `${name}: console`);
    assert.deepEqual(foreign, [], `${name}: external requests`);
    await context.close();
  }
});

test('signed in, the README page lists the buckets the user can read', async () => {
  const context = await env.browser.newContext();
  const { page } = await open(context, '/login?return_to=%2Fs3credentialsREADME');
  await page.fill('#username', 'carol');
  await page.fill('#password', 'carol-pw');
  await Promise.all([page.waitForURL(`${env.stack.app}/s3credentialsREADME`), page.click('#login')]);
  const text = await page.locator('#access + p, #access ~ table').allInnerTexts();
  const all = text.join('\n');
  assert.match(all, /carol/);
  assert.match(all, /demo-inregion/);
  assert.match(all, /demo-restricted/);
  assert.doesNotMatch(all, /demo-elsewhere/);
  await page.screenshot({ path: join(artifacts, 'readme-signed-in.png'), fullPage: true });
  // Signing out is the page's button (a POST): afterwards the page is the signed-out one.
  await Promise.all([page.waitForURL((url) => !url.href.startsWith(`${env.stack.app}/s3credentialsREADME`)), page.click('#logout')]);
  await page.goto(`${env.stack.app}/s3credentialsREADME`);
  assert.match(await page.locator('body').innerText(), /not signed in/);
  await context.close();
});

// The local stack knows AWS's ranges (a fixture): the browser, on 127.0.0.1, is outside
// us-west-2 and is told so before it fetches a credential that would not work.
test('a visitor outside the region sees the banner, and the page checks an s3:// URL', async () => {
  const context = await env.browser.newContext();
  const { page, problems } = await open(context, '/s3credentialsREADME');
  const banner = page.locator('#out-of-region');
  assert.equal(await banner.isVisible(), true);
  const said = await banner.innerText();
  assert.match(said, /outside us-west-2/);
  assert.match(said, /127\.0\.0\.1/);
  await page.screenshot({ path: join(artifacts, 'readme-out-of-region.png'), fullPage: true });
  // "Can I read this?": the form asks /s3credentials/locate.
  await page.fill('#locate-url', 's3://demo-second/hello.txt');
  await Promise.all([page.waitForURL(/\/s3credentials\/locate\?url=/), page.click('#locate-form button')]);
  const located = JSON.parse(await page.locator('body').innerText());
  assert.equal(located.archive, 'second');
  assert.equal(located.bucket, 'demo-second');
  assert.deepEqual(problems, []);
  await context.close();
});
