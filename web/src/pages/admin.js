// Administration: users (verify professionals, roles, disable/enable), hospital connections (DICOM nodes,
// HL7 / FHIR destinations, deliveries) and the audit log with filters.
import { get, post } from '../api.js'
import { can } from '../session.js'
import { field, fmtDate, h, say } from '../ui.js'
import { connectionsSections } from './connections.js'

const ROLES = ['technician', 'radiologist', 'neurologist', 'admin']

export function adminPage(main, life) {
  main.append(h('h1', {}, 'Administration'))
  if (!can('user:manage') && !can('audit:read')) {
    main.append(h('p', { class: 'error', role: 'alert' }, 'This page is for administrators.'))
    return
  }
  if (can('user:manage')) main.append(usersSection(life.signal))
  if (can('settings:manage')) main.append(...connectionsSections(life.signal))
  if (can('audit:read')) main.append(auditSection(life.signal))
}

function usersSection(signal) {
  const stateSel = h('select', {}, ...['pending', 'active', 'disabled', ''].map((s) => h('option', { value: s }, s || 'any')))
  const q = h('input', { type: 'search', maxlength: 100 })
  const list = h('div', { class: 'table-wrap' })
  const secret = h('p', { class: 'notice', role: 'status', hidden: true })
  const form = h(
    'form',
    { class: 'filters', role: 'search', 'aria-label': 'Filter users' },
    field('State', stateSel),
    field('Name or e-mail', q),
    h('button', { type: 'submit' }, 'Apply'),
  )
  form.addEventListener('submit', (e) => {
    e.preventDefault()
    load()
  })
  let latest = 0 // only the newest load paints (a late answer would repaint over the reader's input)
  async function load() {
    const call = ++latest
    const params = new URLSearchParams({ limit: 100 })
    if (stateSel.value) params.set('state', stateSel.value)
    if (q.value.trim()) params.set('q', q.value.trim())
    try {
      const page = await get(`/api/admin/users?${params}`, { signal })
      if (signal.aborted || call !== latest) return
      render(page.items || [])
    } catch (err) {
      list.replaceChildren(h('p', { class: 'error', role: 'alert' }, err.message))
    }
  }
  async function act(promise, done) {
    try {
      await promise
      say(done)
      load()
    } catch (err) {
      say(err.message, 'error')
    }
  }
  function render(users) {
    if (!users.length) {
      list.replaceChildren(h('p', { class: 'empty' }, 'No users match.'))
      return
    }
    const rows = users.map((u) => {
      const cells = []
      if (u.state === 'pending') {
        const lic = h('input', { type: 'text', value: u.licence_number || '', 'aria-label': `Licence number of ${u.display_name}` })
        const role = h(
          'select',
          { 'aria-label': `Role of ${u.display_name}` },
          ...ROLES.map((r) => h('option', { value: r, selected: r === u.role }, r)),
        )
        const verify = h('button', { type: 'button', class: 'small primary' }, 'Verify')
        verify.addEventListener('click', () =>
          act(
            post(`/api/admin/users/${u.id}/verify`, { licence_number: lic.value.trim(), role: role.value }),
            `${u.display_name} verified.`,
          ),
        )
        cells.push(lic, role, verify)
      } else {
        const role = h(
          'select',
          { 'aria-label': `Role of ${u.display_name}` },
          ...ROLES.map((r) => h('option', { value: r, selected: r === u.role }, r)),
        )
        role.addEventListener('change', () =>
          act(post(`/api/admin/users/${u.id}/role`, { role: role.value }), `Role changed to ${role.value}.`),
        )
        cells.push(role)
        if (u.state === 'active') {
          const dis = h('button', { type: 'button', class: 'small danger' }, 'Disable')
          dis.addEventListener('click', () => {
            const reason = prompt(`Why disable ${u.display_name}?`)
            if (reason && reason.trim())
              act(post(`/api/admin/users/${u.id}/disable`, { reason: reason.trim() }), `${u.display_name} disabled.`)
          })
          cells.push(dis)
        } else if (u.state === 'disabled') {
          const en = h('button', { type: 'button', class: 'small' }, 'Enable')
          en.addEventListener('click', () => act(post(`/api/admin/users/${u.id}/enable`), `${u.display_name} enabled.`))
          cells.push(en)
        }
      }
      const pw = h('button', { type: 'button', class: 'small', 'aria-label': `Reset password of ${u.display_name}` }, 'Reset password')
      pw.addEventListener('click', async () => {
        if (!confirm(`Give ${u.display_name} a new one-time password? Their sessions end.`)) return
        try {
          const res = await post(`/api/admin/users/${u.id}/password/reset`)
          secret.replaceChildren(
            h('strong', {}, `One-time password for ${u.display_name}: `),
            h('code', {}, res.one_time_password),
            h('span', {}, ' — give it by a safe channel; it is shown only now and must be changed at the next sign-in.'),
          )
          secret.hidden = false
          load()
        } catch (err) {
          say(err.message, 'error')
        }
      })
      cells.push(pw)
      if (u.totp_enrolled && u.role !== 'admin') {
        const tr = h(
          'button',
          { type: 'button', class: 'small', 'aria-label': `Reset second factor of ${u.display_name}` },
          'Reset second factor',
        )
        tr.addEventListener('click', () => {
          if (confirm(`Remove the second factor of ${u.display_name}? They enrol a new one.`))
            act(post(`/api/admin/users/${u.id}/totp/reset`), `Second factor of ${u.display_name} removed.`)
        })
        cells.push(tr)
      }
      return h(
        'tr',
        { dataset: { userId: u.id } },
        h('td', { 'data-label': 'Name' }, u.display_name),
        h('td', { 'data-label': 'E-mail' }, u.email),
        h('td', { 'data-label': 'Role' }, u.role),
        h('td', { 'data-label': 'State' }, u.state),
        h('td', { 'data-label': 'Licence' }, u.licence_number || '—'),
        h('td', { 'data-label': 'Second factor' }, u.totp_enrolled ? 'yes' : 'no'),
        h('td', { 'data-label': 'Actions', class: 'actions' }, ...cells),
      )
    })
    list.replaceChildren(
      h(
        'table',
        {},
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            ...['Name', 'E-mail', 'Role', 'State', 'Licence', 'Second factor', 'Actions'].map((t) => h('th', { scope: 'col' }, t)),
          ),
        ),
        h('tbody', {}, ...rows),
      ),
    )
  }
  load()
  return h('section', { 'aria-labelledby': 'users-h' }, h('h2', { id: 'users-h' }, 'Users'), form, secret, list)
}

function auditSection(signal) {
  const action = h('input', { type: 'text', maxlength: 61, placeholder: 'login, report.*' })
  const outcome = h('select', {}, ...['', 'success', 'failure', 'denied'].map((s) => h('option', { value: s }, s || 'any')))
  const actor = h('input', { type: 'text', maxlength: 32 })
  const since = h('input', { type: 'datetime-local' })
  const until = h('input', { type: 'datetime-local' })
  const list = h('div', { class: 'table-wrap' })
  const chain = h('p', { class: 'muted' })
  const verify = h('button', { type: 'button' }, 'Verify the hash chain')
  verify.addEventListener('click', async () => {
    try {
      const v = await get('/api/audit/verify', { signal })
      chain.textContent = v.intact
        ? `Intact: ${v.events} events verified.`
        : `Broken at event ${v.first_broken.seq}: ${v.first_broken.problem}`
    } catch (err) {
      chain.textContent = err.message
    }
  })
  const form = h(
    'form',
    { class: 'filters', role: 'search', 'aria-label': 'Filter the audit log' },
    field('Action', action),
    field('Outcome', outcome),
    field('Actor id', actor),
    field('From', since),
    field('Until', until),
    h('button', { type: 'submit' }, 'Apply'),
  )
  form.addEventListener('submit', (e) => {
    e.preventDefault()
    load()
  })
  async function load() {
    const params = new URLSearchParams({ limit: 100 })
    if (action.value.trim()) params.set('action', action.value.trim())
    if (outcome.value) params.set('outcome', outcome.value)
    if (actor.value.trim()) params.set('actor', actor.value.trim())
    if (since.value) params.set('since', new Date(since.value).toISOString())
    if (until.value) params.set('until', new Date(until.value).toISOString())
    try {
      const page = await get(`/api/audit?${params}`, { signal })
      const rows = (page.items || []).map((e) =>
        h(
          'tr',
          {},
          h('td', { 'data-label': '#' }, e.seq),
          h('td', { 'data-label': 'When' }, fmtDate(e.at)),
          h(
            'td',
            { 'data-label': 'Who', title: e.actor_id || '' },
            e.actor_role === 'system'
              ? `NeuroNav ${e.actor_id || 'system'} (system)`
              : e.actor_id
                ? `${e.actor_name || 'deleted account'} (${e.actor_role || '—'})`
                : 'anonymous',
          ),
          h('td', { 'data-label': 'From' }, e.client || '—'),
          h('td', { 'data-label': 'Action' }, e.action),
          h(
            'td',
            { 'data-label': 'Target', title: e.target_id || '' },
            e.target_id ? `${e.target_type || ''} ${e.target_name || e.target_id}` : '—',
          ),
          h('td', { 'data-label': 'Outcome' }, e.outcome),
        ),
      )
      list.replaceChildren(
        rows.length
          ? h(
              'table',
              {},
              h(
                'thead',
                {},
                h('tr', {}, ...['#', 'When', 'Who', 'From', 'Action', 'Target', 'Outcome'].map((t) => h('th', { scope: 'col' }, t))),
              ),
              h('tbody', {}, ...rows),
            )
          : h('p', { class: 'empty' }, 'No events match.'),
      )
    } catch (err) {
      list.replaceChildren(h('p', { class: 'error', role: 'alert' }, err.message))
    }
  }
  load()
  return h(
    'section',
    { 'aria-labelledby': 'audit-h' },
    h('h2', { id: 'audit-h' }, 'Audit log'),
    form,
    h('div', { class: 'actions' }, verify),
    chain,
    list,
  )
}
