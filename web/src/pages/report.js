// The report: AI findings, measurements, recommendations, narrative; the radiologist edits and signs
// (amends a signed one); downloads in every format the reader may export.
import { ApiError, download, get, post } from '../api.js'
import { can, session } from '../session.js'
import { signDialog } from '../signdialog.js'
import { fmtDate, h, num, say } from '../ui.js'

const DOWNLOADS = [
  ['pdf', 'PDF'],
  ['seg', 'DICOM SEG'],
  ['sr', 'DICOM SR'],
  ['fhir', 'HL7 FHIR'],
  ['hl7', 'HL7 v2'],
  ['json', 'JSON'],
]
// UCUM → as printed (the PDF does the same): mm², and no "1" after a ratio or probability
const UNITS = { mL: ' mL', mm: ' mm', mm2: ' mm²', '%': ' %', 1: '' }
const NARRATIVE = [
  ['clinical_information', 'Clinical information'],
  ['findings_text', 'Findings'],
  ['impression', 'Impression'],
  ['radiologist_comment', "Radiologist's comment"],
]

export function reportPage(main, life, reportId) {
  main.append(h('h1', {}, `Report ${reportId}`))
  const box = h('section', { class: 'report-box full' })
  main.append(box)
  reportPanel(box, reportId, { compact: false, signal: life.signal })
}

// signal: the page's (router.js): the report's reads stop when the page is left. Writes (save, sign,
// amend) are carried out once clicked; their answer paints only this panel.
export function reportPanel(container, reportId, { compact, signal }) {
  async function reload() {
    if (!reportId) {
      container.replaceChildren(h('h2', {}, 'Report'), h('p', { class: 'muted' }, 'No report yet.'))
      return
    }
    let r
    try {
      r = await get(`/api/reports/${reportId}`, { signal })
    } catch (err) {
      const text = err instanceof ApiError && err.status === 403 ? 'The report is not open to you yet (it is not signed).' : err.message
      container.replaceChildren(h('h2', {}, 'Report'), h('p', { class: 'muted' }, text))
      return
    }
    render(r)
  }

  function render(r) {
    const signed = !!r.signature
    const pd = r.ai_findings.primary_detection
    const sf = r.ai_findings.secondary_findings
    const parts = [
      h('h2', {}, 'Report'),
      r.amendment_reason ? h('p', { class: 'amendment' }, `Amendment of version ${r.supersedes_version}: ${r.amendment_reason}`) : null,
      signed && r.signature.meaning ? h('p', { class: 'signature-meaning' }, `Signature meaning: ${r.signature.meaning}`) : null,
      h(
        'p',
        { class: 'report-status' },
        h('span', { class: `badge status-${r.status}` }, r.status),
        ` version ${r.version}`,
        signed ? ` · signed by ${r.signature.signed_by} on ${fmtDate(r.signature.signed_at)}` : ' · not signed (draft)',
        compact ? [' · ', h('a', { href: `#/report/${r.report_id}` }, 'Open the full report')] : null,
      ),
      h('h3', {}, 'AI findings'),
      h(
        'ul',
        { class: 'findings' },
        h(
          'li',
          {},
          pd.detected
            ? `Tumour detected (probability ${num(pd.probability, 2)})`
            : `No tumour detected (probability ${num(pd.probability, 2)})`,
        ),
        pd.detected
          ? h('li', {}, `Classification: ${pd.classification || '—'} (confidence ${num(pd.classification_confidence, 2)})`)
          : null,
        pd.detected
          ? h(
              'li',
              {},
              `Whole tumour ${num(pd.volume_ml)} mL · ${pd.lesion_count} lesion(s) · largest ${num(pd.size_mm)} mm · ${pd.location || '—'}`,
            )
          : null,
        h(
          'li',
          {},
          `Oedema ${sf.oedema_present ? `${num(sf.oedema_ml)} mL` : 'none'} · midline shift ${num(sf.midline_shift_mm)} mm · ventricles ${sf.ventricular_status} · haemorrhage ${sf.haemorrhage_suspected ? `suspected (${num(sf.haemorrhage_ml)} mL)` : 'not suspected'}`,
        ),
      ),
    ]
    if (r.measurements.length) {
      const rows = (compact ? r.measurements.slice(0, 8) : r.measurements).map((m) =>
        h(
          'tr',
          {},
          h('th', { scope: 'row' }, m.label),
          h('td', {}, `${num(m.value, m.unit === 'mL' || m.unit === '1' ? 2 : 1)}${UNITS[m.unit] ?? ` ${m.unit}`}`),
        ),
      )
      parts.push(h('h3', {}, 'Measurements'), h('table', { class: 'measurements' }, h('tbody', {}, ...rows)))
      if (compact && r.measurements.length > 8)
        parts.push(h('p', { class: 'muted' }, `${r.measurements.length - 8} more in the full report.`))
    }
    if (r.change_versus_prior) {
      const c = r.change_versus_prior
      parts.push(h('h3', {}, 'Change versus prior'), h('p', {}, `${c.prior_date}: ${c.rano_category.replaceAll('_', ' ')}`))
    }
    if (r.recommendations.length) {
      parts.push(
        h('h3', {}, 'Recommendations (AI-generated suggestions)'),
        h('ul', {}, ...r.recommendations.map((x) => h('li', {}, `${x.text} (${x.urgency})`))),
      )
    }
    parts.push(h('h3', {}, 'Narrative'))
    const editable = can('report:edit') && !signed
    const areas = {}
    for (const [key, label] of NARRATIVE) {
      if (editable) {
        const id = `narrative-${key}`
        areas[key] = h('textarea', { id, rows: key === 'radiologist_comment' ? 3 : 4 })
        areas[key].value = r.narrative[key] || ''
        parts.push(h('div', { class: 'field' }, h('label', { for: id }, label), areas[key]))
      } else if (r.narrative[key]) {
        parts.push(h('h4', {}, label), h('p', { class: 'narrative' }, r.narrative[key]))
      }
    }
    const actions = h('div', { class: 'actions' })
    if (editable) {
      const save = h('button', { type: 'button' }, 'Save changes')
      save.addEventListener('click', async () => {
        const changes = {}
        for (const [key] of NARRATIVE) if (areas[key].value !== (r.narrative[key] || '')) changes[`/narrative/${key}`] = areas[key].value
        if (!Object.keys(changes).length) {
          say('Nothing changed.')
          return
        }
        try {
          render(await post(`/api/reports/${r.report_id}/edit`, { changes }))
          say('Report saved (the status is unchanged).')
        } catch (err) {
          say(`Not saved: ${err.message}`, 'error')
        }
      })
      actions.append(save)
    }
    if (editable && r.status === 'preliminary') {
      const review = h('button', { type: 'button' }, 'Mark reviewed')
      review.addEventListener('click', async () => {
        try {
          render(await post(`/api/reports/${r.report_id}/review`))
          say('Report marked reviewed.')
        } catch (err) {
          say(`Not marked: ${err.message}`, 'error')
        }
      })
      actions.append(review)
    }
    if (can('report:sign') && !signed) {
      const sign = h('button', { type: 'button', class: 'primary' }, 'Sign report…')
      sign.addEventListener('click', async () => {
        const signer = (session.user && session.user.display_name) || 'yourself'
        const credentials = await signDialog({ reportId: r.report_id, version: r.version, status: r.status, signer })
        if (!credentials) return
        try {
          render(await post(`/api/reports/${r.report_id}/sign`, credentials))
          say('Report signed.')
        } catch (err) {
          say(`Not signed: ${err.message}`, 'error')
        }
      })
      actions.append(sign)
    }
    if (can('report:amend') && signed) {
      const amend = h('button', { type: 'button' }, 'Amend')
      amend.addEventListener('click', async () => {
        const reason = prompt('Reason for the amendment:')
        if (!reason || !reason.trim()) return
        try {
          render(await post(`/api/reports/${r.report_id}/amend`, { reason: reason.trim() }))
          say('Amendment started: edit, then sign it.')
        } catch (err) {
          say(`Not amended: ${err.message}`, 'error')
        }
      })
      actions.append(amend)
    }
    const mayExport = can('report:export')
    const formats = mayExport ? DOWNLOADS : signed && can('report:read_final') ? DOWNLOADS.slice(0, 1) : []
    const downloads = formats.map(([fmt, label]) => {
      const b = h('button', { type: 'button', class: 'small', dataset: { format: fmt } }, `Download ${label}`)
      b.addEventListener('click', async () => {
        b.disabled = true
        try {
          const name = await download(`/api/reports/${r.report_id}/export/${fmt}`)
          say(`Downloaded ${name}.`)
        } catch (err) {
          say(`Download failed: ${err.message}`, 'error')
        } finally {
          b.disabled = false
        }
      })
      return b
    })
    parts.push(actions)
    if (downloads.length) parts.push(h('div', { class: 'downloads', role: 'group', 'aria-label': 'Downloads' }, ...downloads))
    const sent = h('div', { class: 'deliveries', 'aria-label': 'Where the outputs went' })
    parts.push(sent)
    parts.push(h('p', { class: 'disclaimer' }, (r.disclaimers || []).join(' ')))
    container.replaceChildren(...parts.filter(Boolean)) // (replaceChildren would write a null as "null")
    showDeliveries(sent, r.report_id)
  }

  // where the report's outputs went (HL7, FHIR, PACS), from the outbox
  async function showDeliveries(box, id) {
    let items
    try {
      items = await get(`/api/reports/${id}/deliveries`, { signal })
    } catch {
      return // not open to this reader: nothing to show
    }
    box.replaceChildren(
      h('h3', {}, 'Sent to'),
      items.length
        ? h(
            'ul',
            {},
            ...items.map((d) =>
              h(
                'li',
                {},
                `${d.destination} (${d.output}, v${d.report_version}): ${d.state}`,
                d.peer_status ? ` · ${d.peer_status}` : '',
                d.error ? ` · ${d.error}` : '',
              ),
            ),
          )
        : h('p', { class: 'muted' }, 'Not sent to any hospital system.'),
    )
  }

  // ready: settles once the first answer is shown (the study page loads its other images after it)
  const ready = reload()
  return { reload, ready }
}
