// Tickets from the README page: a signed-in user makes one with the page's form (CSRF-safe:
// the form carries a token of the session and posts to the service's own origin), sees it
// once, and a machine with no login reads with it. With moto, so credentials are vended.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';

import { artifacts, useStackAndBrowser, watchedPage } from './stack.mjs';

const env = useStackAndBrowser({ before, after }, { moto: true });

const open = (context, path) => watchedPage(env.stack, context, path);

test('signed in, the page makes a ticket that a machine without a login can use', async () => {
  const context = await env.browser.newContext();
  const { page, problems, foreign } = await open(context, '/login?return_to=%2Fs3credentialsREADME');
  await page.fill('#username', 'carol');
  await page.fill('#password', 'carol-pw');
  await Promise.all([page.waitForURL(`${env.stack.app}/s3credentialsREADME`), page.click('#login')]);
  await page.fill('#ticket-targets', 's3://demo-inregion/\ns3://demo-restricted/data/');
  await page.fill('#ticket-label', 'browser job');
  await page.selectOption('#ticket-expires', '3600');
  await Promise.all([page.waitForURL(`${env.stack.app}/s3credentials/tickets`), page.click('#ticket-create')]);
  const ticket = (await page.locator('#ticket').innerText()).trim();
  assert.match(ticket, /^stsvend_tk1_[A-Za-z0-9_-]+$/);
  const id = (await page.locator('#ticket-id').innerText()).trim();
  await page.screenshot({ path: join(artifacts, 'readme-ticket-made.png'), fullPage: true });
  // A machine: no cookies, just the ticket.
  const who = await (await fetch(`${env.stack.app}/whoami`, { headers: { Authorization: `Bearer ${ticket}` } })).json();
  assert.equal(who.user_id, 'carol');
  assert.equal(who.authenticated_by, 'ticket');
  assert.equal(who.ticket.id, id);
  const creds = await fetch(`${env.stack.app}/s3credentials`, { headers: { Authorization: `Bearer ${ticket}` } });
  assert.equal(creds.status, 200, await creds.clone().text());
  assert.ok((await creds.json()).accessKeyId);
  const beyond = await fetch(`${env.stack.app}/s3credentials?target=s3://demo-restricted/other/`, { headers: { Authorization: `Bearer ${ticket}` } });
  assert.equal(beyond.status, 403);
  assert.equal((await beyond.json()).error, 'beyond_ticket');
  assert.deepEqual(problems, [], 'console');
  assert.deepEqual(foreign, [], 'external requests');
  await context.close();
});
