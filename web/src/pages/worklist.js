// The worklist: studies with detected tumours first, status and progress, filters, search, pages;
// upload with progress for those who may upload.
import { get, upload } from '../api.js'
import { can } from '../session.js'
import { field, fmtDate, h, progressBar, say, studyDate } from '../ui.js'

const PAGE = 25
const STATES = ['', 'received', 'queued', 'running', 'done', 'failed']

// While a study is being analysed the list is fetched again every 2 s, until the page is left (the
// timer and the request in flight belong to `life`, router.js).
export function worklistPage(main, life) {
  const state = { offset: 0, cancelPoll: () => {}, latest: 0 }
  const showId = can('study:read') // the identity is shown to (and searchable by) the readers of studies
  const search = h('input', {
    type: 'search',
    name: 'q',
    maxlength: 100,
    placeholder: showId ? 'Name, MRN, accession, pseudonym or description' : 'Pseudonym or description',
  })
  const stateSel = h('select', { name: 'state' }, ...STATES.map((s) => h('option', { value: s }, s || 'any')))
  const flagSel = h(
    'select',
    { name: 'flagged' },
    h('option', { value: '' }, 'all'),
    h('option', { value: 'true' }, 'tumour detected'),
    h('option', { value: 'false' }, 'no tumour detected'),
  )
  const filters = h(
    'form',
    { class: 'filters', role: 'search', 'aria-label': 'Filter studies' },
    field('Search', search),
    field('Status', stateSel),
    field('AI finding', flagSel),
    h('button', { type: 'submit' }, 'Apply'),
  )
  const table = h('div', { class: 'table-wrap' })
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' })
  filters.addEventListener('submit', (e) => {
    e.preventDefault()
    state.offset = 0
    refresh()
  })
  stateSel.addEventListener('change', () => filters.requestSubmit())
  flagSel.addEventListener('change', () => filters.requestSubmit())

  main.append(h('h1', {}, 'Worklist'))
  if (can('study:upload')) main.append(uploadPanel(() => refresh()))
  main.append(filters, table, pager)

  async function refresh() {
    state.cancelPoll()
    const call = ++state.latest // only the newest refresh paints and polls
    const params = new URLSearchParams({ limit: PAGE, offset: state.offset })
    if (search.value.trim()) params.set('q', search.value.trim())
    if (stateSel.value) params.set('state', stateSel.value)
    if (flagSel.value) params.set('flagged', flagSel.value)
    let page
    try {
      page = await get(`/api/studies?${params}`, { signal: life.signal })
    } catch (err) {
      if (call !== state.latest) return
      table.replaceChildren(h('p', { class: 'error', role: 'alert' }, err.message))
      return
    }
    if (call !== state.latest) return
    renderTable(page)
    const active = page.items.some((s) => ['queued', 'running', 'received'].includes(s.state))
    if (active) state.cancelPoll = life.setTimeout(refresh, 2000)
  }

  function renderTable(page) {
    if (!page.items.length) {
      table.replaceChildren(h('p', { class: 'empty' }, 'No studies match.'))
      pager.replaceChildren()
      return
    }
    const rows = page.items.map((s) => studyRow(s))
    table.replaceChildren(
      h(
        'table',
        { class: 'worklist' },
        h('caption', { class: 'sr-only' }, `Studies ${page.offset + 1}–${page.offset + page.items.length} of ${page.total}`),
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            ...[
              'AI finding',
              'Patient',
              ...(showId ? ['MRN', 'Birth date', 'Accession'] : []),
              'Study date',
              'Description',
              'Sequences',
              'Status',
              'Report',
              'Order',
              'Uploaded',
              '',
            ].map((t) => h('th', { scope: 'col' }, t)),
          ),
        ),
        h('tbody', {}, ...rows),
      ),
    )
    const prev = h('button', { type: 'button', disabled: page.offset === 0 }, 'Previous')
    const next = h('button', { type: 'button', disabled: page.offset + page.items.length >= page.total }, 'Next')
    prev.addEventListener('click', () => {
      state.offset = Math.max(0, state.offset - PAGE)
      refresh()
    })
    next.addEventListener('click', () => {
      state.offset += PAGE
      refresh()
    })
    pager.replaceChildren(prev, h('span', {}, `${page.offset + 1}–${page.offset + page.items.length} of ${page.total}`), next)
  }

  function studyRow(s) {
    const a = s.analysis
    let status = h('span', { class: `badge state-${s.state}` }, s.state)
    if (a && (a.state === 'running' || a.state === 'queued')) {
      status = h(
        'div',
        { class: 'status-cell' },
        status,
        progressBar(a.progress, `Analysis progress of study ${s.patient_pseudonym || s.id}`),
        h('small', {}, a.stage || a.state),
      )
    } else if (a && a.state === 'failed') {
      status = h('div', { class: 'status-cell' }, status, h('small', { class: 'error-text' }, a.error || 'failed'))
    }
    // readers open the study; a technician opens the images of their upload to check their quality
    const open = (can('study:read') || can('study:images')) && s.state === 'done'
    const [openText, openLabel] = can('study:read') ? ['Open', 'Open study'] : ['View images', 'View the images of study']
    return h(
      'tr',
      { dataset: { studyId: s.id }, class: s.flagged ? 'flagged' : '' },
      h(
        'td',
        { 'data-label': 'AI finding' },
        s.flagged ? h('span', { class: 'flag' }, 'Tumour detected') : s.state === 'done' ? 'none' : '—',
      ),
      h('td', { 'data-label': 'Patient' }, s.patient_name ? personName(s.patient_name) : s.patient_pseudonym || '—'),
      ...(showId
        ? [
            h('td', { 'data-label': 'MRN' }, s.patient_id || '—'),
            h('td', { 'data-label': 'Birth date' }, studyDate(s.patient_birth_date)),
            h('td', { 'data-label': 'Accession' }, s.accession_number || '—'),
          ]
        : []),
      h('td', { 'data-label': 'Study date' }, studyDate(s.study_date)),
      h('td', { 'data-label': 'Description' }, s.description || '—'),
      h('td', { 'data-label': 'Sequences' }, (s.sequences || []).join(', ') || '—'),
      h('td', { 'data-label': 'Status' }, status),
      h('td', { 'data-label': 'Report' }, s.report_status || '—'),
      h('td', { 'data-label': 'Order' }, s.order_state || '—'),
      h('td', { 'data-label': 'Uploaded' }, fmtDate(s.uploaded_at)),
      h(
        'td',
        {},
        open
          ? h('a', { class: 'button', href: `#/study/${s.id}`, 'aria-label': `${openLabel} ${s.patient_pseudonym || s.id}` }, openText)
          : null,
      ),
    )
  }

  refresh()
}

// DICOM PN "FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX" as a worklist shows it: "FAMILY, Given Middle"
function personName(pn) {
  const [family = '', given = '', middle = ''] = pn.split('=')[0].split('^')
  const rest = [given, middle].filter(Boolean).join(' ')
  return family && rest ? `${family.toUpperCase()}, ${rest}` : family || rest || '—'
}

function uploadPanel(onDone) {
  const files = h('input', { type: 'file', name: 'files', multiple: true, accept: '.dcm,.zip,application/dicom,application/zip,*/*' })
  const bar = h('div', { class: 'upload-progress', hidden: true })
  const message = h('p', { class: 'upload-message', role: 'alert', hidden: true })
  const button = h('button', { type: 'submit', class: 'primary' }, 'Upload')
  const form = h(
    'form',
    { class: 'card upload', 'aria-label': 'Upload a study' },
    h('h2', {}, 'Upload a study'),
    field('Study files (DICOM files or a zip)', files, 'One study at a time; it is analysed automatically.'),
    button,
    bar,
    message,
  )
  form.addEventListener('submit', async (e) => {
    e.preventDefault()
    message.hidden = true
    if (!files.files.length) {
      message.textContent = 'Choose the files of one study first.'
      message.className = 'upload-message error'
      message.hidden = false
      return
    }
    button.disabled = true
    bar.hidden = false
    const show = (f, label) => bar.replaceChildren(progressBar(f, 'Upload progress'), h('small', {}, label))
    show(0, 'Uploading…')
    try {
      const res = await upload('/api/studies', files.files, (f) =>
        show(f, f < 1 ? `Uploading… ${Math.round(f * 100)} %` : 'Checking the files…'),
      )
      bar.hidden = true
      message.className = 'upload-message ok'
      message.textContent = res.created
        ? `Study received (${res.study.n_files} files, ${res.study.sequences.join(', ') || 'no sequence recognised'}); analysis ${res.analysis_queued ? 'queued' : 'already available'}.`
        : 'This study was uploaded before; the earlier upload is shown.'
      message.hidden = false
      say('Upload complete.')
      form.reset()
      onDone(res)
    } catch (err) {
      bar.hidden = true
      message.className = 'upload-message error'
      message.textContent = `The upload was refused: ${err.message}`
      message.hidden = false
    } finally {
      button.disabled = false
    }
  })
  return form
}
