// The deny statement `stsvend revoke` prints (here from `stsvend deny-statement`, the same
// function) ends the revoked user's sessions issued before the revocation, and nobody else's:
// checked with the IAM evaluator against the read-only role's own policy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { ACCOUNT, simulate } from './evaluator.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = process.env.STSVEND_BIN
  ?? join(process.env.CARGO_TARGET_DIR ?? join(root, 'target'), 'debug', 'stsvend');
const config = join(root, 'config', 'local.toml');
const roleDoc = JSON.parse(readFileSync(join(root, 'deploy', 'aws', 'read-only-role-policy.json'), 'utf8'));
// Mid-second, as a revocation is: the statement's bound is rounded up, plus the margin.
const REVOKED_AT = '2026-11-27T13:00:00.400Z';

function statementFor(user) {
  const out = spawnSync(bin, ['deny-statement', '--config', config, '--user', user, '--revoked-at', REVOKED_AT], { encoding: 'utf8' });
  assert.equal(out.status, 0, out.stderr);
  return JSON.parse(out.stdout);
}

function sourceIdentity(user) {
  const out = spawnSync(bin, ['policy', '--config', config, '--user', user, '--group', 'science'], { encoding: 'utf8' });
  return JSON.parse(out.stdout).SourceIdentity;
}

const read = (identity, context) => simulate({
  principal: `arn:aws:sts::${ACCOUNT}:assumed-role/stsvend-read/session`,
  action: 's3:GetObject',
  resource: 'arn:aws:s3:::example-archive-protected/granule.nc',
  context,
  identity,
});

test("the deny statement ends the revoked user's earlier sessions and nobody else's", async () => {
  for (const user of ['alice', 'Mallory O\'Brien <m@example.org>']) {
    const role = { ...roleDoc, Statement: [...roleDoc.Statement, statementFor(user)] };
    const mine = sourceIdentity(user);
    // Before revocation, the role allows it.
    assert.equal(await read([roleDoc], { 'aws:SourceIdentity': mine, 'aws:TokenIssueTime': '2026-11-27T12:30:00Z' }), 'Allowed');
    // The user's session issued before the revocation: denied.
    assert.equal(await read([role], { 'aws:SourceIdentity': mine, 'aws:TokenIssueTime': '2026-11-27T12:30:00Z' }), 'ExplicitlyDenied', user);
    // Issued in the same second as the revocation, or just after it by a replica that had not
    // synced yet or by an AssumeRole already in flight: denied too.
    for (const issued of ['2026-11-27T13:00:00Z', '2026-11-27T13:00:01Z', '2026-11-27T13:00:05Z']) {
      assert.equal(await read([role], { 'aws:SourceIdentity': mine, 'aws:TokenIssueTime': issued }), 'ExplicitlyDenied', `${user} ${issued}`);
    }
    // Their sessions issued after it (once lifted): allowed again.
    assert.equal(await read([role], { 'aws:SourceIdentity': mine, 'aws:TokenIssueTime': '2026-11-27T13:30:00Z' }), 'Allowed', user);
    // Other users, whatever their sessions' age: allowed.
    for (const other of ['bob', 'alice2', 'carol']) {
      if (other === user) continue;
      assert.equal(await read([role], { 'aws:SourceIdentity': sourceIdentity(other), 'aws:TokenIssueTime': '2026-11-27T12:30:00Z' }), 'Allowed', other);
    }
  }
});

// Without SourceIdentity the statement names sessions by `aws:userid`: the user's own
// (`<user>@<app>`) and those each configured platform made for them (`<user>@<app>+<platform>`,
// the local stack's `demo`), and no other user's.
test("without SourceIdentity the deny statement ends the user's own and their platforms' sessions", async () => {
  const out = spawnSync(bin, ['deny-statement', '--config', config, '--user', 'alice', '--revoked-at', REVOKED_AT], {
    encoding: 'utf8',
    env: { ...process.env, STSVEND_STS__SOURCE_IDENTITY: 'false' },
  });
  assert.equal(out.status, 0, out.stderr);
  const statement = JSON.parse(out.stdout);
  const app = /^app_name\s*=\s*"([^"]+)"/m.exec(readFileSync(config, 'utf8'))?.[1]
    ?? /^app_name\s*=\s*"([^"]+)"/m.exec(readFileSync(join(root, 'config', 'default.toml'), 'utf8'))[1];
  const role = { ...roleDoc, Statement: [...roleDoc.Statement, statement] };
  const session = (name) => ({ 'aws:userid': `AROAEXAMPLEROLEID:${name}`, 'aws:TokenIssueTime': '2026-11-27T12:30:00Z' });
  for (const name of [`alice@${app}`, `alice@${app}+demo`]) {
    assert.equal(await read([role], session(name)), 'ExplicitlyDenied', name);
  }
  for (const name of [`bob@${app}`, `bob@${app}+demo`, `alice2@${app}+demo`, `malice@${app}`]) {
    assert.equal(await read([role], session(name)), 'Allowed', name);
  }
});
