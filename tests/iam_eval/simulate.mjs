// Test-only bridge: reads a JSON list of simulations on stdin, evaluates each
// with @cloud-copilot/iam-simulate, prints a JSON list of decisions.
import { runSimulation } from '@cloud-copilot/iam-simulate'

const input = await new Promise((resolve) => {
  let data = ''
  process.stdin.on('data', (c) => (data += c))
  process.stdin.on('end', () => resolve(data))
})
const out = []
for (const sim of JSON.parse(input)) {
  const r = await runSimulation(sim, {})
  out.push(r.resultType === 'error' ? { result: 'error', errors: r.errors } : { result: r.overallResult })
}
process.stdout.write(JSON.stringify(out))
