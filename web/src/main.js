// NeuroNav web UI: hash routes, the signed-in session, the navigation bar.
import './style.css'
import { get, post, setCsrf, whenUnauthorized } from './api.js'
import { h, say } from './ui.js'
import { loginPage } from './pages/login.js'
import { worklistPage } from './pages/worklist.js'
import { studyPage } from './pages/study.js'
import { reportPage } from './pages/report.js'
import { adminPage } from './pages/admin.js'

export const session = { user: null }
let cleanup = null

export function can(permission) {
  return !!session.user && (session.user.permissions || []).includes(permission)
}

export function go(hash) {
  if (location.hash === hash) route()
  else location.hash = hash
}

async function loadSession() {
  try {
    const me = await get('/api/auth/me', { quiet401: true })
    session.user = me
    if (me.csrf_token) setCsrf(me.csrf_token)
  } catch {
    session.user = null
  }
}

export async function signedIn(user, csrfToken) {
  setCsrf(csrfToken)
  session.user = user
  await loadSession()
  go(session.user && session.user.role === 'admin' ? '#/admin' : '#/worklist')
}

async function signOut() {
  try {
    await post('/api/auth/logout')
  } catch {
    /* already signed out */
  }
  setCsrf('')
  session.user = null
  say('Signed out.')
  go('#/login')
}

function renderNav() {
  const nav = document.getElementById('nav')
  const u = session.user
  if (!u) {
    nav.replaceChildren()
    return
  }
  const links = []
  if (u.role !== 'admin' || (u.permissions || []).includes('study:status')) {
    links.push(h('a', { href: '#/worklist' }, 'Worklist'))
  }
  if ((u.permissions || []).includes('user:manage')) links.push(h('a', { href: '#/admin' }, 'Admin'))
  nav.replaceChildren(
    ...links,
    h('span', { class: 'who' }, `${u.display_name} (${u.role})`),
    h('button', { type: 'button', class: 'link', onclick: signOut }, 'Sign out'),
  )
}

const ROUTES = [
  [/^#\/login$/, () => loginPage],
  [/^#\/worklist$/, () => worklistPage],
  [/^#\/study\/([\w-]+)$/, () => studyPage],
  [/^#\/report\/([\w-]+)$/, () => reportPage],
  [/^#\/admin$/, () => adminPage],
]

export async function route() {
  if (cleanup) {
    try {
      cleanup()
    } catch {
      /* a page's cleanup never blocks navigation */
    }
    cleanup = null
  }
  const hash = location.hash || '#/worklist'
  if (!session.user && hash !== '#/login') {
    await loadSession()
    if (!session.user) {
      go('#/login')
      return
    }
  }
  if (session.user && session.user.password_change_required && hash !== '#/login') {
    go('#/login')
    return
  }
  renderNav()
  const main = document.getElementById('main')
  for (const [pattern, page] of ROUTES) {
    const m = pattern.exec(hash)
    if (m) {
      main.replaceChildren()
      cleanup = (await page()(main, ...m.slice(1))) || null
      const title = main.querySelector('h1')
      document.title = title ? `${title.textContent} — NeuroNav` : 'NeuroNav'
      main.focus({ preventScroll: true })
      return
    }
  }
  main.replaceChildren(h('h1', {}, 'Page not found'), h('p', {}, h('a', { href: '#/worklist' }, 'Back to the worklist')))
}

whenUnauthorized(() => {
  if (location.hash !== '#/login') {
    session.user = null
    say('Your session has ended. Please sign in again.', 'error')
    go('#/login')
  }
})
window.addEventListener('hashchange', route)
route()
