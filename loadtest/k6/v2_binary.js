// KServe V2 inference with a preprocessed FP32 [1,3,224,224] tensor sent with the binary tensor extension
// (JSON header + raw bytes), as tritonclient and perf_analyzer send it by default.
import { constantVusOptions, sender } from './common.js';

export const options = constantVusOptions(4);
const send = sender('v2_binary');

export default function () {
  send();
}
