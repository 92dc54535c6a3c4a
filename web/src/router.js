// Hash routes and the life of a page. The router owns one page at a time: before it shows the next
// page it ends the current one (PageLife.leave), which aborts the page's requests, clears its timers,
// removes its listeners and releases its viewers, so nothing of a page that was left can run, paint
// or poll on the page that follows. This module imports no page (pages import it): no import cycle.

let started = null // { routes, main, before, notFound }
let current = null // the PageLife of the page on screen (or being rendered)

// Everything a page starts that outlives a call: requests (pass `signal`), timers (`setTimeout`),
// listeners on window/document (`listen`) and anything else (`onLeave`: a viewer's destroy).
export class PageLife {
  #controller = new AbortController()
  #cleanups = new Set()

  // aborted when the page is left: requests made with it never settle afterwards (api.js)
  get signal() {
    return this.#controller.signal
  }

  get left() {
    return this.#controller.signal.aborted
  }

  // Run `fn` when the page is left (at once when it has been left already); returns a function that
  // unregisters it.
  onLeave(fn) {
    if (this.left) {
      runQuietly(fn)
      return () => {}
    }
    this.#cleanups.add(fn)
    return () => this.#cleanups.delete(fn)
  }

  // A timer that cannot fire after the page is left; returns its cancel function.
  setTimeout(fn, ms) {
    if (this.left) return () => {}
    const id = setTimeout(() => {
      this.#cleanups.delete(cancel)
      if (!this.left) fn()
    }, ms)
    const cancel = () => {
      clearTimeout(id)
      this.#cleanups.delete(cancel)
    }
    this.#cleanups.add(cancel)
    return cancel
  }

  // A listener on an object that outlives the page (window, document), removed when it is left.
  listen(target, type, handler, options = {}) {
    if (!this.left) target.addEventListener(type, handler, { ...options, signal: this.signal })
  }

  leave() {
    if (this.left) return
    this.#controller.abort()
    const cleanups = [...this.#cleanups].reverse()
    this.#cleanups.clear()
    for (const fn of cleanups) runQuietly(fn)
  }
}

function runQuietly(fn) {
  try {
    fn()
  } catch (err) {
    console.error('a page cleanup failed', err) // a cleanup never blocks navigation
  }
}

export function go(hash) {
  if (location.hash === hash) route()
  else location.hash = hash
}

// routes: [[RegExp, page]], page(main, life, ...captured) may be async; before(hash) (async) returns a
// hash to go to instead, or nothing; notFound(main) renders an unknown route.
export function startRouter({ routes, main, before, notFound }) {
  started = { routes, main, before, notFound }
  window.addEventListener('hashchange', route)
  return route()
}

async function route() {
  if (current) current.leave()
  const life = new PageLife()
  current = life
  const { routes, main, before, notFound } = started
  const hash = location.hash || '#/worklist'
  const redirect = await before(hash)
  if (life.left) return // another navigation started meanwhile
  if (redirect) {
    go(redirect)
    return
  }
  main.replaceChildren()
  const match = routes.map(([pattern, page]) => [pattern.exec(hash), page]).find(([m]) => m)
  if (!match) {
    notFound(main)
  } else {
    const [m, page] = match
    try {
      const cleanup = await page(main, life, ...m.slice(1))
      if (typeof cleanup === 'function') life.onLeave(cleanup)
    } catch (err) {
      if (life.left) return
      console.error(err)
      main.append(errorText(err))
    }
  }
  if (life.left) return
  const title = main.querySelector('h1')
  document.title = title ? `${title.textContent} — NeuroNav` : 'NeuroNav'
  main.focus({ preventScroll: true })
}

function errorText(err) {
  const p = document.createElement('p')
  p.className = 'error'
  p.setAttribute('role', 'alert')
  p.textContent = `This page could not be shown: ${err.message || err}`
  return p
}
