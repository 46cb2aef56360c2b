// KServe V2 inference with the same tensor as 150,528 JSON numbers: the costliest encoding, and the only
// one every V2 server accepts (MLServer has no binary extension), so it is the fair common ground.
import { constantVusOptions, sender } from './common.js';

export const options = constantVusOptions(4);
const send = sender('v2_json');

export default function () {
  send();
}
