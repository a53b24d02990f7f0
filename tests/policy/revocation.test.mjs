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
