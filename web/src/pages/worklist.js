// The worklist: studies with detected tumours first, status and progress, filters, search, pages;
// upload with progress for those who may upload; search the PACS and pull a study (technicians and
// radiologists, /api/pacs).
import { get, post, upload } from '../api.js'
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
  if (can('study:upload') || can('analysis:start')) main.append(pacsPanel(() => refresh()))
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

// Search the PACS (C-FIND through /api/pacs/studies) and pull a study into NeuroNav for analysis
// (C-MOVE through /api/pacs/retrieve); the worklist is refreshed once a pulled study is received.
function pacsPanel(onPulled) {
  const inputs = {
    patient_id: h('input', { name: 'patient_id', maxlength: 64, autocomplete: 'off' }),
    name: h('input', { name: 'name', maxlength: 64, autocomplete: 'off' }),
    accession: h('input', { name: 'accession', maxlength: 16, autocomplete: 'off' }),
    date: h('input', { name: 'date', maxlength: 17, placeholder: 'YYYYMMDD or YYYYMMDD-YYYYMMDD', autocomplete: 'off' }),
  }
  const results = h('div', { class: 'table-wrap pacs-results', 'aria-live': 'polite' })
  const button = h('button', { type: 'submit' }, 'Search')
  const form = h(
    'form',
    { class: 'filters', role: 'search', 'aria-label': 'Search the PACS' },
    field('Patient ID', inputs.patient_id),
    field('Patient name', inputs.name, 'FAMILY^GIVEN; the beginning is enough'),
    field('Accession', inputs.accession),
    field('Study date', inputs.date),
    button,
  )
  const panel = h('details', { class: 'card pacs' }, h('summary', {}, 'Search PACS'), form, results)
  form.addEventListener('submit', async (e) => {
    e.preventDefault()
    const params = new URLSearchParams()
    for (const [key, input] of Object.entries(inputs)) if (input.value.trim()) params.set(key, input.value.trim())
    if (![...params.keys()].some((k) => k !== 'date')) {
      results.replaceChildren(h('p', { class: 'error', role: 'alert' }, 'Give a patient ID, a name or an accession number.'))
      return
    }
    button.disabled = true
    results.replaceChildren(h('p', {}, 'Searching the PACS…'))
    try {
      const found = await get(`/api/pacs/studies?${params}`)
      renderResults(found)
    } catch (err) {
      results.replaceChildren(h('p', { class: 'error', role: 'alert' }, `The PACS search failed: ${err.message}`))
    } finally {
      button.disabled = false
    }
  })

  function renderResults(found) {
    if (!found.studies.length) {
      results.replaceChildren(h('p', { class: 'empty' }, `No study at the PACS (${found.pacs}) matches.`))
      return
    }
    const rows = found.studies.map((s) => {
      const status = h('span', {}, s.held ? 'In NeuroNav' : '')
      const pull = h(
        'button',
        { type: 'button', 'aria-label': `Pull the study of ${studyDate(s.study_date)} ${s.study_description || ''}`.trim() },
        s.held ? 'Pull again' : 'Pull',
      )
      pull.addEventListener('click', async () => {
        pull.disabled = true
        status.textContent = 'Pulling from the PACS…'
        try {
          const res = await post('/api/pacs/retrieve', { study_uid: s.study_uid })
          status.textContent =
            res.state === 'received'
              ? `Received (${res.instances} instances); analysis ${res.analysis_id ? 'started' : 'pending'}.`
              : `Kept, not analysed: ${res.reason || res.state}`
          say('Study pulled from the PACS.')
          onPulled(res)
        } catch (err) {
          status.textContent = `The pull failed: ${err.message}`
          pull.disabled = false
        }
      })
      return h(
        'tr',
        { dataset: { studyUid: s.study_uid } },
        h('td', { 'data-label': 'Patient' }, personName(s.patient_name) || '—'),
        h('td', { 'data-label': 'Patient ID' }, s.patient_id || '—'),
        h('td', { 'data-label': 'Study date' }, studyDate(s.study_date)),
        h('td', { 'data-label': 'Description' }, s.study_description || '—'),
        h('td', { 'data-label': 'Modalities' }, s.modalities.join(', ') || '—'),
        h('td', { 'data-label': 'Accession' }, s.accession_number || '—'),
        h('td', { 'data-label': 'Images' }, s.instances ?? '—'),
        h('td', { 'data-label': 'Pull' }, pull, ' ', status),
      )
    })
    results.replaceChildren(
      h(
        'table',
        { class: 'worklist' },
        h('caption', {}, `Studies at the PACS (${found.pacs})${found.truncated ? ', the first ones only: narrow the search' : ''}`),
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            ...['Patient', 'Patient ID', 'Study date', 'Description', 'Modalities', 'Accession', 'Images', ''].map((t) =>
              h('th', { scope: 'col' }, t),
            ),
          ),
        ),
        h('tbody', {}, ...rows),
      ),
    )
  }
  return panel
}
