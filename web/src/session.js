// The signed-in session: who is signed in, what they may do, signing in and out. Shared by main.js
// and the pages (pages import this module, never main.js).
import { get, post, setCsrf } from './api.js'
import { go } from './router.js'
import { say } from './ui.js'

export const session = { user: null }

export function can(permission) {
  return !!session.user && (session.user.permissions || []).includes(permission)
}

export async function loadSession() {
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
  const home = can('study:list') || can('study:status') ? '#/worklist' : '#/admin'
  go(session.user ? home : '#/login')
}

export async function signOut() {
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

export function sessionEnded() {
  if (location.hash !== '#/login') {
    session.user = null
    say('Your session has ended. Please sign in again.', 'error')
    go('#/login')
  }
}
