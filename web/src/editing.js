// Correcting the AI's segmentation (study page, side panel): which version is shown ("AI original" or
// "Edited v2 by Dr X"), viewing the AI's original, and for a radiologist (report:edit) per-lesion
// Accept / Reject and an "Edit mask" mode on NiiVue's drawing layer (pen per BraTS label, eraser, brush
// size, undo). "Save as new version" sends the drawing as a gzipped NIfTI (NiiVue writes it on the
// reference grid, the grid of the label map) to POST /api/studies/{id}/segmentations; the server measures
// the report again from it and the page reloads its lesions, measurements and report.
import { NVImage } from '@niivue/niivue'
import { post } from './api.js'
import { go } from './router.js'
import { can } from './session.js'
import { fmtDate, h, num, say } from './ui.js'
import { LABELS, imageUrl } from './viewer.js'

const PENS = [...LABELS.map((l) => ({ value: l.value, name: l.name })), { value: 0, name: 'Eraser' }]

export function versionText(v) {
  if (!v || v.version === 1) return 'AI original'
  return `Edited v${v.version} by ${v.author}${v.created_at ? `, ${fmtDate(v.created_at)}` : ''}`
}

async function gzip(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream('gzip'))
  return new Uint8Array(await new Response(stream).arrayBuffer())
}

function base64(bytes) {
  let s = ''
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000))
  return btoa(s)
}

// The section, or null when the AI's segmentation is not open to this reader. `reload`: called once a
// new version is saved (the page opens the study again, without reloading the app).
export function segmentationSection({ studyId, manifest, viewer, reload = () => go(location.hash) }) {
  const seg = manifest.segmentations
  if (!seg || !manifest.images.includes('segmentation')) return null
  const current = seg.versions.find((v) => v.current) || seg.versions[0]
  const signed = ['final', 'amended'].includes(manifest.report_status)
  const editor = can('report:edit') && !signed
  const nv = viewer.nv
  const status = h('p', { class: 'seg-version', dataset: { version: String(current.version) } }, `Segmentation: ${versionText(current)}`)

  // -- view the AI's original (or back to the current version) ---------------------------------------
  let showing = 'segmentation'
  const original = h('button', { type: 'button', 'aria-pressed': 'false', disabled: current.version === 1 }, 'View AI original')
  async function showOverlay(image) {
    const vol = await NVImage.loadFromUrl({ url: imageUrl(studyId, image), name: `${image}.nii.gz`, opacity: viewer.overlayOpacity })
    const i = nv.volumes.indexOf(viewer.segmentation)
    if (i < 0) return
    nv.volumes[i] = vol
    nv.setVolume(vol, i)
    viewer.segmentation = vol
    viewer.applyLabels()
    showing = image
  }
  original.addEventListener('click', async () => {
    const toOriginal = showing === 'segmentation'
    original.disabled = true
    try {
      await showOverlay(toOriginal ? 'segmentation-ai' : 'segmentation')
      original.setAttribute('aria-pressed', String(toOriginal))
      original.textContent = toOriginal ? `View ${current.version === 1 ? 'current' : `v${current.version}`}` : 'View AI original'
      status.textContent = `Segmentation: ${toOriginal ? 'AI original (shown)' : versionText(current)}`
    } catch (err) {
      say(`The segmentation could not be shown: ${err.message || err}`, 'error')
    } finally {
      original.disabled = false
    }
  })

  const section = h(
    'section',
    { class: 'segmentation', 'aria-label': 'Segmentation review' },
    h('h2', {}, 'Segmentation'),
    status,
    original,
  )
  if (!editor) {
    if (can('report:edit') && signed)
      section.append(h('p', { class: 'muted' }, 'The report is signed: amend it to correct the segmentation.'))
    return section
  }

  async function save(body, what) {
    try {
      const out = await post(`/api/studies/${encodeURIComponent(studyId)}/segmentations`, { parent_version: current.version, ...body })
      say(`${what}: saved as segmentation version ${out.current_version}; measurements and report recomputed.`)
      reload(out)
    } catch (err) {
      say(`Not saved: ${err.message || err}`, 'error')
      throw err
    }
  }

  // -- per-lesion Accept / Reject ------------------------------------------------------------------------
  const decisions = new Map() // lesion index → 'accept' | 'reject'
  const saveDecisions = h('button', { type: 'button', class: 'primary', disabled: true }, 'Save lesion decisions')
  const rows = (manifest.lesions || []).map((l) => {
    const buttons = ['accept', 'reject'].map((d) =>
      h(
        'button',
        { type: 'button', 'aria-pressed': 'false', dataset: { lesion: String(l.index), decision: d } },
        d === 'accept' ? 'Accept' : 'Reject',
      ),
    )
    for (const b of buttons) {
      b.addEventListener('click', () => {
        const d = b.dataset.decision
        if (decisions.get(l.index) === d) decisions.delete(l.index)
        else decisions.set(l.index, d)
        for (const x of buttons) x.setAttribute('aria-pressed', String(decisions.get(l.index) === x.dataset.decision))
        saveDecisions.disabled = decisions.size === 0
      })
    }
    return h(
      'li',
      {},
      h('span', {}, `Lesion ${l.index}: ${num(l.volume_ml)} mL, ${l.location} `),
      h('span', { class: 'decide', role: 'group', 'aria-label': `Lesion ${l.index}` }, ...buttons),
    )
  })
  saveDecisions.addEventListener('click', async () => {
    const pick = (d) => [...decisions].filter(([, v]) => v === d).map(([k]) => k)
    saveDecisions.disabled = true
    try {
      await save({ accepted_lesions: pick('accept'), rejected_lesions: pick('reject') }, 'Lesion decisions')
    } catch {
      saveDecisions.disabled = false
    }
  })
  if (rows.length) section.append(h('h3', {}, 'AI lesions'), h('ul', { class: 'lesion-review' }, ...rows), saveDecisions)

  // -- Edit mask: NiiVue's drawing layer -------------------------------------------------------------------
  const pen = h('select', { id: 'seg-pen', 'aria-label': 'Pen' }, ...PENS.map((p) => h('option', { value: p.value }, p.name)))
  const size = h('input', { id: 'seg-size', type: 'number', min: 1, max: 20, value: 3, 'aria-label': 'Brush size (voxels)' })
  const undo = h('button', { type: 'button' }, 'Undo')
  const saveMask = h('button', { type: 'button', class: 'primary' }, 'Save as new version')
  const cancel = h('button', { type: 'button' }, 'Cancel')
  const tools = h(
    'div',
    { class: 'group seg-tools', hidden: true },
    h('label', { for: 'seg-pen' }, 'Pen '),
    pen,
    h('label', { for: 'seg-size' }, ' Brush size '),
    size,
    undo,
    saveMask,
    cancel,
  )
  const editBtn = h('button', { type: 'button', 'aria-pressed': 'false' }, 'Edit mask')
  function setPen() {
    nv.opts.penSize = Math.max(1, Math.min(20, Number(size.value) || 1))
    nv.setPenValue(Number(pen.value), false)
  }
  function stopEditing() {
    nv.setDrawingEnabled(false)
    nv.closeDrawing()
    if (viewer.segmentation) viewer.applyLabels()
    tools.hidden = true
    editBtn.setAttribute('aria-pressed', 'false')
    editBtn.disabled = false
  }
  editBtn.addEventListener('click', async () => {
    editBtn.disabled = true
    try {
      if (viewer.background !== 'reference') await viewer.setBackground('reference') // the label map's grid
      if (showing !== 'segmentation') await showOverlay('segmentation')
      if (!nv.loadDrawing(viewer.segmentation)) throw new Error('the segmentation is not on the reference grid')
      viewer.segmentation.opacity = 0 // the drawing shows the labels while editing
      nv.setDrawOpacity(viewer.overlayOpacity || 0.5)
      nv.updateGLVolume()
      nv.setDrawingEnabled(true)
      setPen()
      tools.hidden = false
      editBtn.setAttribute('aria-pressed', 'true')
      say('Editing the mask: draw with the pen, erase with the eraser; Undo steps back.')
    } catch (err) {
      editBtn.disabled = false
      say(`The mask cannot be edited: ${err.message || err}`, 'error')
    }
  })
  pen.addEventListener('change', setPen)
  size.addEventListener('change', setPen)
  undo.addEventListener('click', () => nv.drawUndo())
  cancel.addEventListener('click', stopEditing)
  saveMask.addEventListener('click', async () => {
    saveMask.disabled = true
    try {
      const bytes = await nv.saveImage({ filename: '', isSaveDrawing: true, volumeByIndex: 0 })
      if (!(bytes instanceof Uint8Array)) throw new Error('NiiVue wrote no drawing')
      await save({ labels_nifti: base64(await gzip(bytes)) }, 'Mask')
    } catch (err) {
      if (!(err && err.status)) say(`Not saved: ${err.message || err}`, 'error')
    } finally {
      saveMask.disabled = false
    }
  })
  section.append(h('h3', {}, 'Correct the mask'), editBtn, tools)
  // for the browser tests and tools: the drawing API of this page's viewer
  window.__neuronav = { ...(window.__neuronav || {}), segmentationEditor: { nv, setPen, pen, size } }
  return section
}
