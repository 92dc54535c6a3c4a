// The volume viewer: NiiVue with the study's images (scanner/RAS millimetres), the BraTS label
// overlay, the heatmap, window/level, layouts, and a synchronised second viewer for a prior study.
import { DRAG_MODE, Niivue, NVImage, SLICE_TYPE } from '@niivue/niivue'

export const LABELS = [
  { value: 1, name: 'Necrotic core', rgb: [230, 60, 60] },
  { value: 2, name: 'Oedema', rgb: [60, 200, 90] },
  { value: 3, name: 'Enhancing tumour', rgb: [250, 220, 40] },
]
export const LAYOUTS = {
  mpr3d: { label: 'Axial, coronal, sagittal and 3D', slice: SLICE_TYPE.MULTIPLANAR, render: 1 },
  mpr: { label: 'Axial, coronal and sagittal', slice: SLICE_TYPE.MULTIPLANAR, render: 0 },
  axial: { label: 'Axial', slice: SLICE_TYPE.AXIAL },
  coronal: { label: 'Coronal', slice: SLICE_TYPE.CORONAL },
  sagittal: { label: 'Sagittal', slice: SLICE_TYPE.SAGITTAL },
  render: { label: '3D render', slice: SLICE_TYPE.RENDER },
}
export const PLANES = { [SLICE_TYPE.AXIAL]: 'axial', [SLICE_TYPE.CORONAL]: 'coronal', [SLICE_TYPE.SAGITTAL]: 'sagittal' }

const BACK = [0.04, 0.05, 0.07, 1]

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
  constructor(canvas, studyId, { onLocation, onDrag, onMeasure } = {}) {
    this.canvas = canvas
    this.studyId = studyId
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
      logLevel: 'warn',
      loadingText: 'Loading images…',
    })
    this.nv.onLocationChange = (loc) => onLocation && onLocation(loc)
    this.nv.onDragRelease = (p) => onDrag && onDrag(p)
    this.nv.onMeasurementCompleted = (m) => onMeasure && onMeasure(m)
  }

  // withOverlay: false when the AI results are not open to this reader (the server refuses them anyway)
  async open(layout = 'mpr3d', withOverlay = true) {
    if (this.destroyed) return
    const start = LAYOUTS[layout] || LAYOUTS.mpr3d
    this.nv.opts.multiplanarShowRender = start.render ?? 0
    this.nv.opts.sliceType = start.slice
    await this.nv.attachToCanvas(this.canvas)
    if (this.destroyed) return this.release() // left while opening: the context made meanwhile goes too
    performance.mark('neuronav:viewer-attached')
    // both images are fetched in parallel and handed to the GPU in ONE pass (every NiiVue volume change
    // re-processes all layers; colours are set before that pass)
    const loads = [NVImage.loadFromUrl({ url: imageUrl(this.studyId, 'reference'), name: 'reference.nii.gz', colormap: 'gray' })]
    if (withOverlay) {
      loads.push(
        NVImage.loadFromUrl({ url: imageUrl(this.studyId, 'segmentation'), name: 'segmentation.nii.gz', opacity: this.overlayOpacity }),
      )
    }
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
      const heatmap = await NVImage.loadFromUrl({
        url: imageUrl(this.studyId, 'heatmap'),
        name: 'probability.nii.gz',
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
    const vol = await NVImage.loadFromUrl({ url: imageUrl(this.studyId, image), name: `${image}.nii.gz`, colormap: 'gray' })
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
    return true
  }

  setLayout(key) {
    const layout = LAYOUTS[key] || LAYOUTS.mpr3d
    this.nv.opts.multiplanarShowRender = layout.render ?? 0
    this.nv.setSliceType(layout.slice)
  }

  // The left button (and one finger) does what the tool says; the right button always sets window/level.
  setTool(tool) {
    const modes = { navigate: DRAG_MODE.crosshair, distance: DRAG_MODE.measurement, roi: DRAG_MODE.roiSelection, pan: DRAG_MODE.pan }
    this.nv.opts.dragModePrimary = modes[tool] ?? DRAG_MODE.crosshair
    this.nv.opts.dragMode = DRAG_MODE.contrast
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

  // Mouse and keyboard on a canvas are synchronised by NiiVue (broadcastTo); moves made with the
  // buttons are passed on here: the peer shows the same scanner position (mm).
  follow() {
    for (const peer of this.peers || []) {
      peer.nv.scene.crosshairPos = peer.nv.mm2frac(this.crosshairMM())
      peer.nv.drawScene()
    }
  }

  syncWith(other) {
    this.peers = [other]
    this.nv.broadcastTo([other.nv], { '2d': true, '3d': true, crosshair: true })
    other.nv.broadcastTo([this.nv], { '2d': true, '3d': true, crosshair: true })
  }

  unsync() {
    this.peers = []
    this.nv.broadcastTo([], {})
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
    this.pending = 0
    for (const peer of this.peers || []) peer.unsync()
    this.peers = []
    this.release()
  }

  release() {
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
