// The study view, a reading screen: the hanging protocol (the four sequences side by side, linked,
// the overlay on each), MPR of one sequence and 3D one choice away, corner information on every view,
// window/level presets, keyboard and cine, the readers' measurements drawn on the images (measure.js),
// lesion jumps, prior comparison, and the report beside the images. A technician (study:images) sees
// the acquired images only, to check their quality.
import { api, get, post } from '../api.js'
import { can, session } from '../session.js'
import { field, fmtDate, h, num, say, studyDate } from '../ui.js'
import { LABELS, LAYOUTS, PRESETS, StudyViewer, softwareRendering } from '../viewer.js'
import { MeasureLayer, TOOLS, valueText } from '../measure.js'
import { reportPanel } from './report.js'
import { segmentationSection } from '../editing.js'

const SHORTCUTS = [
  ['↑ ↓ ← →', 'previous / next slice'],
  ['Page Up / Page Down', 'five slices back / on'],
  ['Home / End', 'first / last slice'],
  ['+ / −', 'zoom in / out; 0 resets the zoom'],
  ['1 2 3 4', 'window presets: auto, brain, subdural, T1c enhancement'],
  ['C', 'cine (play the slices) on / off'],
  ['N, W, P', 'tools: navigate, window/level drag, pan'],
  ['D, R, E, B', 'tools: distance, rectangle, ellipse, bidimensional (RANO)'],
  ['Delete', 'delete the selected measurement (your own)'],
  ['Esc', 'stop drawing, clear the selection'],
]
const HANG = ['T1', 'T1c', 'T2', 'FLAIR'] // the hanging protocol's order (2×2)

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
  const reader = can('study:read') // else a technician checking the images' quality
  const identity = study.patient_name
    ? h(
        'span',
        { class: 'identity' },
        `${study.patient_name} · ID ${study.patient_id || '—'} · born ${studyDate(study.patient_birth_date)}`,
      )
    : null
  heading.classList.add('study-title')
  main.append(
    h(
      'p',
      { class: 'meta' },
      identity,
      identity ? ' · ' : null,
      `${studyDate(study.study_date)} · ${study.description || 'no description'} · ${study.sequences.join(', ')} · uploaded ${fmtDate(study.uploaded_at)}`,
    ),
  )

  const readout = h('p', { class: 'readout', 'aria-live': 'off' }, ' ')
  const canvas = h('canvas', {
    id: 'viewer-canvas',
    role: 'img',
    tabindex: 0,
    'aria-label': 'Image viewer of the study',
  })
  const priorCanvas = h('canvas', { id: 'prior-canvas', role: 'img', tabindex: 0, 'aria-label': 'Image viewer of the prior study' })
  // NiiVue sizes its canvas to its parent: the panes' sizes are fixed by the stage's grid (CSS), so
  // neither a message nor a sequence of another shape moves or resizes them
  const current = pane(canvas, 'This study')
  const priorPane = pane(priorCanvas, 'Prior study')
  priorPane.figure.hidden = true
  const stage = h('div', { class: 'stage', dataset: { layout: 'grid' }, tabindex: -1 }, current.figure, priorPane.figure)
  const toolbar = h('div', { class: 'toolbar', role: 'toolbar', 'aria-label': 'Viewer tools' })
  const controls = h('div', { class: 'controls' })
  const side = h('aside', { class: 'side', 'aria-label': reader ? 'Findings, measurements and report' : 'Viewer controls' })
  side.append(h('section', { class: 'controls-box', 'aria-label': 'Viewer controls' }, controls))
  main.append(h('div', { class: 'study-layout' }, h('section', { class: 'viewer', 'aria-label': 'Viewer' }, toolbar, stage, readout), side))
  const corner = cornerText(study, reader)
  let measure = null
  const refreshPane = (p, v) => {
    paneCorners(p, v, corner)
    if (measure) measure.redraw()
  }

  let pointA = null
  let annotations = []
  const lesions = manifest.lesions || []
  const shared = new Map() // images several panes show (the segmentation) are fetched once
  const viewer = new StudyViewer(canvas, studyId, {
    shared,
    onLocation: (loc) => {
      readout.textContent = readoutText(loc, viewer, lesions)
    },
    onChange: () => refreshPane(current, viewer),
  })
  current.viewer = viewer
  let prior = null
  let extras = [] // the hanging protocol's other panes: { pane, viewer }
  life.onLeave(() => {
    for (const e of extras) e.viewer.destroy()
    viewer.destroy()
    if (prior) prior.destroy()
  })
  const software = softwareRendering()
  const aiImages = manifest.images.includes('segmentation') // the AI overlays, when open to this reader
  // the hanging protocol: the four sequences side by side when the study has them; the first pane
  // shows the analysed reference (all overlays are on its grid)
  const hung = HANG.filter((q) => manifest.sequences.includes(q))
  const others = hung.filter((q) => q !== manifest.reference_sequence)
  // (on a phone one image at a time: each gets the screen)
  const wide = window.matchMedia('(min-width: 900px)').matches
  // the 2×2 hanging protocol first (its panes open together: the segmentation is fetched once, no 3D
  // gradient is computed for 2D views, linked redraws are one per frame); a phone gets one view
  const startLayout = others.length && wide ? 'grid' : software ? 'mpr' : 'mpr3d'
  stage.dataset.layout = startLayout === 'grid' ? 'grid' : 'single'
  measure = new MeasureLayer({
    canMeasure: can('annotation:create'),
    userId: session.user.id,
    save: (body) => saveAnnotation(body),
    remove: (a) => deleteAnnotation(a),
    move: (a, points) => moveAnnotation(a, points),
    select: (a) => markSelected(a),
  })
  measure.attach(current, viewer)
  const firstOpen = viewer.open(startLayout === 'grid' ? 'axial' : startLayout, aiImages)
  let sideShown
  const sideReady = new Promise((resolve) => (sideShown = resolve)) // the report and measurements are on screen
  if (startLayout === 'grid') {
    openGrid(Promise.all([firstOpen, sideReady])).catch((err) => {
      if (!life.left) say(`The sequences could not be shown side by side: ${err.message || err}`, 'error')
    })
  }
  try {
    await firstOpen
    if (life.left) return
    current.series = `${manifest.reference_sequence || 'Reference'} (analysed reference)`
    refreshPane(current, viewer)
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

  // -- the hanging protocol --------------------------------------------------------------------
  // first: when the page starts with the grid, the first pane's opening and the side panel's loading: the
  // other panes' images are fetched meanwhile, and decoded and handed to the GPU after those (on the
  // page's one thread they would hold back the report)
  async function openGrid(first = null) {
    stage.dataset.layout = 'grid'
    if (!first) viewer.setLayout('axial')
    if (extras.length) return
    const made = others.slice(0, 3).map((q) => {
      const c = h('canvas', { role: 'img', tabindex: 0, 'aria-label': `Image viewer: ${q}`, dataset: { sequence: q } })
      const p = pane(c, q)
      p.series = `${q} (as acquired)`
      stage.insertBefore(p.figure, priorPane.figure)
      const v = new StudyViewer(c, studyId, { shared, onChange: () => refreshPane(p, v) })
      p.viewer = v
      measure.attach(p, v)
      return { pane: p, viewer: v }
    })
    extras = made
    for (const e of made) e.viewer.prefetch(`sequence-${e.pane.sequence}`).catch(() => {}) // (open() reports)
    await first
    if (life.left || extras !== made) return
    await Promise.all(made.map((e) => e.viewer.open('axial', aiImages, `sequence-${e.pane.sequence}`)))
    if (life.left || extras !== made) return
    StudyViewer.link([viewer, ...made.map((e) => e.viewer)])
    viewer.follow()
    for (const e of made) {
      e.viewer.setTool(measure.tool)
      e.viewer.applyLabels()
      refreshPane(e.pane, e.viewer)
    }
    requestAnimationFrame(() => {
      if (life.left || extras !== made) return
      performance.mark('neuronav:grid-rendered')
      const m = performance.measure('neuronav:open-to-grid', 'neuronav:study-open', 'neuronav:grid-rendered')
      window.__neuronav = { ...(window.__neuronav || {}), gridMs: m.duration }
      stage.dataset.gridReady = 'true'
    })
  }
  function closeGrid() {
    for (const e of extras) {
      e.viewer.destroy()
      measure.detach(e.pane)
      e.pane.figure.remove()
    }
    extras = []
  }
  function allViewers() {
    return [viewer, ...extras.map((e) => e.viewer)]
  }
  async function setLayout(key) {
    if (key === 'grid') {
      try {
        await openGrid()
      } catch (err) {
        if (!life.left) say(`The sequences could not be shown side by side: ${err.message || err}`, 'error')
      }
    } else {
      closeGrid()
      stage.dataset.layout = 'single'
      viewer.setLayout(key)
      if (prior) prior.setLayout(key)
    }
    refreshPane(current, viewer) // its corners and orientation letters (none over MPR or 3D tiles)
    measure.redraw()
  }

  // -- controls -------------------------------------------------------------------------------
  const layoutSel = h('select', {}, ...Object.entries(LAYOUTS).map(([k, v]) => h('option', { value: k }, v.label)))
  if (!others.length) layoutSel.querySelector('option[value=grid]').remove()
  layoutSel.value = startLayout
  layoutSel.addEventListener('change', () => setLayout(layoutSel.value))
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
      current.series =
        seqSel.value === 'reference'
          ? `${manifest.reference_sequence || 'Reference'} (analysed reference)`
          : `${seqSel.value.slice(9)} (as acquired)`
      refreshPane(current, viewer)
      measure.redraw()
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
      await Promise.all(allViewers().map((v) => v.setHeatmap(mode === 'heatmap')))
      if (life.left) return
      for (const v of allViewers()) v.setOverlay(mode === 'labels')
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
      box.addEventListener('change', () => allViewers().forEach((v) => v.setLabelVisible(l.value, box.checked)))
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
  opacity.addEventListener('change', () => allViewers().forEach((v) => v.setOpacity(Number(opacity.value) / 100)))

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
  function preset(name) {
    for (const v of allViewers()) v.setPreset(name) // each image's own range
    syncWindowInputs()
    say(`Window: ${PRESETS[name].label}.`)
  }
  const presetButtons = h(
    'div',
    { class: 'presets', role: 'group', 'aria-label': 'Window presets' },
    ...Object.entries(PRESETS).map(([k, p]) => {
      const b = h('button', { type: 'button', class: 'small', title: `Window preset (key ${p.key})` }, p.label)
      b.addEventListener('click', () => preset(k))
      return b
    }),
  )

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
      measure.redraw()
      say(`Crosshair at the centroid of lesion ${l.index}.`)
    }
  })

  const tool = h(
    'select',
    {},
    ...Object.entries(TOOLS)
      .filter(([, t]) => !t.measures || can('annotation:create'))
      .map(([k, t]) => h('option', { value: k }, t.label)),
  )
  function setTool(name) {
    if (![...tool.options].some((o) => o.value === name)) return
    tool.value = name
    for (const v of allViewers()) v.setTool(name)
    measure.setTool(name)
  }
  tool.addEventListener('change', () => setTool(tool.value))
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
      b.addEventListener('click', () => {
        viewer.step(axis, d)
        measure.redraw()
      })
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
      priorPane.figure.hidden = true
      if (prior) prior.destroy()
      prior = null
      compare.setAttribute('aria-pressed', 'false')
      stage.classList.remove('compare')
      return
    }
    if (layoutSel.value === 'grid') {
      layoutSel.value = 'mpr'
      await setLayout('mpr')
    }
    priorPane.figure.hidden = false
    stage.classList.add('compare')
    compare.disabled = true
    try {
      const priorManifest = await get(`/api/studies/${encodeURIComponent(priorSel.value)}/viewer`, { signal })
      prior = new StudyViewer(priorCanvas, priorSel.value, { onChange: () => refreshPane(priorPane, prior) })
      priorPane.viewer = prior
      priorPane.series = `Prior study ${studyDate(priorManifest.study_date || '')}`.trim()
      await prior.open('mpr3d', priorManifest.images.includes('segmentation'))
      if (life.left) return
      prior.setLayout(layoutSel.value)
      viewer.syncWith(prior)
      viewer.follow()
      compare.setAttribute('aria-pressed', 'true')
      say('Prior study shown side by side; views are synchronised.')
    } catch (err) {
      if (life.left) return
      priorPane.figure.hidden = true
      stage.classList.remove('compare')
      say(`The prior study could not be shown: ${err.message || err}`, 'error')
    } finally {
      compare.disabled = false
    }
  })

  // -- toolbar: layout, window presets, tool, zoom, cine, shortcuts ------------------------------
  const zoomIn = h('button', { type: 'button', class: 'small', title: 'Zoom in (+)', 'aria-label': 'Zoom in' }, '+')
  const zoomOut = h('button', { type: 'button', class: 'small', title: 'Zoom out (−)', 'aria-label': 'Zoom out' }, '−')
  zoomIn.addEventListener('click', () => zoomBy(1.25))
  zoomOut.addEventListener('click', () => zoomBy(0.8))
  function zoomBy(f) {
    viewer.zoomBy(f)
    measure.redraw()
  }
  const cine = h('button', { type: 'button', class: 'small', 'aria-pressed': 'false', title: 'Play the slices (C)' }, 'Cine')
  let stopCine = null
  function toggleCine() {
    if (stopCine) {
      stopCine()
      stopCine = null
      cine.setAttribute('aria-pressed', 'false')
      return
    }
    cine.setAttribute('aria-pressed', 'true')
    const tick = () => {
      const info = viewer.sliceInfo()
      if (info.index >= info.count) viewer.goToSlice(1)
      else viewer.stepSlice(1)
      measure.redraw()
      stopCine = life.setTimeout(tick, 120)
    }
    stopCine = life.setTimeout(tick, 120)
  }
  cine.addEventListener('click', toggleCine)
  const help = h(
    'details',
    { class: 'shortcuts' },
    h('summary', {}, 'Keyboard shortcuts'),
    h('dl', {}, ...SHORTCUTS.flatMap(([k, what]) => [h('dt', {}, h('kbd', {}, k)), h('dd', {}, what)])),
  )
  toolbar.append(
    field('Layout', layoutSel),
    field('Mouse tool', tool),
    presetButtons,
    h('div', { class: 'zoom', role: 'group', 'aria-label': 'Zoom and cine' }, zoomOut, zoomIn, cine),
    help,
  )

  // keys on the viewer (the stage and its canvases): slices, zoom, presets, cine, tools
  const keyTools = { n: 'navigate', w: 'windowing', p: 'pan', d: 'distance', r: 'roi', e: 'ellipse', b: 'bidimensional' }
  const presetKeys = Object.fromEntries(Object.entries(PRESETS).map(([k, p]) => [p.key, k]))
  life.listen(
    stage,
    'keydown',
    (e) => {
      if (e.ctrlKey || e.metaKey || e.altKey) return
      const info = viewer.sliceInfo()
      const k = e.key
      let done = true
      if (k === 'ArrowUp' || k === 'ArrowRight') viewer.stepSlice(1)
      else if (k === 'ArrowDown' || k === 'ArrowLeft') viewer.stepSlice(-1)
      else if (k === 'PageUp') viewer.stepSlice(5)
      else if (k === 'PageDown') viewer.stepSlice(-5)
      else if (k === 'Home') viewer.goToSlice(1)
      else if (k === 'End') viewer.goToSlice(info.count)
      else if (k === '+' || k === '=') viewer.zoomBy(1.25)
      else if (k === '-' || k === '−') viewer.zoomBy(0.8)
      else if (k === '0') viewer.setZoomPan([0, 0, 0, 1])
      else if (presetKeys[k]) preset(presetKeys[k])
      else if (k === 'c' || k === 'C') toggleCine()
      else if (keyTools[k.toLowerCase()]) setTool(keyTools[k.toLowerCase()])
      else if (k === 'Delete' || k === 'Backspace') measure.deleteSelected()
      else if (k === 'Escape') measure.cancel()
      else done = false
      if (done) {
        e.preventDefault()
        e.stopPropagation()
        measure.redraw()
      }
    },
    { capture: true },
  )

  const controlParts = [
    h(
      'details',
      { open: true },
      h('summary', {}, 'View'),
      h(
        'div',
        { class: 'group' },
        field('Sequence', seqSel, 'The first pane; the others show the remaining sequences.'),
        ...(aiImages
          ? [field('Overlay', overlaySel), labelToggles, field('Overlay opacity', opacity)]
          : [
              h(
                'span',
                { class: 'muted' },
                reader ? 'AI overlays are shown once the report is signed.' : 'Acquired images only (quality check).',
              ),
            ]),
        field('Window', winInput),
        field('Level', levInput),
      ),
    ),
    reader
      ? h(
          'div',
          { class: 'group' },
          lesions.length
            ? field('Lesion', lesionSel)
            : h('span', { class: 'muted' }, manifest.lesions ? 'No lesion segmented.' : 'AI results are shown once the report is signed.'),
          jump,
        )
      : null,
    can('annotation:create')
      ? h(
          'details',
          {},
          h('summary', {}, 'Measure and annotate'),
          h(
            'div',
            { class: 'group' },
            h('p', { class: 'muted' }, 'Choose a measuring tool above, then drag on an image.'),
            markA,
            measureB,
            field('Note', noteText, 'Added at the crosshair, or to the next measurement you draw.'),
            addNote,
          ),
        )
      : null,
    h(
      'details',
      {},
      h('summary', {}, reader ? 'Crosshair and comparison' : 'Crosshair'),
      h('div', { class: 'group' }, stepButtons, ...(reader ? [field('Prior study', priorSel), compare] : [])),
    ),
  ]
  controls.append(...controlParts.filter(Boolean)) // (append would write a null as the text "null")

  // -- annotations ----------------------------------------------------------------------------
  const annoList = h('div', { class: 'annotations' })
  async function loadAnnotations() {
    if (!can('annotation:read')) return
    try {
      annotations = await get(`/api/studies/${studyId}/annotations`, { signal })
      renderAnnotations(annotations)
      measure.setAnnotations(annotations)
    } catch (err) {
      annoList.replaceChildren(h('p', { class: 'error' }, err.message))
    }
  }
  function markSelected(a) {
    for (const li of annoList.querySelectorAll('li')) li.classList.toggle('selected', !!a && li.dataset.annotationId === a.id)
  }
  async function deleteAnnotation(a) {
    try {
      await api('DELETE', `/api/annotations/${a.id}`)
      say('Measurement deleted.')
      loadAnnotations()
    } catch (err) {
      say(err.message, 'error')
    }
  }
  // dragged on the image by its author: the server computes the values again at the new place
  async function moveAnnotation(a, points) {
    try {
      const moved = await api('PATCH', `/api/annotations/${a.id}`, { points_mm: points }, { signal })
      say(`Moved: ${valueText(moved)}.`)
    } catch (err) {
      say(`Not moved: ${err.message}`, 'error')
    }
    await loadAnnotations()
  }
  const KIND_NAME = { text: 'Note', roi: 'Rectangle', ellipse: 'Ellipse', distance: 'Distance', bidimensional: 'Bidimensional' }
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
          show.addEventListener('click', () => {
            const pts = a.points_mm
            const mid = [0, 1, 2].map((i) => pts.reduce((t, p) => t + p[i], 0) / pts.length)
            if (a.plane && layoutSel.value !== 'grid' && a.plane !== viewer.plane()) {
              layoutSel.value = a.plane
              setLayout(a.plane)
            }
            viewer.jumpTo(mid)
            measure.select(a)
            measure.redraw()
          })
          actions.push(show)
          if (can('report:edit') && !a.include_in_report) {
            const inc = h('button', { type: 'button', class: 'small' }, 'Include in report')
            inc.addEventListener('click', async () => {
              try {
                await post(`/api/annotations/${a.id}/include`)
                say('Added to the report draft.')
                loadAnnotations()
                if (report) report.reload()
              } catch (err) {
                say(err.message, 'error')
              }
            })
            actions.push(inc)
          }
          if (a.author_id === session.user.id) {
            const del = h('button', { type: 'button', class: 'small danger' }, 'Delete')
            del.addEventListener('click', () => deleteAnnotation(a))
            actions.push(del)
          }
          return h(
            'li',
            { dataset: { annotationId: a.id, kind: a.kind } },
            h('strong', {}, KIND_NAME[a.kind] || a.kind),
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
    const text = noteText.value.trim()
    if (text && body.kind !== 'text' && !body.text) body.text = text // a note written beforehand labels it
    try {
      const a = await post(`/api/studies/${studyId}/annotations`, body, { signal })
      say(`Saved: ${a.kind === 'text' ? 'note' : valueText(a)}.`)
      if (body.text) noteText.value = ''
      await loadAnnotations()
      measure.select(a)
      return true
    } catch (err) {
      say(`Not saved: ${err.message}`, 'error')
      return false
    }
  }

  // -- side panel: lesions, measurements, the report beside the images -------------------------
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
  const segSection = segmentationSection({ studyId, manifest, viewer }) // versions, accept/reject, edit mask
  if (segSection) side.append(segSection)
  if (can('annotation:read')) side.append(h('section', {}, h('h2', {}, 'Measurements and annotations'), annoList))
  let report = null
  if (can('report:read_preliminary') || can('report:read_final')) {
    const reportBox = h('section', { class: 'report-box' })
    side.append(reportBox)
    const published = ['final', 'amended'].includes(manifest.report_status)
    if (manifest.report_id && !can('report:read_preliminary') && !published) {
      // not asked for: the server would refuse it (a neurologist reads signed reports only)
      reportBox.append(h('h2', {}, 'Report'), h('p', { class: 'muted' }, 'The report is not open to you yet (it is not signed).'))
    } else {
      report = reportPanel(reportBox, manifest.report_id, { compact: true, signal })
    }
  }
  // the report and the measurements first, then the hanging protocol's other sequences are decoded
  // (their images are fetched meanwhile: openGrid)
  try {
    await Promise.all([report ? report.ready : null, loadAnnotations()])
  } finally {
    sideShown()
  }
  if (life.left) return
  if (layoutSel.value === 'grid' && !extras.length) setLayout('grid')
}

// -- panes and their corner information ---------------------------------------------------------

function pane(canvas, sequence) {
  const corners = ['tl', 'tr', 'bl', 'br'].map((c) => h('div', { class: `corner ${c}`, 'aria-hidden': 'true' }))
  const orient = ['left', 'right', 'top', 'bottom'].map((c) => h('div', { class: `orient ${c}`, 'aria-hidden': 'true' }))
  const box = h('div', { class: 'canvas-box' }, canvas, ...corners, ...orient)
  const figure = h('figure', { class: 'pane' }, box, h('figcaption', { class: 'sr-only' }, sequence))
  return {
    figure,
    box,
    canvas,
    sequence,
    series: sequence,
    corners: Object.fromEntries(corners.map((c) => [c.classList[1], c])),
    orient: Object.fromEntries(orient.map((c) => [c.classList[1], c])),
  }
}

function cornerText(study, reader) {
  const who =
    reader && study.patient_name
      ? [study.patient_name, `MRN ${study.patient_id || '—'}`, `Born ${studyDate(study.patient_birth_date)}`]
      : [study.patient_pseudonym || study.id]
  return { who, when: [`Study ${studyDate(study.study_date)}`, study.description || ''] }
}

function lines(el, texts) {
  el.replaceChildren(...texts.filter(Boolean).map((t) => h('div', {}, t)))
}

// the four corners of a pane: who, what and when (top), where and how it is shown (bottom)
function paneCorners(p, v, corner) {
  if (!v || !v.nv.volumes.length) return
  const w = v.windowLevel()
  const plane = v.plane()
  const slices =
    v.nv.opts.sliceType === 3 || v.nv.opts.sliceType === 4
      ? ['sagittal', 'coronal', 'axial'].map((q) => {
          const s = v.sliceInfo(q)
          return `${s.name.slice(0, 3)} ${s.index}/${s.count} (${s.mm.toFixed(1)} mm)`
        })
      : [
          (() => {
            const s = v.sliceInfo(plane)
            return `${s.name} ${s.index}/${s.count} · ${'xyz'[s.axis]} ${s.mm.toFixed(1)} mm`
          })(),
        ]
  lines(p.corners.tl, corner.who)
  lines(p.corners.tr, [...corner.when, p.series])
  lines(p.corners.bl, slices)
  lines(p.corners.br, [`W ${Math.round(w.max - w.min)} L ${Math.round((w.max + w.min) / 2)}`, `Zoom ${v.zoom().toFixed(2)}×`])
  // orientation letters at the edges of a single plane (radiological convention: the patient's right on
  // the left); MPR and 3D tiles carry NiiVue's own
  const single = [0, 1, 2].includes(v.nv.opts.sliceType)
  const letters = { axial: ['R', 'L', 'A', 'P'], coronal: ['R', 'L', 'S', 'I'], sagittal: ['A', 'P', 'S', 'I'] }[plane]
  ;['left', 'right', 'top', 'bottom'].forEach((edge, i) => (p.orient[edge].textContent = single ? letters[i] : ''))
}

// The plain readout under the images: the label and lesion under the crosshair, the position
// (radiological letters, mm), the intensity of the image shown.
function readoutText(loc, v, lesions) {
  if (!loc || !loc.mm) return ' '
  const mm = [loc.mm[0], loc.mm[1], loc.mm[2]]
  const values = loc.values || []
  const parts = []
  const seg = values.find((x) => /^segmentation/.test(x.name || ''))
  const label = seg ? LABELS.find((l) => l.value === Math.round(seg.value)) : null
  if (label) {
    const near = nearestLesion(mm, lesions)
    parts.push(near ? `${label.name}, ${num(near.volume_ml)} mL lesion ${near.index}` : label.name)
  }
  const letter = (x, pos, neg) => `${x >= 0 ? pos : neg} ${Math.abs(x).toFixed(1)}`
  parts.push(`${letter(mm[0], 'R', 'L')} ${letter(mm[1], 'A', 'P')} ${letter(mm[2], 'S', 'I')} mm`)
  const bg = values[0]
  if (bg && Number.isFinite(bg.value))
    parts.push(`${v.background === 'reference' ? 'intensity' : v.background.slice(9)} ${num(bg.value, 0)}`)
  return parts.join(' · ')
}

// the lesion whose centroid is nearest, within its largest diameter
function nearestLesion(mm, lesions) {
  let best = null
  for (const l of lesions || []) {
    const d = Math.hypot(mm[0] - l.centroid_ras_mm[0], mm[1] - l.centroid_ras_mm[1], mm[2] - l.centroid_ras_mm[2])
    if (d <= Math.max(l.max_diameter_mm, 5) && (!best || d < best.d)) best = { ...l, d }
  }
  return best
}
