// The study view: the viewer (MPR + 3D, overlays, heatmap, window/level, sequences, prior comparison),
// lesion jumps, measurements and annotations, and the report panel.
import { api, get, post } from '../api.js'
import { can, session } from '../session.js'
import { field, fmtDate, h, num, say, studyDate } from '../ui.js'
import { LABELS, LAYOUTS, PLANES, StudyViewer, softwareRendering } from '../viewer.js'
import { reportPanel } from './report.js'

// Everything the page starts belongs to `life` (router.js): its requests carry life.signal, and its
// viewers (WebGL contexts) are destroyed when the page is left, also while they are still loading.
export async function studyPage(main, life, studyId) {
  const { signal } = life
  performance.clearMarks()
  performance.mark('neuronav:study-open')
  const heading = h('h1', {}, 'Study')
  main.append(heading)
  let study, manifest
  try {
    ;[study, manifest] = await Promise.all([get(`/api/studies/${studyId}`, { signal }), get(`/api/studies/${studyId}/viewer`, { signal })])
  } catch (err) {
    main.append(h('p', { class: 'error', role: 'alert' }, err.message), h('p', {}, h('a', { href: '#/worklist' }, 'Back to the worklist')))
    return
  }
  heading.textContent = `Study ${study.patient_pseudonym || study.id}`
  const identity = study.patient_name
    ? h('p', { class: 'identity' }, `${study.patient_name} · ID ${study.patient_id || '—'} · born ${studyDate(study.patient_birth_date)}`)
    : null
  main.append(
    identity,
    h(
      'p',
      { class: 'meta' },
      `${studyDate(study.study_date)} · ${study.description || 'no description'} · ${study.sequences.join(', ')} · uploaded ${fmtDate(study.uploaded_at)}`,
    ),
  )

  const readout = h('p', { class: 'readout', 'aria-live': 'off' }, ' ')
  const canvas = h('canvas', {
    id: 'viewer-canvas',
    role: 'img',
    tabindex: 0,
    'aria-label': 'Image viewer: axial, coronal, sagittal and 3D views of the study',
  })
  const priorCanvas = h('canvas', { id: 'prior-canvas', role: 'img', tabindex: 0, 'aria-label': 'Image viewer of the prior study' })
  // NiiVue sizes its canvas to its parent: the parent's height is fixed by CSS (.canvas-box)
  const priorBox = h(
    'figure',
    { class: 'pane prior', hidden: true },
    h('figcaption', {}, 'Prior study'),
    h('div', { class: 'canvas-box' }, priorCanvas),
  )
  const currentBox = h('figure', { class: 'pane' }, h('figcaption', {}, 'This study'), h('div', { class: 'canvas-box' }, canvas))
  const stage = h('div', { class: 'stage' }, currentBox, priorBox)
  const controls = h('div', { class: 'controls' })
  const side = h('aside', { class: 'side', 'aria-label': 'Findings, measurements and report' })
  side.append(h('section', { class: 'controls-box', 'aria-label': 'Viewer controls' }, controls))
  main.append(h('div', { class: 'study-layout' }, h('section', { class: 'viewer', 'aria-label': 'Viewer' }, stage, readout), side))

  let pointA = null
  const viewer = new StudyViewer(canvas, studyId, {
    onLocation: (loc) => {
      readout.textContent = loc && loc.string ? loc.string : ' '
    },
    onDrag: (p) => onDrag(p),
    onMeasure: (m) => onMeasure(m),
  })
  let prior = null
  life.onLeave(() => {
    viewer.destroy()
    if (prior) prior.destroy()
  })
  // without a graphics card the 3D tile redraws slowly: start with the three planes, 3D one choice away
  const software = softwareRendering()
  const aiImages = manifest.images.includes('segmentation') // the AI overlays, when open to this reader
  const startLayout = software ? 'mpr' : 'mpr3d'
  try {
    await viewer.open(startLayout, aiImages)
    if (life.left) return
  } catch (err) {
    if (life.left) return
    stage.replaceWith(h('p', { class: 'error', role: 'alert' }, `The images could not be shown: ${err.message || err}`))
    return
  }
  requestAnimationFrame(() => {
    if (life.left) return
    performance.mark('neuronav:first-render')
    const m = performance.measure('neuronav:open-to-render', 'neuronav:study-open', 'neuronav:first-render')
    window.__neuronav = { ...(window.__neuronav || {}), firstRenderMs: m.duration }
    canvas.dataset.rendered = 'true'
  })

  // -- controls -------------------------------------------------------------------------------
  const layoutSel = h('select', {}, ...Object.entries(LAYOUTS).map(([k, v]) => h('option', { value: k }, v.label)))
  layoutSel.value = startLayout
  layoutSel.addEventListener('change', () => {
    viewer.setLayout(layoutSel.value)
    if (prior) prior.setLayout(layoutSel.value)
  })
  const seqSel = h(
    'select',
    {},
    h('option', { value: 'reference' }, `Reference (${manifest.reference_sequence || 'analysed'})`),
    ...manifest.sequences.map((s) => h('option', { value: `sequence-${s}` }, s)),
  )
  seqSel.addEventListener('change', async () => {
    seqSel.disabled = true
    try {
      await viewer.setBackground(seqSel.value)
      if (life.left) return
      syncWindowInputs()
      say(`Showing ${seqSel.selectedOptions[0].textContent}.`)
    } catch (err) {
      if (life.left) return
      say(`That sequence could not be loaded: ${err.message || err}`, 'error')
    } finally {
      seqSel.disabled = false
    }
  })

  const overlaySel = h(
    'select',
    {},
    h('option', { value: 'labels' }, 'Segmentation'),
    h('option', { value: 'heatmap' }, 'Heatmap (tumour probability)'),
    h('option', { value: 'none' }, 'None'),
  )
  overlaySel.addEventListener('change', async () => {
    const mode = overlaySel.value
    try {
      await viewer.setHeatmap(mode === 'heatmap')
      if (life.left) return
      viewer.setOverlay(mode === 'labels')
    } catch (err) {
      if (life.left) return
      say(`The heatmap could not be loaded: ${err.message || err}`, 'error')
    }
    labelBoxes.forEach((b) => (b.disabled = mode !== 'labels'))
  })
  const labelBoxes = []
  const labelToggles = h(
    'fieldset',
    { class: 'labels' },
    h('legend', {}, 'Labels'),
    ...LABELS.map((l) => {
      const box = h('input', { type: 'checkbox', checked: true, id: `label-${l.value}` })
      box.addEventListener('change', () => viewer.setLabelVisible(l.value, box.checked))
      labelBoxes.push(box)
      return h(
        'label',
        { for: `label-${l.value}`, class: 'check' },
        box,
        h('span', { class: 'swatch', style: `background:rgb(${l.rgb.join(',')})` }),
        l.name,
      )
    }),
  )
  const opacity = h('input', { type: 'range', min: 0, max: 100, value: 50 })
  opacity.addEventListener('change', () => viewer.setOpacity(Number(opacity.value) / 100))

  const winInput = h('input', { type: 'number', step: 'any', inputmode: 'decimal' })
  const levInput = h('input', { type: 'number', step: 'any', inputmode: 'decimal' })
  function syncWindowInputs() {
    const w = viewer.windowLevel()
    winInput.value = Math.round(w.max - w.min)
    levInput.value = Math.round((w.max + w.min) / 2)
  }
  syncWindowInputs()
  const applyWindow = () => {
    const w = Number(winInput.value)
    const l = Number(levInput.value)
    if (!(w > 0)) {
      say('The window must be a positive number.', 'error')
      return
    }
    viewer.setWindow(l - w / 2, l + w / 2)
  }
  winInput.addEventListener('change', applyWindow)
  levInput.addEventListener('change', applyWindow)
  const autoWin = h('button', { type: 'button' }, 'Auto window')
  autoWin.addEventListener('click', () => {
    const w = viewer.windowLevel()
    viewer.setWindow(w.robustMin, w.robustMax)
    syncWindowInputs()
  })

  const lesions = manifest.lesions || []
  const lesionSel = h(
    'select',
    {},
    ...lesions.map((l) => h('option', { value: l.index }, `Lesion ${l.index}: ${num(l.volume_ml)} mL, ${l.location}`)),
  )
  const jump = h('button', { type: 'button', class: 'primary', disabled: !lesions.length }, 'Jump to lesion')
  jump.addEventListener('click', () => {
    const l = lesions.find((x) => String(x.index) === lesionSel.value) || lesions[0]
    if (l) {
      viewer.jumpTo(l.centroid_ras_mm)
      say(`Crosshair at the centroid of lesion ${l.index}.`)
    }
  })

  const tool = h(
    'select',
    {},
    h('option', { value: 'navigate' }, 'Navigate (click: crosshair, right-drag: window/level)'),
    h('option', { value: 'distance' }, 'Measure distance (drag)'),
    h('option', { value: 'roi' }, 'Region of interest (drag a box)'),
    h('option', { value: 'pan' }, 'Pan'),
  )
  tool.addEventListener('change', () => viewer.setTool(tool.value))
  const markA = h('button', { type: 'button' }, 'Mark point A at crosshair')
  const measureB = h('button', { type: 'button', disabled: true }, 'Measure A to crosshair')
  markA.addEventListener('click', () => {
    pointA = viewer.crosshairMM()
    measureB.disabled = false
    say(`Point A set at (${pointA.map((v) => v.toFixed(1)).join(', ')}) mm.`)
  })
  measureB.addEventListener('click', () => {
    if (pointA) saveAnnotation({ kind: 'distance', points_mm: [pointA, viewer.crosshairMM()] })
  })
  const noteText = h('input', { type: 'text', maxlength: 2000 })
  const addNote = h('button', { type: 'button' }, 'Add note at crosshair')
  addNote.addEventListener('click', () => {
    if (!noteText.value.trim()) {
      say('Write the note first.', 'error')
      noteText.focus()
      return
    }
    saveAnnotation({ kind: 'text', points_mm: [viewer.crosshairMM()], text: noteText.value.trim() }).then(
      (ok) => ok && (noteText.value = ''),
    )
  })

  const stepButtons = h(
    'div',
    { class: 'steps', role: 'group', 'aria-label': 'Move the crosshair one voxel' },
    ...[
      ['Left', 0, -1],
      ['Right', 0, 1],
      ['Posterior', 1, -1],
      ['Anterior', 1, 1],
      ['Inferior', 2, -1],
      ['Superior', 2, 1],
    ].map(([label, axis, d]) => {
      const b = h('button', { type: 'button', class: 'small' }, label)
      b.addEventListener('click', () => viewer.step(axis, d))
      return b
    }),
  )

  const priorSel = h(
    'select',
    { disabled: !manifest.priors.length },
    ...manifest.priors.map((p) => h('option', { value: p.study_id }, `${studyDate(p.study_date)} · ${p.description || p.study_id}`)),
  )
  const compare = h('button', { type: 'button', 'aria-pressed': 'false', disabled: !manifest.priors.length }, 'Compare with prior')
  compare.addEventListener('click', async () => {
    const on = compare.getAttribute('aria-pressed') !== 'true'
    if (!on) {
      priorBox.hidden = true
      viewer.unsync()
      if (prior) prior.destroy()
      prior = null
      compare.setAttribute('aria-pressed', 'false')
      stage.classList.remove('compare')
      return
    }
    priorBox.hidden = false
    stage.classList.add('compare')
    compare.disabled = true
    try {
      const priorManifest = await get(`/api/studies/${encodeURIComponent(priorSel.value)}/viewer`, { signal })
      prior = new StudyViewer(priorCanvas, priorSel.value)
      await prior.open('mpr3d', priorManifest.images.includes('segmentation'))
      if (life.left) return
      prior.setLayout(layoutSel.value)
      viewer.syncWith(prior)
      viewer.follow()
      compare.setAttribute('aria-pressed', 'true')
      say('Prior study shown side by side; views are synchronised.')
    } catch (err) {
      if (life.left) return
      priorBox.hidden = true
      stage.classList.remove('compare')
      say(`The prior study could not be shown: ${err.message || err}`, 'error')
    } finally {
      compare.disabled = false
    }
  })

  controls.append(
    h(
      'details',
      { open: true },
      h('summary', {}, 'View'),
      h(
        'div',
        { class: 'group' },
        field('Layout', layoutSel, software ? 'No graphics acceleration here: the 3D view redraws slowly.' : null),
        field('Sequence', seqSel),
        ...(aiImages
          ? [field('Overlay', overlaySel), labelToggles, field('Overlay opacity', opacity)]
          : [h('span', { class: 'muted' }, 'AI overlays are shown once the report is signed.')]),
        field('Window', winInput),
        field('Level', levInput),
        autoWin,
      ),
    ),
    h(
      'div',
      { class: 'group' },
      lesions.length
        ? field('Lesion', lesionSel)
        : h('span', { class: 'muted' }, manifest.lesions ? 'No lesion segmented.' : 'AI results are shown once the report is signed.'),
      jump,
    ),
    can('annotation:create')
      ? h(
          'details',
          {},
          h('summary', {}, 'Measure and annotate'),
          h(
            'div',
            { class: 'group' },
            field('Mouse tool', tool),
            markA,
            measureB,
            field('Note', noteText, 'Added at the crosshair, or to the next distance or region you draw.'),
            addNote,
          ),
        )
      : null,
    h(
      'details',
      {},
      h('summary', {}, 'Crosshair and comparison'),
      h('div', { class: 'group' }, stepButtons, field('Prior study', priorSel), compare),
    ),
  )

  // -- annotations ----------------------------------------------------------------------------
  const annoList = h('div', { class: 'annotations' })
  async function loadAnnotations() {
    if (!can('annotation:read')) return
    try {
      const items = await get(`/api/studies/${studyId}/annotations`, { signal })
      renderAnnotations(items)
    } catch (err) {
      annoList.replaceChildren(h('p', { class: 'error' }, err.message))
    }
  }
  function valueText(a) {
    if (a.kind === 'distance') return `${num(a.values.length_mm)} mm`
    if (a.kind === 'roi') return `${num(a.values.area_mm2)} mm², mean ${num(a.values.mean)} (SD ${num(a.values.sd)})`
    return ''
  }
  function renderAnnotations(items) {
    if (!items.length) {
      annoList.replaceChildren(h('p', { class: 'muted' }, 'No measurements or annotations yet.'))
      return
    }
    annoList.replaceChildren(
      h(
        'ul',
        {},
        ...items.map((a) => {
          const actions = []
          const show = h('button', { type: 'button', class: 'small' }, 'Show')
          show.addEventListener('click', () => viewer.jumpTo(a.points_mm[a.points_mm.length - 1]))
          actions.push(show)
          if (can('report:edit') && !a.include_in_report) {
            const inc = h('button', { type: 'button', class: 'small' }, 'Include in report')
            inc.addEventListener('click', async () => {
              try {
                await post(`/api/annotations/${a.id}/include`)
                say('Added to the report draft.')
                loadAnnotations()
                report.reload()
              } catch (err) {
                say(err.message, 'error')
              }
            })
            actions.push(inc)
          }
          if (a.author_id === session.user.id) {
            const del = h('button', { type: 'button', class: 'small danger' }, 'Delete')
            del.addEventListener('click', async () => {
              try {
                await api('DELETE', `/api/annotations/${a.id}`)
                loadAnnotations()
              } catch (err) {
                say(err.message, 'error')
              }
            })
            actions.push(del)
          }
          return h(
            'li',
            { dataset: { annotationId: a.id, kind: a.kind } },
            h('strong', {}, a.kind === 'text' ? 'Note' : a.kind === 'roi' ? 'ROI' : 'Distance'),
            ' ',
            h('span', { class: 'value' }, valueText(a)),
            a.text ? h('span', {}, ` — ${a.text}`) : null,
            h('small', {}, ` by ${a.author} (${a.author_role}), ${fmtDate(a.created_at)}${a.include_in_report ? ' · in the report' : ''}`),
            h('span', { class: 'actions' }, ...actions),
          )
        }),
      ),
    )
  }
  async function saveAnnotation(body) {
    try {
      const a = await post(`/api/studies/${studyId}/annotations`, body)
      say(`Saved: ${a.kind === 'text' ? 'note' : valueText(a)}.`)
      if (body.text) noteText.value = ''
      loadAnnotations()
      return true
    } catch (err) {
      say(`Not saved: ${err.message}`, 'error')
      return false
    }
  }
  function onMeasure(m) {
    if (!can('annotation:create') || tool.value !== 'distance' || !m || !(m.distance > 0)) return
    const a = [m.startMM[0], m.startMM[1], m.startMM[2]]
    const b = [m.endMM[0], m.endMM[1], m.endMM[2]]
    saveAnnotation({ kind: 'distance', points_mm: [a, b], text: noteText.value.trim() || undefined })
  }
  function onDrag(p) {
    if (!can('annotation:create') || !p || !p.mmStart || !p.mmEnd) return
    const a = [p.mmStart[0], p.mmStart[1], p.mmStart[2]]
    const b = [p.mmEnd[0], p.mmEnd[1], p.mmEnd[2]]
    if (tool.value === 'roi' && PLANES[p.axCorSag] !== undefined) {
      // a note written beforehand labels the region (text on a region)
      saveAnnotation({
        kind: 'roi',
        points_mm: [a, b],
        plane: PLANES[p.axCorSag],
        image: viewer.background,
        text: noteText.value.trim() || undefined,
      })
    }
  }

  // -- side panel -----------------------------------------------------------------------------
  if (manifest.lesions && manifest.lesions.length) {
    side.append(
      h(
        'section',
        {},
        h('h2', {}, 'Lesions'),
        h(
          'ul',
          { class: 'lesions' },
          ...manifest.lesions.map((l) =>
            h('li', {}, `Lesion ${l.index}: ${num(l.volume_ml)} mL, max diameter ${num(l.max_diameter_mm)} mm, ${l.location}`),
          ),
        ),
      ),
    )
  }
  if (can('annotation:read')) side.append(h('section', {}, h('h2', {}, 'Measurements and annotations'), annoList))
  const reportBox = h('section', { class: 'report-box' })
  side.append(reportBox)
  const report = reportPanel(reportBox, manifest.report_id, { compact: true, signal })
  loadAnnotations()
}
