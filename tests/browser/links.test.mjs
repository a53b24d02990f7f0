// A person signed in here clicks a link to an object on a web page: stsvend sends the browser
// on to a presigned URL (moto's S3) and the file downloads, no AWS credentials involved.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

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

  // A web app's download link to the object, on a page of another origin.
  const redirects = [];
  page.on('response', (res) => { if (res.status() === 307) redirects.push(res.headers().location); });
  await page.setContent(`<a id="dl" href="${app}/s3/demo-inregion/browser/granule.bin">download</a>`);
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#dl')]);
  const saved = await download.path();
  assert.equal(readFileSync(saved, 'utf8'), body);
  assert.equal(redirects.length, 1, JSON.stringify(redirects));
  assert.ok(redirects[0].startsWith(`${moto}/demo-inregion/browser/granule.bin?`), redirects[0]);
  assert.match(redirects[0], /X-Amz-Signature=/);

  // Signed out, the same link sends the browser to log in instead: nothing is signed.
  const fresh = await env.browser.newContext();
  const other = await fresh.newPage();
  await other.goto(`${app}/s3/demo-inregion/browser/granule.bin`);
  assert.ok(other.url().startsWith(`${env.stack.issuer}/interaction/`), other.url());
  await fresh.close();
  await context.close();
});
