// The volume viewer: NiiVue with the study's images (scanner/RAS millimetres), the BraTS label
// overlay, the heatmap, window/level (presets, drag), layouts (the 2×2 hanging protocol of the four
// sequences, MPR, 3D), slices, zoom, and linked viewers (the hanging protocol's panes, a prior study).
// project()/unproject() map scanner millimetres to the canvas and back: the page draws the readers'
// measurements over the image with them (study.js).
import { DRAG_MODE, MULTIPLANAR_TYPE, Niivue, NVImage, SLICE_TYPE } from '@niivue/niivue'

export const LABELS = [
  { value: 1, name: 'Necrotic core', rgb: [230, 60, 60] },
  { value: 2, name: 'Oedema', rgb: [60, 200, 90] },
  { value: 3, name: 'Enhancing tumour', rgb: [250, 220, 40] },
]
export const LAYOUTS = {
  grid: { label: 'Four sequences side by side (2×2), axial', slice: SLICE_TYPE.AXIAL, grid: true },
  mpr3d: { label: 'Axial, coronal, sagittal and 3D', slice: SLICE_TYPE.MULTIPLANAR, render: 1 },
  mpr: { label: 'Axial, coronal and sagittal', slice: SLICE_TYPE.MULTIPLANAR, render: 0 },
  axial: { label: 'Axial', slice: SLICE_TYPE.AXIAL },
  coronal: { label: 'Coronal', slice: SLICE_TYPE.CORONAL },
  sagittal: { label: 'Sagittal', slice: SLICE_TYPE.SAGITTAL },
  render: { label: '3D render', slice: SLICE_TYPE.RENDER },
}
export const PLANES = { [SLICE_TYPE.AXIAL]: 'axial', [SLICE_TYPE.CORONAL]: 'coronal', [SLICE_TYPE.SAGITTAL]: 'sagittal' }
export const PLANE_AXIS = { sagittal: 0, coronal: 1, axial: 2 } // the RAS axis normal to the plane
const AXIS_NAME = ['Sagittal', 'Coronal', 'Axial']

// Window/level presets. MRI intensities have no fixed unit (unlike CT's Hounsfield units), so each preset
// is a window over the image's robust range [r0, r1] (NiiVue's 2nd–98th percentile-like robust limits):
// brain: grey/white contrast; subdural: wide, for thin extra-axial collections next to bright fat;
// T1c enhancement: narrow, on the brightest quarter, where contrast enhancement lies; auto: the range.
export const PRESETS = {
  auto: { label: 'Auto', key: '1', range: [0, 1] },
  brain: { label: 'Brain', key: '2', range: [0.1, 0.8] },
  subdural: { label: 'Subdural', key: '3', range: [-0.1, 1.4] },
  enhancement: { label: 'T1c enhancement', key: '4', range: [0.5, 1.05] },
}

const BACK = [0.04, 0.05, 0.07, 1]

function showsRender(layout) {
  return layout.slice === SLICE_TYPE.RENDER || (layout.slice === SLICE_TYPE.MULTIPLANAR && !!layout.render)
}

export function imageUrl(studyId, image) {
  return `/api/studies/${encodeURIComponent(studyId)}/images/${encodeURIComponent(image)}`
}

// True when WebGL runs on the CPU (no graphics card): the 3D render is then slow to redraw.
export function softwareRendering() {
  try {
    const gl = document.createElement('canvas').getContext('webgl2')
    if (!gl) return true
    const info = gl.getExtension('WEBGL_debug_renderer_info')
    const name = info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER)
    gl.getExtension('WEBGL_lose_context')?.loseContext()
    return /swiftshader|llvmpipe|softpipe|software/i.test(String(name))
  } catch {
    return true
  }
}

function labelColormap(visible, alpha = 255) {
  const cm = { R: [0], G: [0], B: [0], A: [0], I: [0], labels: ['background'] }
  for (const l of LABELS) {
    cm.R.push(l.rgb[0])
    cm.G.push(l.rgb[1])
    cm.B.push(l.rgb[2])
    cm.A.push(visible[l.value] ? alpha : 0)
    cm.I.push(l.value)
    cm.labels.push(l.name)
  }
  return cm
}

export class StudyViewer {
  // shared: a Map the page's viewers share (ImageShare): an image several panes show (the segmentation) is
  // fetched once
  constructor(canvas, studyId, { onLocation, onDrag, onMeasure, onChange, shared } = {}) {
    this.canvas = canvas
    this.studyId = studyId
    this.shared = shared || new Map()
    this.visible = { 1: true, 2: true, 3: true }
    this.overlayOpacity = 0.5
    this.overlayOn = true
    this.heatmapOn = false
    this.background = 'reference'
    this.nv = new Niivue({
      backColor: BACK,
      show3Dcrosshair: true,
      isColorbar: false,
      dragAndDropEnabled: false,
      multiplanarShowRender: 1,
      crosshairColor: [0.2, 0.8, 1, 1],
      isRadiologicalConvention: true, // patient's right on the screen's left, as radiologists read
      multiplanarLayout: MULTIPLANAR_TYPE.GRID, // MPR keeps its 2×2 tiles whatever the sequence's shape
      isOrientationTextVisible: true,
      textHeight: 0.05,
      logLevel: 'warn',
      loadingText: 'Loading images…',
    })
    this.nv.opts.lazyGradient = true // no gradient texture until a layout shows the 3D render (vite.config.js)
    this.onChange = onChange
    this.nv.onLocationChange = (loc) => {
      if (onLocation) onLocation(loc)
      if (onChange) onChange(this)
      if (!StudyViewer.following) this.follow() // the linked viewers show the same position (mouse, wheel, keys)
    }
    this.nv.onIntensityChange = () => onChange && onChange(this)
    this.nv.onDragRelease = (p) => onDrag && onDrag(p)
    this.nv.onMeasurementCompleted = (m) => onMeasure && onMeasure(m)
  }

  // withOverlay: false when the AI results are not open to this reader (the server refuses them anyway)
  // background: the image under the overlay ('reference', or 'sequence-<NAME>' as acquired)
  async open(layout = 'mpr3d', withOverlay = true, background = 'reference') {
    if (this.destroyed) return
    const start = LAYOUTS[layout] || LAYOUTS.mpr3d
    this.nv.opts.multiplanarShowRender = start.render ?? 0
    this.nv.opts.sliceType = start.slice
    this.nv.opts.lazyGradient = !showsRender(start)
    this.attached = true // (from here NiiVue holds listeners and a WebGL context to release)
    await this.nv.attachToCanvas(this.canvas)
    if (this.destroyed) return this.release() // left while opening: the context made meanwhile goes too
    performance.mark('neuronav:viewer-attached')
    // both images are fetched in parallel and handed to the GPU in ONE pass (every NiiVue volume change
    // re-processes all layers; colours are set before that pass)
    this.background = background
    const loads = [this.load(background, { colormap: 'gray' })]
    if (withOverlay) loads.push(this.load('segmentation', { opacity: this.overlayOpacity }))
    const [reference, segmentation] = await Promise.all(loads)
    if (this.destroyed) return
    if (segmentation) {
      segmentation.setColormapLabel(labelColormap(this.visible))
      this.nv.volumes = [reference]
      this.nv.addVolume(segmentation)
      this.segmentation = this.nv.volumes[1]
    } else {
      this.nv.volumes = []
      this.nv.addVolume(reference)
    }
    performance.mark('neuronav:volumes-loaded')
  }

  // An image of the study as an NVImage; its bytes are fetched once for all the viewers sharing `shared`
  // (each viewer decodes its own copy: NiiVue keeps per-viewer state on the image).
  async load(image, opts = {}) {
    const url = imageUrl(this.studyId, image)
    const buffer = await this.prefetch(image)
    return NVImage.loadFromUrl({ url, name: `${image}.nii`, buffer: buffer.slice(0), ...opts })
  }

  // The bytes of an image (fetched once per `shared`), without decoding them yet.
  prefetch(image) {
    const url = imageUrl(this.studyId, image)
    if (!this.shared.has(url)) {
      // ?inflate=true: the same gzip bytes as the HTTP Content-Encoding, inflated by the browser natively
      // (not by NiiVue's JavaScript on the page's thread)
      const bytes = fetch(`${url}?inflate=true`, { credentials: 'same-origin' }).then((r) => {
        if (!r.ok) throw new Error(`${image}: ${r.status} ${r.statusText}`)
        return r.arrayBuffer()
      })
      bytes.catch(() => this.shared.delete(url)) // a failed fetch is tried again by the next viewer
      this.shared.set(url, bytes)
    }
    return this.shared.get(url)
  }

  // The 3D render needs NiiVue's gradient texture (lighting); 2D views do not (it is skipped: lazyGradient).
  ensureGradient(layout) {
    this.nv.opts.lazyGradient = !showsRender(layout)
    if (!this.nv.opts.lazyGradient && !this.nv.gradientTexture && this.nv.volumes.length && this.nv.volumeTexture)
      this.nv.gradientGL(this.nv.volumes[0].hdr)
  }

  applyLabels() {
    if (!this.segmentation) return
    this.segmentation.setColormapLabel(labelColormap(this.visible))
    this.segmentation.opacity = this.overlayOn && !this.heatmapOn ? this.overlayOpacity : 0
    this.update()
  }

  // Coalesce changes into one GPU pass per frame (each pass re-processes every layer).
  update() {
    if (this.pending) return
    this.pending = requestAnimationFrame(() => {
      this.pending = 0
      if (!this.destroyed) this.nv.updateGLVolume()
    })
  }

  setLabelVisible(value, on) {
    this.visible[value] = on
    this.applyLabels()
  }

  setOverlay(on) {
    this.overlayOn = on
    this.applyLabels()
  }

  setOpacity(fraction) {
    this.overlayOpacity = fraction
    this.applyLabels()
    if (this.heatmap && this.heatmapOn) {
      this.heatmap.opacity = fraction
      this.update()
    }
  }

  // Volume changes are made on the list first, then handed to NiiVue with ONE setVolume (one GPU pass).
  async setHeatmap(on) {
    this.heatmapOn = on
    if (on && !this.heatmap) {
      const heatmap = await this.load('heatmap', {
        colormap: 'warm',
        cal_min: 0.1,
        cal_max: 1,
        opacity: this.overlayOpacity,
      })
      if (this.destroyed) return
      this.heatmap = heatmap
      if (this.segmentation) this.segmentation.opacity = 0
      this.nv.volumes.push(heatmap)
      this.nv.setVolume(heatmap, this.nv.volumes.length - 1)
      return
    }
    if (this.heatmap) this.heatmap.opacity = on ? this.overlayOpacity : 0
    this.applyLabels()
  }

  async setBackground(image) {
    if (image === this.background) return
    const vol = await this.load(image, { colormap: 'gray' })
    if (this.destroyed) return
    this.nv.volumes[0] = vol
    this.nv.setVolume(vol, 0)
    this.background = image
  }

  windowLevel() {
    const v = this.nv.volumes[0]
    return { min: v.cal_min, max: v.cal_max, robustMin: v.robust_min, robustMax: v.robust_max }
  }

  setWindow(min, max) {
    const v = this.nv.volumes[0]
    if (!(max > min)) return false
    v.cal_min = min
    v.cal_max = max
    this.update()
    if (this.onChange) this.onChange(this)
    return true
  }

  setPreset(name) {
    const p = PRESETS[name] || PRESETS.auto
    const w = this.windowLevel()
    const r0 = w.robustMin ?? w.min
    const span = (w.robustMax ?? w.max) - r0
    return this.setWindow(r0 + p.range[0] * span, r0 + p.range[1] * span)
  }

  setLayout(key) {
    const layout = LAYOUTS[key] || LAYOUTS.mpr3d
    this.nv.opts.multiplanarShowRender = layout.render ?? 0
    this.ensureGradient(layout)
    this.nv.setSliceType(layout.slice)
  }

  // The left button (and one finger) does what the tool says; the right button always sets window/level.
  // Measuring tools are drawn by the page over the canvas (study.js); NiiVue only follows the crosshair.
  setTool(tool) {
    const modes = { navigate: DRAG_MODE.crosshair, windowing: DRAG_MODE.contrast, pan: DRAG_MODE.pan }
    this.nv.opts.dragModePrimary = modes[tool] ?? DRAG_MODE.crosshair
    this.nv.opts.dragMode = DRAG_MODE.contrast
  }

  // The plane shown (axial in MPR and 3D: the reading plane), and its RAS axis.
  plane() {
    return PLANES[this.nv.opts.sliceType] || 'axial'
  }

  // Slice n of N (1-based) on the image's own grid along the plane's axis, and the position in mm.
  sliceInfo(plane = this.plane()) {
    const v = this.nv.volumes[0]
    const axis = PLANE_AXIS[plane]
    const count = v && v.dimsRAS ? v.dimsRAS[axis + 1] : 0
    const frac = this.nv.scene.crosshairPos[axis]
    const index = Math.min(count, Math.max(1, Math.floor(frac * count) + 1))
    return { plane, name: AXIS_NAME[axis], axis, index, count, mm: this.crosshairMM()[axis] }
  }

  // Half the slice thickness along the axis: what lies within it is on the slice shown.
  halfSlice(axis) {
    const v = this.nv.volumes[0]
    const pix = v && v.pixDimsRAS ? v.pixDimsRAS[axis + 1] : 1
    return Math.max(0.5, 0.5 * (pix || 1))
  }

  stepSlice(delta, plane = this.plane()) {
    this.step(PLANE_AXIS[plane], delta)
  }

  // Move to slice n (1-based) of the plane.
  goToSlice(n, plane = this.plane()) {
    const info = this.sliceInfo(plane)
    this.step(info.axis, n - info.index)
  }

  zoom() {
    return this.nv.scene.pan2Dxyzmm[3]
  }

  zoomBy(factor) {
    const p = this.nv.scene.pan2Dxyzmm
    this.setZoomPan([p[0], p[1], p[2], Math.min(10, Math.max(0.5, p[3] * factor))])
  }

  setZoomPan(xyzmmZoom) {
    this.nv.scene.pan2Dxyzmm = [...xyzmmZoom]
    this.nv.drawScene()
    this.follow()
    if (this.onChange) this.onChange(this)
  }

  // Scanner mm → CSS pixels on the canvas (the tile of the plane shown), or null when not on screen.
  project(mm, plane = this.plane()) {
    const type = { axial: SLICE_TYPE.AXIAL, coronal: SLICE_TYPE.CORONAL, sagittal: SLICE_TYPE.SAGITTAL }[plane]
    const hit = this.nv.frac2canvasPosWithTile(this.nv.mm2frac([mm[0], mm[1], mm[2]]), type)
    if (!hit || !hit.pos) return null
    const dpr = this.nv.uiData.dpr || 1
    return [hit.pos[0] / dpr, hit.pos[1] / dpr]
  }

  // The plane of the tile under CSS pixels (x, y) of the canvas (MPR shows three), or null.
  planeAt(x, y) {
    const dpr = this.nv.uiData.dpr || 1
    const i = this.nv.tileIndex(x * dpr, y * dpr)
    const tile = i >= 0 ? this.nv.screenSlices[i] : null
    return tile ? PLANES[tile.axCorSag] || null : null
  }

  // CSS pixels on the canvas → scanner mm, or null outside the image.
  unproject(x, y) {
    const dpr = this.nv.uiData.dpr || 1
    const frac = this.nv.canvasPos2frac([x * dpr, y * dpr])
    if (!frac || frac[0] < 0) return null
    const mm = this.nv.frac2mm(frac)
    return [mm[0], mm[1], mm[2]]
  }

  crosshairMM() {
    const mm = this.nv.frac2mm(this.nv.scene.crosshairPos)
    return [mm[0], mm[1], mm[2]]
  }

  jumpTo(mm) {
    this.nv.scene.crosshairPos = this.nv.mm2frac([mm[0], mm[1], mm[2]])
    this.nv.createOnLocationChange()
    this.nv.drawScene()
    this.follow()
  }

  step(axis, delta) {
    const d = [0, 0, 0]
    d[axis] = delta
    this.nv.moveCrosshairInVox(d[0], d[1], d[2])
    this.follow()
  }

  // Every move (mouse, wheel and keys on a canvas: onLocationChange; the page's buttons: step, jumpTo) is
  // passed on here: the peers show the same scanner position (mm), zoom and pan, drawn in the next frame
  // (one draw per peer and frame however many moves came: a step both changes the location and asks to
  // follow). One pass: a peer's redraw does not pass the move on again — linked images of different grids
  // would otherwise nudge each other for ever by rounding.
  follow() {
    if (StudyViewer.following || this.destroyed || this.followFrame) return
    this.followFrame = requestAnimationFrame(() => {
      this.followFrame = 0
      if (!this.destroyed) this.syncPeers()
    })
  }

  syncPeers() {
    StudyViewer.following = true
    try {
      const mm = this.crosshairMM()
      for (const peer of this.peers || []) {
        if (peer.destroyed || !peer.nv.volumes.length) continue
        peer.nv.scene.crosshairPos = peer.nv.mm2frac(mm)
        peer.nv.scene.pan2Dxyzmm = [...this.nv.scene.pan2Dxyzmm]
        peer.nv.drawScene()
        if (peer.onChange) peer.onChange(peer)
      }
    } finally {
      StudyViewer.following = false
    }
  }

  // Link viewers: crosshair, slice, zoom and pan follow each other (by follow(), after every move
  // made on any of them).
  static link(viewers) {
    for (const v of viewers) v.peers = [...new Set([...(v.peers || []), ...viewers.filter((o) => o !== v)])]
  }

  syncWith(other) {
    StudyViewer.link([this, other])
  }

  // Leave the linked set (the others stay linked with each other).
  unsync() {
    for (const peer of this.peers || []) peer.peers = (peer.peers || []).filter((p) => p !== this)
    this.peers = []
  }

  // Release everything the viewer holds: NiiVue's listeners and observers (its window 'resize'
  // listener would otherwise keep the instance, its volumes and its WebGL context alive after the
  // page is gone: NiiVue cleans up by itself only when the canvas is removed from its own parent),
  // the synchronisation with a peer, a pending frame, the volumes, and the WebGL context. Safe to
  // call more than once, and while open() is still loading (open() then stops).
  destroy() {
    if (this.destroyed) return
    this.destroyed = true
    if (this.pending) cancelAnimationFrame(this.pending)
    if (this.followFrame) cancelAnimationFrame(this.followFrame)
    this.pending = 0
    this.followFrame = 0
    this.unsync()
    this.release()
  }

  release() {
    if (!this.attached) return // never opened (a pane of the grid left before its turn): nothing held
    try {
      this.nv.broadcastTo([], {})
      this.nv.cleanup()
      this.nv.volumes.splice(0)
      const gl = this.nv.gl
      const lose = gl && gl.getExtension('WEBGL_lose_context')
      if (lose) lose.loseContext()
    } catch (err) {
      console.warn('the viewer was not released cleanly', err)
    }
  }
}
