// NeuroNav web UI: the route table, the navigation bar, the start. The router (router.js) ends each
// page before the next; the session (session.js) is shared with the pages, which never import this file.
import './style.css'
import { whenUnauthorized } from './api.js'
import { startRouter } from './router.js'
import { can, loadSession, session, sessionEnded, signOut } from './session.js'
import { h } from './ui.js'
import { loginPage } from './pages/login.js'
import { worklistPage } from './pages/worklist.js'
import { studyPage } from './pages/study.js'
import { reportPage } from './pages/report.js'
import { adminPage } from './pages/admin.js'

const ROUTES = [
  [/^#\/login$/, loginPage],
  [/^#\/worklist$/, worklistPage],
  [/^#\/study\/([\w-]+)$/, studyPage],
  [/^#\/report\/([\w-]+)$/, reportPage],
  [/^#\/admin$/, adminPage],
]

function renderNav() {
  const nav = document.getElementById('nav')
  const u = session.user
  if (!u) {
    nav.replaceChildren()
    return
  }
  const links = []
  if (can('study:list') || can('study:status')) links.push(h('a', { href: '#/worklist' }, 'Worklist'))
  if (can('user:manage')) links.push(h('a', { href: '#/admin' }, 'Admin'))
  nav.replaceChildren(
    ...links,
    h('span', { class: 'who' }, `${u.display_name} (${u.role})`),
    h('button', { type: 'button', class: 'link', onclick: signOut }, 'Sign out'),
  )
}

// Before each page: signed in (or on the sign-in page), no pending password change; the bar drawn.
async function before(hash) {
  if (!session.user && hash !== '#/login') {
    await loadSession()
    if (!session.user) return '#/login'
  }
  if (session.user && session.user.password_change_required && hash !== '#/login') return '#/login'
  // an administrator has no worklist (no study permission): the start page is the administration
  if (session.user && hash === '#/worklist' && !can('study:list') && !can('study:status')) return '#/admin'
  renderNav()
  return null
}

function notFound(main) {
  main.replaceChildren(h('h1', {}, 'Page not found'), h('p', {}, h('a', { href: '#/worklist' }, 'Back to the worklist')))
}

whenUnauthorized(sessionEnded)
startRouter({ routes: ROUTES, main: document.getElementById('main'), before, notFound })
