// A new model version appears while VUS users keep sending unversioned inferences (the runner adds the
// version folder, or calls the repository load API, at SWAP_AT). No request may fail, and responses must
// move from the old version to the new one: the served_version counter, tagged by version, shows when.
import { check } from 'k6';
import { constantVusOptions, envInt, recordVersion, sender } from './common.js';

const base = constantVusOptions(4);
export const options = {
  ...base,
  thresholds: {
    ...base.thresholds,
    http_req_failed: [`rate<=${__ENV.MAX_ERROR_RATE || '0'}`],
    checks: ['rate==1'],
  },
};
const send = sender('v2_binary');
const expected = String(envInt('NEW_VERSION', 2));

export default function () {
  const r = send();
  recordVersion(r);
  check(r, { 'has model_version': (res) => res.status !== 200 || res.json('model_version') !== undefined });
}

export function teardown() {
  // The swap has happened by the end of the run: the last answer must come from the new version.
  const r = send();
  check(r, { [`new version ${expected} serves after the swap`]: (res) => res.status === 200 && String(res.json('model_version')) === expected });
}
