import type { Scenario } from '../scenario.js';
import { auditScenario, authzScenario, connectAuthScenario } from './auth.js';
import { authzEvaluatorScenario } from './authz-evaluator.js';
import { durabilityScenario, flowScenarios } from './flow.js';
import { idleScenario } from './idle.js';
import { latencyScenario, pairedLatencyScenario } from './latency.js';

/** Every scenario, in the order a full run executes them. */
export const scenarios: readonly Scenario[] = [
  ...flowScenarios,
  durabilityScenario,
  latencyScenario,
  pairedLatencyScenario,
  idleScenario,
  connectAuthScenario,
  authzScenario,
  authzEvaluatorScenario,
  auditScenario,
];
