// Image classification through POST /v1/models/<model>:predict with real photos (PNG and JPEG bodies):
// the path most clients use, including decode and preprocessing on the server.
import exec from 'k6/execution';
import { constantVusOptions, sender } from './common.js';

export const options = constantVusOptions(4);
const send = sender('image');

export default function () {
  send(exec.scenario.iterationInTest);
}
