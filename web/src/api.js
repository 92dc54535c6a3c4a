// The service's HTTP API: JSON requests with the session cookie and the CSRF token, clear errors.
// A page passes its `signal` (router.js PageLife): once the page is left the request is aborted and
// never settles, so neither its answer nor its error reaches code written for a page that is gone.

let csrf = sessionStorage.getItem('nn.csrf') || ''
let onUnauthorized = () => {}

export function setCsrf(token) {
  csrf = token || ''
  if (csrf) sessionStorage.setItem('nn.csrf', csrf)
  else sessionStorage.removeItem('nn.csrf')
}

export function whenUnauthorized(fn) {
  onUnauthorized = fn
}

export class ApiError extends Error {
  constructor(status, body) {
    super(messageOf(status, body))
    this.status = status
    this.body = body || {}
    this.kind = (body && body.error) || ''
  }
}

function messageOf(status, body) {
  if (!body) return `The server answered ${status}.`
  if (Array.isArray(body.detail)) {
    return body.detail.map((d) => `${(d.loc || []).slice(1).join('.') || 'request'}: ${d.msg}`).join('; ')
  }
  if (Array.isArray(body.problems) && body.problems.length) return body.problems.join(' ')
  return body.detail || `The server answered ${status}.`
}

async function parse(response) {
  if (response.status === 204) return null
  const type = response.headers.get('content-type') || ''
  if (type.includes('json')) return response.json()
  const text = await response.text()
  return { detail: text.slice(0, 300) }
}

// A promise that never settles (a fresh one each time, so nothing piles up on it: it is collected
// with whatever awaits it).
const never = () => new Promise(() => {})

export async function api(method, path, body, { quiet401 = false, signal } = {}) {
  if (signal?.aborted) return never()
  const headers = { Accept: 'application/json' }
  let payload
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json'
    payload = JSON.stringify(body)
  }
  if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf
  let response
  try {
    response = await fetch(path, { method, headers, body: payload, credentials: 'same-origin', signal })
  } catch {
    if (signal?.aborted) return never()
    throw new ApiError(0, { detail: 'The server cannot be reached. Check the connection and try again.' })
  }
  let data
  try {
    data = await parse(response)
  } catch (err) {
    if (signal?.aborted) return never()
    throw new ApiError(response.status, { detail: `The answer could not be read: ${err.message || err}` })
  }
  if (signal?.aborted) return never()
  if (!response.ok) {
    const error = new ApiError(response.status, data)
    if (response.status === 401 && !quiet401) onUnauthorized(error)
    throw error
  }
  return data
}

export const get = (path, opts) => api('GET', path, undefined, opts)
export const post = (path, body, opts) => api('POST', path, body ?? {}, opts)

// Upload files (multipart) with progress: onProgress(fraction 0..1).
export function upload(path, files, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData()
    for (const f of files) form.append('files', f, f.webkitRelativePath || f.name)
    const xhr = new XMLHttpRequest()
    xhr.open('POST', path)
    xhr.setRequestHeader('Accept', 'application/json')
    if (csrf) xhr.setRequestHeader('X-CSRF-Token', csrf)
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total)
    }
    xhr.onerror = () => reject(new ApiError(0, { detail: 'The upload failed: the server cannot be reached.' }))
    xhr.onload = () => {
      let data
      try {
        data = JSON.parse(xhr.responseText)
      } catch {
        data = { detail: xhr.responseText.slice(0, 300) }
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data)
      else reject(new ApiError(xhr.status, data))
    }
    xhr.send(form)
  })
}

// Fetch a file with the session and save it under its server-given name.
export async function download(path) {
  const response = await fetch(path, { credentials: 'same-origin' })
  if (!response.ok) throw new ApiError(response.status, await parse(response))
  const blob = await response.blob()
  const cd = response.headers.get('content-disposition') || ''
  const match = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(cd)
  const name = match ? decodeURIComponent(match[1]) : path.split('/').pop()
  const url = URL.createObjectURL(blob)
  const a = document.createElement('a')
  a.href = url
  a.download = name
  document.body.append(a)
  a.click()
  a.remove()
  setTimeout(() => URL.revokeObjectURL(url), 10000)
  return name
}
