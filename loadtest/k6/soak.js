// Soak: a steady RATE of mixed traffic for DURATION. Latency that creeps up or memory that keeps growing
// (the runner samples process_resident_memory_bytes) shows leaks and fragmentation a short run hides.
import exec from 'k6/execution';
import { env, envInt, sender, thresholds } from './common.js';

export const options = {
  scenarios: {
    soak: {
      executor: 'constant-arrival-rate',
      rate: envInt('RATE', 20),
      timeUnit: '1s',
      duration: env('DURATION', '2m'),
      preAllocatedVUs: envInt('PRE_VUS', 8),
      maxVUs: envInt('MAX_VUS', 32),
    },
  },
  thresholds: { ...thresholds(), dropped_iterations: [`count<${envInt('MAX_DROPPED', 1)}`] },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};
const image = sender('image');
const binary = sender('v2_binary');

export default function () {
  const i = exec.scenario.iterationInTest;
  // Mostly images, some tensors: the mix a public endpoint sees.
  if (i % 4 === 3) binary();
  else image(i);
}
