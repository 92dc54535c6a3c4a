// Small DOM helpers: h() builds elements, say() announces status, fmt helpers.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue
    if (k === 'class') el.className = v
    else if (k === 'text') el.textContent = v
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v)
    else if (k === 'dataset') Object.assign(el.dataset, v)
    else if (v === true) el.setAttribute(k, '')
    else el.setAttribute(k, String(v))
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue
    el.append(c instanceof Node ? c : document.createTextNode(String(c)))
  }
  return el
}

let statusTimer = 0
export function say(message, kind = 'info') {
  const box = document.getElementById('status')
  box.textContent = message
  box.dataset.kind = kind
  box.hidden = !message
  clearTimeout(statusTimer)
  if (message && kind !== 'error') statusTimer = setTimeout(() => say(''), 6000)
}

export function errorBox(container, error) {
  const box = h('p', { class: 'error', role: 'alert' }, error.message || String(error))
  container.replaceChildren(box)
  return box
}

export function fmtDate(value) {
  if (!value) return '—'
  const d = new Date(value)
  if (Number.isNaN(d.getTime())) return String(value)
  return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' })
}

export function studyDate(value) {
  if (!value) return '—'
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(value)
  return m ? `${m[1]}-${m[2]}-${m[3]}` : value
}

export function num(value, digits = 1) {
  if (typeof value !== 'number' || !Number.isFinite(value)) return '—'
  const text = value.toFixed(digits)
  return /^-0(\.0*)?$/.test(text) ? text.slice(1) : text // never "-0.0"
}

export function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`
  input.id = id
  return h('div', { class: 'field' }, h('label', { for: id }, label), input, hint ? h('small', {}, hint) : null)
}

export function progressBar(fraction, label) {
  const pct = Math.round(Math.max(0, Math.min(1, fraction || 0)) * 100)
  const bar = h('div', {
    class: 'progress',
    role: 'progressbar',
    'aria-valuemin': 0,
    'aria-valuemax': 100,
    'aria-valuenow': pct,
    'aria-label': label,
  })
  bar.append(h('span', { class: 'progress-fill', style: `width:${pct}%` }))
  return bar
}
