// Hospital connections (administrators, settings:manage): the DICOM nodes that send studies and receive
// results, the HL7 / FHIR destinations of the outbox, and the deliveries with their state and resend.
import { api, get, post } from '../api.js'
import { field, fmtDate, h, say } from '../ui.js'

const OUTPUTS = ['seg', 'sr', 'epdf', 'sc']
const WHEN = ['preliminary', 'final']
const EVENTS = ['preliminary', 'final', 'amendment']

function checkboxes(legend, values, checked) {
  const boxes = values.map((v) => h('input', { type: 'checkbox', value: v, checked: checked.includes(v) }))
  const set = h('fieldset', { class: 'field checks' }, h('legend', {}, legend), ...boxes.map((b, i) => h('label', {}, b, ` ${values[i]}`)))
  return { set, values: () => boxes.filter((b) => b.checked).map((b) => b.value) }
}

function table(headers, rows, empty) {
  if (!rows.length) return h('p', { class: 'empty' }, empty)
  return h('table', {}, h('thead', {}, h('tr', {}, ...headers.map((t) => h('th', { scope: 'col' }, t)))), h('tbody', {}, ...rows))
}

function cell(label, ...content) {
  return h('td', { 'data-label': label }, ...content)
}

export function connectionsSections(signal) {
  const deliveries = deliveriesSection(signal)
  return [nodesSection(signal), destinationsSection(signal, deliveries.load), deliveries.section]
}

function nodesSection(signal) {
  const list = h('div', { class: 'table-wrap' })
  const name = h('input', { required: true, maxlength: 64, pattern: '[A-Za-z0-9._\\-]+' })
  const ae = h('input', { required: true, maxlength: 16 })
  const host = h('input', { required: true, maxlength: 255 })
  const port = h('input', { type: 'number', required: true, min: 1, max: 65535, value: 104 })
  const incoming = h('input', { type: 'checkbox' })
  const sends = checkboxes('Results sent to it', OUTPUTS, [])
  const when = checkboxes('When', WHEN, ['final'])
  const form = h(
    'form',
    { class: 'filters', 'aria-label': 'Add a DICOM node' },
    field('Node name', name),
    field('AE title', ae),
    field('Host', host),
    field('Port', port),
    h('label', { class: 'field' }, incoming, ' May send studies to NeuroNav'),
    sends.set,
    when.set,
    h('button', { type: 'submit' }, 'Add node'),
  )
  form.addEventListener('submit', async (e) => {
    e.preventDefault()
    try {
      await post('/api/admin/dicom-nodes', {
        name: name.value.trim(),
        ae_title: ae.value.trim(),
        host: host.value.trim(),
        port: Number(port.value),
        incoming: incoming.checked,
        send: sends.values(),
        send_on: sends.values().length ? when.values() : [],
      })
      say(`DICOM node ${name.value.trim()} added.`)
      form.reset()
      load()
    } catch (err) {
      say(err.message, 'error')
    }
  })
  async function remove(node) {
    if (!window.confirm(`Remove the DICOM node ${node.name}? It may no longer send studies.`)) return
    try {
      await api('DELETE', `/api/admin/dicom-nodes/${encodeURIComponent(node.name)}`)
      say(`DICOM node ${node.name} removed.`)
      load()
    } catch (err) {
      say(err.message, 'error')
    }
  }
  async function load() {
    try {
      const nodes = await get('/api/admin/dicom-nodes', { signal })
      if (signal.aborted) return
      const rows = nodes.map((n) =>
        h(
          'tr',
          {},
          cell('Name', n.name),
          cell('AE title', n.ae_title),
          cell('Address', `${n.host}:${n.port}`),
          cell('Sends studies', n.incoming ? 'yes' : 'no'),
          cell('Receives', n.send.length ? `${n.send.join(', ')} (${n.send_on.join(', ') || 'never'})` : '—'),
          cell('', h('button', { type: 'button', 'aria-label': `Remove node ${n.name}`, onclick: () => remove(n) }, 'Remove')),
        ),
      )
      list.replaceChildren(table(['Name', 'AE title', 'Address', 'Sends studies', 'Receives', ''], rows, 'No DICOM node is registered.'))
    } catch (err) {
      list.replaceChildren(h('p', { class: 'error', role: 'alert' }, err.message))
    }
  }
  load()
  return h(
    'section',
    { 'aria-labelledby': 'nodes-h' },
    h('h2', { id: 'nodes-h' }, 'DICOM nodes'),
    h('p', { class: 'muted' }, 'PACS, scanners and workstations: who may send studies, and where results go.'),
    list,
    form,
  )
}

function destinationsSection(signal, onChange) {
  const list = h('div', { class: 'table-wrap' })
  const name = h('input', { required: true, maxlength: 64, pattern: '[A-Za-z0-9._\\-]+' })
  const kind = h(
    'select',
    {},
    h('option', { value: 'hl7' }, 'HL7 v2 over MLLP'),
    h('option', { value: 'fhir' }, 'FHIR REST'),
    h('option', { value: 'dicomweb' }, 'DICOMweb STOW-RS (PACS)'),
  )
  const host = h('input', { maxlength: 255 })
  const port = h('input', { type: 'number', min: 1, max: 65535, value: 2575 })
  const baseUrl = h('input', { type: 'url', maxlength: 500, placeholder: 'https://ehr.example.org/fhir/R4' })
  const token = h('input', { type: 'password', autocomplete: 'off', maxlength: 2000 })
  const identified = h('input', { type: 'checkbox', checked: true })
  const events = checkboxes('Send on', EVENTS, ['final', 'amendment'])
  const hl7Fields = h('div', { class: 'filters' }, field('MLLP host', host), field('MLLP port', port))
  const urlLabel = h('span', {}, 'FHIR base URL')
  const fhirFields = h('div', { class: 'filters', hidden: true }, field(urlLabel, baseUrl), field('Bearer token (optional)', token))
  const dicomOutputs = checkboxes('Outputs (DICOMweb)', OUTPUTS, ['seg', 'sr', 'epdf'])
  dicomOutputs.set.hidden = true
  kind.addEventListener('change', () => {
    hl7Fields.hidden = kind.value !== 'hl7'
    fhirFields.hidden = kind.value === 'hl7'
    dicomOutputs.set.hidden = kind.value !== 'dicomweb'
    urlLabel.textContent = kind.value === 'dicomweb' ? 'DICOMweb root (STOW-RS posts to /studies)' : 'FHIR base URL'
  })
  const form = h(
    'form',
    { 'aria-label': 'Add a destination' },
    h('div', { class: 'filters' }, field('Destination name', name), field('Kind', kind)),
    hl7Fields,
    fhirFields,
    dicomOutputs.set,
    events.set,
    h('label', { class: 'field' }, identified, " Clinical (carries the patient's identity; unticked: pseudonymous)"),
    h('button', { type: 'submit' }, 'Add destination'),
  )
  form.addEventListener('submit', async (e) => {
    e.preventDefault()
    const body = { name: name.value.trim(), kind: kind.value, events: events.values(), identified: identified.checked }
    if (kind.value === 'hl7') body.config = { host: host.value.trim(), port: Number(port.value) }
    else {
      body.config = { base_url: baseUrl.value.trim(), auth: token.value ? 'bearer' : 'none' }
      if (token.value) body.secrets = { token: token.value }
      if (kind.value === 'dicomweb') body.outputs = dicomOutputs.values()
    }
    try {
      await post('/api/admin/destinations', body)
      say(`Destination ${body.name} added.`)
      form.reset()
      kind.dispatchEvent(new Event('change'))
      load()
    } catch (err) {
      say(err.message, 'error')
    }
  })
  async function remove(d) {
    if (!window.confirm(`Remove the destination ${d.name} and its delivery records?`)) return
    try {
      await api('DELETE', `/api/admin/destinations/${encodeURIComponent(d.name)}`)
      say(`Destination ${d.name} removed.`)
      load()
      onChange()
    } catch (err) {
      say(err.message, 'error')
    }
  }
  async function load() {
    try {
      const items = await get('/api/admin/destinations', { signal })
      if (signal.aborted) return
      const rows = items.map((d) =>
        h(
          'tr',
          {},
          cell('Name', d.name),
          cell('Kind', d.kind),
          cell('Where', d.config.base_url || (d.config.host ? `${d.config.host}:${d.config.port}` : '—')),
          cell('Outputs', (d.outputs || []).join(', ') || '—'),
          cell('Send on', (d.events || []).join(', ')),
          cell('Identity', d.identified ? 'clinical' : 'pseudonymous'),
          cell('', h('button', { type: 'button', 'aria-label': `Remove destination ${d.name}`, onclick: () => remove(d) }, 'Remove')),
        ),
      )
      list.replaceChildren(table(['Name', 'Kind', 'Where', 'Outputs', 'Send on', 'Identity', ''], rows, 'No destination is configured.'))
    } catch (err) {
      list.replaceChildren(h('p', { class: 'error', role: 'alert' }, err.message))
    }
  }
  load()
  return h(
    'section',
    { 'aria-labelledby': 'destinations-h' },
    h('h2', { id: 'destinations-h' }, 'Destinations (HL7, FHIR)'),
    h('p', { class: 'muted' }, 'Where signed reports are delivered: the RIS or EHR, by HL7 v2 ORU or a FHIR transaction.'),
    list,
    form,
  )
}

function deliveriesSection(signal) {
  const list = h('div', { class: 'table-wrap' })
  const stateSel = h('select', {}, ...['', 'queued', 'sending', 'delivered', 'failed'].map((s) => h('option', { value: s }, s || 'any')))
  stateSel.addEventListener('change', () => load())
  async function resend(d) {
    try {
      await post(`/api/admin/deliveries/${encodeURIComponent(d.id)}/resend`)
      say(`Delivery of ${d.report_id} v${d.report_version} to ${d.destination} queued again.`)
      load()
    } catch (err) {
      say(err.message, 'error')
    }
  }
  async function load() {
    const params = new URLSearchParams({ limit: 100 })
    if (stateSel.value) params.set('state', stateSel.value)
    try {
      const items = await get(`/api/admin/deliveries?${params}`, { signal })
      if (signal.aborted) return
      const rows = items.map((d) =>
        h(
          'tr',
          {},
          cell('When', fmtDate(d.created_at)),
          cell('Report', `${d.report_id} v${d.report_version}`),
          cell('To', `${d.destination} (${d.output})`),
          cell('State', d.state),
          cell('Attempts', d.attempts),
          cell('Peer', [d.peer_status, d.error].filter(Boolean).join(': ') || '—'),
          cell(
            '',
            d.state === 'failed' || d.state === 'delivered' ? h('button', { type: 'button', onclick: () => resend(d) }, 'Resend') : null,
          ),
        ),
      )
      list.replaceChildren(table(['When', 'Report', 'To', 'State', 'Attempts', 'Peer', ''], rows, 'Nothing has been delivered yet.'))
    } catch (err) {
      list.replaceChildren(h('p', { class: 'error', role: 'alert' }, err.message))
    }
  }
  load()
  const section = h(
    'section',
    { 'aria-labelledby': 'deliveries-h' },
    h('h2', { id: 'deliveries-h' }, 'Deliveries'),
    h('div', { class: 'filters' }, field('Delivery state', stateSel)),
    list,
  )
  return { section, load }
}
