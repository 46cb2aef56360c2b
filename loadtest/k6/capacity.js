// Capacity: an open model (arrivals do not wait for answers) ramping from START_RATE to MAX_RATE requests/s.
// Where p99 bends up and dropped iterations appear is the capacity of one replica, which sets the HPA target.
import exec from 'k6/execution';
import { env, envInt, sender, thresholds } from './common.js';

const kind = env('KIND', 'image');
const ramp = env('RAMP_DURATION', '60s');
export const options = {
  scenarios: {
    capacity: {
      executor: 'ramping-arrival-rate',
      startRate: envInt('START_RATE', 5),
      timeUnit: '1s',
      preAllocatedVUs: envInt('PRE_VUS', 8),
      maxVUs: envInt('MAX_VUS', 64),
      stages: [
        { target: envInt('MAX_RATE', 120), duration: ramp },
        { target: envInt('MAX_RATE', 120), duration: env('HOLD_DURATION', '10s') },
      ],
    },
  },
  // Past capacity the latency budget is expected to break: only errors are judged by default.
  thresholds: env('CAPACITY_LATENCY_THRESHOLDS', '') ? thresholds() : { http_req_failed: thresholds().http_req_failed },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};
const send = sender(kind);

export default function () {
  send(exec.scenario.iterationInTest);
}
