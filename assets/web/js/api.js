// One way to call the API: JSON in, JSON out, and every failure as an
// ApiError carrying the server's stable code and its message.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'offline', 'The server cannot be reached. Check the network connection and try again.');
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { message: text }; }
  }
  if (!response.ok) {
    throw new ApiError(response.status, data?.error ?? 'http', data?.message ?? response.statusText);
  }
  return data;
}

export const get = path => api('GET', path);
export const post = (path, body) => api('POST', path, body);
