// Shared settings and request builders for every k6 script, so that each scenario, and each peer server
// in a comparison, is sent byte-for-byte the same requests. Payload files are prepared by loadtest/run.py
// (k6 cannot decode images or build tensors) and passed in by absolute path.
import http from 'k6/http';
import { check } from 'k6';
import { Counter } from 'k6/metrics';

export const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8000';
export const MODEL = __ENV.MODEL || 'efficientnet_lite0';
// Peers expose the same work under other paths (TorchServe: /predictions/<model>).
export const PREDICT_PATH = __ENV.PREDICT_PATH || `/v1/models/${MODEL}:predict`;
export const INFER_PATH = __ENV.INFER_PATH || `/v2/models/${MODEL}/infer`;
const TIMEOUT = __ENV.REQUEST_TIMEOUT || '30s';

export function env(name, fallback) {
  const v = __ENV[name];
  return v === undefined || v === '' ? fallback : v;
}

export function envInt(name, fallback) {
  return parseInt(env(name, String(fallback)), 10);
}

// Latency and error budgets; a failed threshold makes k6 exit 99 and the runner report FAIL.
export function thresholds() {
  return {
    http_req_duration: [`p(95)<${envInt('P95_MS', 500)}`, `p(99)<${envInt('P99_MS', 1000)}`],
    http_req_failed: [`rate<${env('MAX_ERROR_RATE', '0.01')}`],
    checks: [`rate>${env('MIN_CHECK_RATE', '0.99')}`],
  };
}

export const servedVersion = new Counter('served_version');

function contentType(path) {
  return /\.jpe?g$/i.test(path) ? 'image/jpeg' : 'image/png';
}

function photoSender() {
  const paths = env('PHOTOS', '').split(',').filter((p) => p);
  if (paths.length === 0) throw new Error('PHOTOS must list image files (comma-separated absolute paths)');
  const photos = paths.map((p) => ({ body: open(p, 'b'), type: contentType(p) }));
  const url = BASE_URL + PREDICT_PATH;
  return (i) => {
    const photo = photos[i % photos.length];
    const r = http.post(url, photo.body, {
      headers: { 'Content-Type': photo.type }, timeout: TIMEOUT, tags: { kind: 'image' },
    });
    check(r, { 'predict 200': (res) => res.status === 200, 'has labels': (res) => res.body && res.body.length > 2 });
    return r;
  };
}

// JSON header then raw little-endian FP32 bytes (binary tensor extension). The outputs are asked for as
// JSON so that the served model_version can be read from every response.
function v2BinarySender() {
  const body = open(env('V2_BINARY_FILE', ''), 'b');
  const headerLength = env('V2_BINARY_HEADER_LENGTH', '');
  if (!headerLength) throw new Error('V2_BINARY_HEADER_LENGTH is required');
  const url = BASE_URL + INFER_PATH;
  const params = {
    headers: { 'Content-Type': 'application/octet-stream', 'Inference-Header-Content-Length': headerLength },
    timeout: TIMEOUT, tags: { kind: 'v2_binary' },
  };
  return () => {
    const r = http.post(url, body, params);
    check(r, { 'infer 200': (res) => res.status === 200 });
    return r;
  };
}

function v2JsonSender() {
  const body = open(env('V2_JSON_FILE', ''));
  const url = BASE_URL + INFER_PATH;
  const params = { headers: { 'Content-Type': 'application/json' }, timeout: TIMEOUT, tags: { kind: 'v2_json' } };
  return () => {
    const r = http.post(url, body, params);
    check(r, { 'infer 200': (res) => res.status === 200 });
    return r;
  };
}

// Must be called from the init context (k6 only opens files there).
export function sender(kind) {
  switch (kind) {
    case 'image': return photoSender();
    case 'v2_binary': return v2BinarySender();
    case 'v2_json': return v2JsonSender();
    default: throw new Error(`unknown request kind ${kind}: image | v2_binary | v2_json`);
  }
}

// Records which version answered, from a JSON inference response (model_version field).
export function recordVersion(r) {
  if (r.status !== 200) return;
  try {
    const v = r.json('model_version');
    servedVersion.add(1, { version: v === undefined || v === null ? 'none' : String(v) });
  } catch (e) {
    servedVersion.add(1, { version: 'unparsed' });
  }
}

// A closed loop of VUS users for DURATION, the shape of the three per-endpoint scripts.
export function constantVusOptions(defaultVus) {
  return {
    scenarios: {
      load: { executor: 'constant-vus', vus: envInt('VUS', defaultVus), duration: env('DURATION', '20s') },
    },
    thresholds: thresholds(),
    summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
  };
}
