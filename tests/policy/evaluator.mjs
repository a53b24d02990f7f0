// One call into the IAM evaluator for the policy tests: a request by `principal` (default: a
// session of the read-only role), the role's identity policies, and optionally a session
// policy and a resource policy. Returns Allowed / ImplicitlyDenied / ExplicitlyDenied.
import assert from 'node:assert/strict';

import { runSimulation } from '@cloud-copilot/iam-simulate';

export const ACCOUNT = '123456789012';
export const READ_ONLY_SESSION = `arn:aws:sts::${ACCOUNT}:assumed-role/stsvend-read/user@stsvend`;

export async function simulate({
  principal = READ_ONLY_SESSION, action, resource, account = ACCOUNT, context = {},
  identity, session, resourcePolicy,
}) {
  const result = await runSimulation({
    request: { principal, action, resource: { resource, accountId: account }, contextVariables: context },
    identityPolicies: identity.map((policy, i) => ({ name: `identity-${i}`, policy })),
    sessionPolicy: session,
    resourcePolicy,
    serviceControlPolicies: [],
    resourceControlPolicies: [],
  }, {});
  assert.notEqual(result.resultType, 'error', JSON.stringify(result.errors ?? {}));
  return result.overallResult;
}
