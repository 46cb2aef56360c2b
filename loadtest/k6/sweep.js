// Closed-loop concurrency sweep: CONCURRENCY (e.g. "1,2,4,8") users, one step after the other, STEP each.
// Equal concurrency makes servers comparable (throughput and p99 per step); each step is its own
// scenario ("c<N>") so results can be split by it.
import exec from 'k6/execution';
import { env, sender, thresholds } from './common.js';

const levels = env('CONCURRENCY', '1,2,4,8').split(',').map((v) => parseInt(v, 10));
const stepSeconds = parseInt(env('STEP', '10s'), 10);
const gapSeconds = 1; // lets in-flight requests of a step finish before the next starts

const scenarios = {};
levels.forEach((vus, i) => {
  scenarios[`c${String(vus).padStart(3, '0')}`] = {
    executor: 'constant-vus',
    vus,
    duration: `${stepSeconds}s`,
    startTime: `${i * (stepSeconds + gapSeconds)}s`,
    gracefulStop: '5s',
  };
});

export const options = {
  scenarios,
  thresholds: { http_req_failed: thresholds().http_req_failed },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};
const send = sender(env('KIND', 'image'));

export default function () {
  send(exec.scenario.iterationInTest);
}
