// A person signed in here clicks a link to an object on a web page: stsvend sends the browser
// on to a presigned URL (moto's S3) and the file downloads, no AWS credentials involved.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { once } from 'node:events';

import { useStackAndBrowser } from './stack.mjs';

const env = useStackAndBrowser({ before, after }, { moto: true });

test('a signed-in browser follows an object link from a page and downloads the file', async () => {
  const { app, moto } = env.stack;
  // An object to download (moto takes unsigned writes).
  const body = 'granule bytes\n'.repeat(100);
  const put = await fetch(`${moto}/demo-inregion/browser/granule.bin`, {
    method: 'PUT', body, headers: { 'content-type': 'application/octet-stream' },
  });
  assert.equal(put.status, 200);

  const context = await env.browser.newContext({ acceptDownloads: true });
  const page = await context.newPage();
  await page.goto(`${app}/login?return_to=%2Fs3credentialsREADME`);
  await page.fill('#username', 'carol');
  await page.fill('#password', 'carol-pw');
  await Promise.all([page.waitForURL(`${app}/s3credentialsREADME`), page.click('#login')]);

  // A web app's download link to the object, on a page of another site (localhost is not
  // 127.0.0.1): a top-level click carries the SameSite=Lax session cookie.
  const elsewhere = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(`<a id="dl" href="${app}/s3/demo-inregion/browser/granule.bin">download</a>`);
  });
  elsewhere.listen(0, '127.0.0.1');
  await once(elsewhere, 'listening');
  const otherSite = `http://localhost:${elsewhere.address().port}/`;
  const redirects = [];
  page.on('response', (res) => { if (res.status() === 307) redirects.push(res.headers().location); });
  // A promise's value, or never (a navigation that turns into a download rejects waitForURL).
  const settle = (p, value) => p.then(() => value, () => new Promise(() => {}));
  const timer = (ms) => new Promise((r) => setTimeout(() => r('timeout'), ms));
  await page.goto(otherSite);
  assert.equal(new URL(page.url()).origin, new URL(otherSite).origin);
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: 10000 }), page.click('#dl')]);
  const saved = await download.path();
  assert.equal(readFileSync(saved, 'utf8'), body);
  assert.equal(redirects.length, 1, JSON.stringify(redirects));
  assert.ok(redirects[0].startsWith(`${moto}/demo-inregion/browser/granule.bin?`), redirects[0]);
  assert.match(redirects[0], /X-Amz-Signature=/);

  // Signed out at a shared browser: the redirect the browser kept goes with the login (Vary,
  // Clear-Site-Data), so following the link again goes through a login at the IdP instead
  // of straight to the first person's signed URL.
  await page.goto(`${app}/s3credentialsREADME`);
  await Promise.all([page.waitForURL((u) => !u.href.startsWith(`${app}/s3credentialsREADME`)), page.click('#logout')]);
  const seen = [];
  page.on('request', (req) => seen.push(req.url()));
  await page.goto(otherSite);
  const outcome = Promise.race([
    settle(page.waitForEvent('download', { timeout: 10000 }), 'download'),
    settle(page.waitForURL((u) => u.href.startsWith(`${env.stack.issuer}/interaction/`), { timeout: 10000 }), 'login'),
    timer(10000),
  ]);
  await page.click('#dl');
  const how = await outcome;
  assert.ok(seen.some((u) => u.startsWith(`${env.stack.issuer}/`)),
    `after sign-out the link was followed without a login (${how}): ${JSON.stringify(seen)}`);
  elsewhere.close();

  // Signed out, the same link sends the browser to log in instead: nothing is signed.
  const fresh = await env.browser.newContext();
  const other = await fresh.newPage();
  await other.goto(`${app}/s3/demo-inregion/browser/granule.bin`);
  assert.ok(other.url().startsWith(`${env.stack.issuer}/interaction/`), other.url());
  await fresh.close();
  await context.close();
});
