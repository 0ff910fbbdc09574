// Keyward — the one fetch helper of the pages. JSON in, JSON out; sessions ride on the HttpOnly
// cookies of this origin (never on tokens kept by the page). Failures throw an ApiError carrying
// the HTTP status, the API's error code and its human-readable message.

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

/**
 * Rewrites the request validator's wording ("Invalid request: field `count` verification
 * failed. maximum(50, exclusive: false)") into a sentence that still names the field.
 */
export function humanize(msg) {
  const m = /field `([^`]+)` verification failed\.?\s*(\w+)\(([^,)]+)/.exec(msg);
  if (!m) return msg.replace(/^Invalid request:\s*/, '');
  const [, name, rule, n] = m;
  const what =
    {
      maximum: `must be at most ${n}`,
      minimum: `must be at least ${n}`,
      maxLength: `must be at most ${n} characters`,
      minLength: n.trim() === '1' ? 'is required' : `must be at least ${n} characters`,
      maxItems: `may have at most ${n} items`,
      minItems: `needs at least ${n} items`,
      pattern: 'has an invalid format',
    }[rule] || 'is invalid';
  return `${name} ${what}`;
}

function messageOf(body, status) {
  if (body && typeof body.error === 'string') return humanize(body.error);
  // The vendor face nests its error: {"error":{"code","message"}}.
  if (body?.error && typeof body.error.message === 'string') return body.error.message;
  if (status === 0) return 'The server cannot be reached. Check your connection and try again.';
  if (status === 429) return 'Too many requests. Please wait a moment and try again.';
  if (status >= 500) return 'The server had a problem. Please try again.';
  return `Request failed (HTTP ${status}).`;
}

function codeOf(body, status) {
  if (body && typeof body.code === 'string') return body.code;
  if (body?.error && typeof body.error.code === 'string') return body.error.code;
  return status === 0 ? 'NETWORK_ERROR' : `HTTP_${status}`;
}

/** Builds "path?a=1&b=2" from an object, skipping empty values. */
export function withQuery(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined || v === null || v === '') continue;
    params.set(k, String(v));
  }
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

/**
 * request('GET', '/api/keys', {query: {page: 2}}) → the parsed JSON body's `data` (or the whole
 * body when it has no `data`). `body` is sent as JSON; a FormData body is sent as is.
 */
export async function request(method, path, { body, query, signal, raw = false } = {}) {
  const init = {
    method,
    credentials: 'same-origin',
    headers: { Accept: 'application/json' },
    signal,
  };
  if (body !== undefined) {
    if (body instanceof FormData) {
      init.body = body;
    } else {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
  }
  let res;
  try {
    res = await fetch(withQuery(path, query), init);
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'NETWORK_ERROR', messageOf(null, 0), null);
  }
  let json = null;
  const text = await res.text();
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
  }
  if (!res.ok || (json && json.success === false)) {
    throw new ApiError(res.status, codeOf(json, res.status), messageOf(json, res.status), json);
  }
  if (raw) return json;
  return json && Object.hasOwn(json, 'data') ? json.data : json;
}

export const api = {
  get: (path, opts) => request('GET', path, opts),
  post: (path, body, opts = {}) => request('POST', path, { ...opts, body }),
  patch: (path, body, opts = {}) => request('PATCH', path, { ...opts, body }),
  put: (path, body, opts = {}) => request('PUT', path, { ...opts, body }),
  del: (path, opts) => request('DELETE', path, opts),
};

/**
 * Multipart upload through XMLHttpRequest so the caller can show progress.
 * onProgress(fraction 0..1). Resolves with `data`, rejects with ApiError; `.abort()` cancels.
 */
export function upload(path, formData, onProgress) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    xhr.open('POST', path);
    xhr.withCredentials = true;
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total);
    };
    xhr.onload = () => {
      let json = null;
      try {
        json = xhr.responseText ? JSON.parse(xhr.responseText) : null;
      } catch {
        json = null;
      }
      if (xhr.status >= 200 && xhr.status < 300 && !(json && json.success === false)) {
        resolve(json && 'data' in json ? json.data : json);
      } else {
        reject(
          new ApiError(xhr.status, codeOf(json, xhr.status), messageOf(json, xhr.status), json),
        );
      }
    };
    xhr.onerror = () => reject(new ApiError(0, 'NETWORK_ERROR', messageOf(null, 0), null));
    xhr.onabort = () => reject(new ApiError(0, 'ABORTED', 'The upload was cancelled.', null));
    xhr.send(formData);
  });
  promise.abort = () => xhr.abort();
  return promise;
}
