// Readers' measurements as objects on the images: an SVG layer over each viewer pane draws every saved
// measurement lying on the slice shown (distance, rectangle and ellipse ROIs, RANO bidimensional, notes)
// at its scanner position, labelled with the value the server computed and saved; a click selects one,
// its author drags it to move it (the server computes its values again at the new place and the label
// shows them), Delete removes it (its author's own); the measuring tools draw here too and save what
// was drawn. Lines and labels carry a dark outline: legible on a bright or a dark background.
import { num } from './ui.js'
import { PLANE_AXIS } from './viewer.js'

export const TOOLS = {
  navigate: { label: 'Navigate (right-drag: window/level)' },
  windowing: { label: 'Window/level (drag)' },
  pan: { label: 'Pan (drag)' },
  distance: { label: 'Distance', measures: true },
  roi: { label: 'Rectangle ROI', measures: true },
  ellipse: { label: 'Ellipse ROI', measures: true },
  bidimensional: { label: 'Bidimensional (RANO): longest diameter, then perpendicular', measures: true },
}

export function valueText(a) {
  const v = a.values || {}
  if (a.kind === 'distance') return `${num(v.length_mm)} mm`
  if (a.kind === 'roi' || a.kind === 'ellipse') return `${num(v.area_mm2)} mm², mean ${num(v.mean)} (SD ${num(v.sd)})`
  if (a.kind === 'bidimensional') return `${num(v.long_mm)} × ${num(v.short_mm)} mm, product ${num(v.product_mm2)} mm²`
  return ''
}

const NS = 'http://www.w3.org/2000/svg'
function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag)
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, String(v))
  if (text !== undefined) el.textContent = text
  return el
}

const sub = (a, b) => [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
const add = (a, b) => [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
const mul = (a, k) => [a[0] * k, a[1] * k, a[2] * k]
const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2]

// The perpendicular of RANO's bidimensional measurement: the second stroke without its component along
// the first diameter, centred where it was drawn.
export function perpendicular(first, start, end) {
  const u = sub(first[1], first[0])
  const uu = dot(u, u) || 1
  const v = sub(end, start)
  const w = sub(v, mul(u, dot(v, u) / uu))
  const centre = mul(add(start, end), 0.5)
  return [sub(centre, mul(w, 0.5)), add(centre, mul(w, 0.5))]
}

export class MeasureLayer {
  constructor({ canMeasure, userId, save, remove, select, move }) {
    this.canMeasure = canMeasure
    this.userId = userId
    this.save = save
    this.remove = remove
    this.onMove = move // (annotation, new points_mm) → saved on the server
    this.moving = null // { entry, a, plane, start, delta }: a measurement being dragged
    this.onSelect = select
    this.entries = new Map() // pane → { pane, viewer, layer }
    this.items = []
    this.tool = 'navigate'
    this.selected = null
    this.draft = null // the stroke being drawn
    this.first = null // RANO: the longest diameter, waiting for its perpendicular
    this.frame = 0
  }

  attach(pane, viewer) {
    const layer = svg('svg', { class: 'measure-layer', 'aria-hidden': 'true' })
    pane.box.append(layer)
    const entry = { pane, viewer, layer }
    this.entries.set(pane, entry)
    layer.addEventListener('pointerdown', (e) => this.down(entry, e))
    layer.addEventListener('pointermove', (e) => this.move(entry, e))
    layer.addEventListener('pointerup', (e) => this.up(entry, e))
    layer.addEventListener('pointercancel', () => this.cancel())
    // pan and zoom by NiiVue's own mouse handling move the image: draw again after them
    for (const type of ['pointerup', 'wheel'])
      pane.box.addEventListener(
        type,
        () => {
          viewer.follow() // zoom and pan too
          this.redraw()
        },
        { passive: true },
      )
    this.setTool(this.tool)
  }

  detach(pane) {
    const entry = this.entries.get(pane)
    if (entry) entry.layer.remove()
    this.entries.delete(pane)
  }

  setTool(name) {
    this.tool = name
    this.draft = null
    this.first = null
    const drawing = !!(TOOLS[name] && TOOLS[name].measures && this.canMeasure)
    for (const e of this.entries.values()) e.layer.classList.toggle('drawing', drawing)
    this.redraw()
  }

  setAnnotations(items) {
    this.items = items
    if (this.selected) this.selected = items.find((a) => a.id === this.selected.id) || null
    this.redraw()
  }

  select(a) {
    this.selected = a ? this.items.find((x) => x.id === a.id) || a : null
    if (this.onSelect) this.onSelect(this.selected)
    this.redraw()
  }

  deleteSelected() {
    const a = this.selected
    if (a && a.author_id === this.userId) {
      this.selected = null
      this.remove(a)
    }
  }

  cancel() {
    this.draft = null
    this.first = null
    this.stopMoving()
    this.select(null)
  }

  // -- moving (drag a selected measurement of your own) -----------------------------------------
  canMove(a) {
    return !!(this.canMeasure && this.onMove && a.author_id === this.userId && !a.include_in_report && a.kind !== 'text')
  }

  startMoving(entry, a, e) {
    const plane = a.plane || entry.viewer.plane()
    const { mm } = this.point(entry, e)
    if (!mm) return
    const onMove = (ev) => {
      const m = this.moving
      if (!m) return
      const p = this.point(m.entry, ev).mm
      if (!p) return
      const d = sub(p, m.start)
      d[PLANE_AXIS[m.plane]] = 0 // it stays on its slice
      m.delta = d
      this.redraw()
    }
    const onUp = (ev) => {
      onMove(ev)
      const m = this.moving
      this.stopMoving()
      if (!m || Math.hypot(...m.delta) < 0.5) return this.redraw() // a click: selected only
      m.a.points_mm = m.a.points_mm.map((q) => add(q, m.delta)) // drawn there until the server answers
      m.a.pending = true
      this.redraw()
      this.onMove(m.a, m.a.points_mm)
    }
    window.addEventListener('pointermove', onMove)
    window.addEventListener('pointerup', onUp)
    window.addEventListener('pointercancel', onUp)
    this.moving = {
      entry,
      a,
      plane,
      start: mm,
      delta: [0, 0, 0],
      off: () => {
        window.removeEventListener('pointermove', onMove)
        window.removeEventListener('pointerup', onUp)
        window.removeEventListener('pointercancel', onUp)
      },
    }
  }

  stopMoving() {
    if (this.moving) this.moving.off()
    this.moving = null
  }

  // -- drawing --------------------------------------------------------------------------------
  point(entry, e) {
    const r = entry.layer.getBoundingClientRect()
    const x = e.clientX - r.left
    const y = e.clientY - r.top
    return { mm: entry.viewer.unproject(x, y), plane: entry.viewer.planeAt(x, y) }
  }

  down(entry, e) {
    if (!entry.layer.classList.contains('drawing') || e.button > 0) return
    const { mm, plane } = this.point(entry, e)
    if (!mm || !plane) return
    e.preventDefault()
    e.stopPropagation()
    entry.layer.setPointerCapture(e.pointerId)
    this.draft = { entry, plane, start: mm, end: mm }
  }

  move(entry, e) {
    if (!this.draft || this.draft.entry !== entry) return
    const { mm } = this.point(entry, e)
    if (mm) this.draft.end = this.onPlane(mm)
    this.redraw()
  }

  // keep the stroke on the plane where it started (the slice does not change while drawing)
  onPlane(mm) {
    const axis = PLANE_AXIS[this.draft.plane]
    const p = [...mm]
    p[axis] = this.draft.start[axis]
    return p
  }

  up(entry, e) {
    const d = this.draft
    if (!d || d.entry !== entry) return
    this.draft = null
    const { mm } = this.point(entry, e)
    if (mm) d.end = this.onPlane.call({ draft: d }, mm)
    const length = Math.hypot(...sub(d.end, d.start))
    if (length < 1) {
      this.redraw()
      return
    }
    const image = entry.viewer.background
    if (this.tool === 'distance') this.save({ kind: 'distance', points_mm: [d.start, d.end], plane: d.plane })
    else if (this.tool === 'roi' || this.tool === 'ellipse')
      this.save({ kind: this.tool, points_mm: [d.start, d.end], plane: d.plane, image })
    else if (this.tool === 'bidimensional') {
      if (!this.first) {
        this.first = { points: [d.start, d.end], plane: d.plane }
      } else {
        const [c, dd] = perpendicular(this.first.points, d.start, d.end)
        const points = [...this.first.points, c, dd]
        this.first = null
        this.save({ kind: 'bidimensional', points_mm: points, plane: d.plane })
      }
    }
    this.redraw()
  }

  // -- painting (one per frame) -----------------------------------------------------------------
  redraw() {
    if (this.frame) return
    this.frame = requestAnimationFrame(() => {
      this.frame = 0
      for (const e of this.entries.values()) this.paint(e)
    })
  }

  paint(entry) {
    const { viewer, layer } = entry
    layer.replaceChildren()
    if (viewer.destroyed || !viewer.nv.volumes.length) return
    const here = viewer.crosshairMM()
    for (const a of this.items) {
      if (!a.points_mm || !a.points_mm.length) continue
      const plane = a.plane || viewer.plane()
      const axis = PLANE_AXIS[plane]
      const tol = viewer.halfSlice(axis) + 0.01
      if (a.points_mm.some((p) => Math.abs(p[axis] - here[axis]) > tol)) continue
      const moving = this.moving && this.moving.a.id === a.id ? this.moving.delta : null
      const pts = a.points_mm.map((p) => viewer.project(moving ? add(p, moving) : p, plane))
      if (pts.some((p) => !p)) continue
      // the value shown is the value saved: while it moves (and until the server answers) no value
      const value = moving || a.pending ? 'moving…' : valueText(a)
      const g = this.shape(a.kind, pts, value + (a.text ? ` — ${a.text}` : ''))
      g.classList.add('shape')
      if (this.canMove(a)) g.classList.add('movable')
      if (this.selected && this.selected.id === a.id) g.classList.add('selected')
      g.dataset.annotationId = a.id
      g.addEventListener('pointerdown', (e) => {
        if (layer.classList.contains('drawing') || e.button > 0) return
        e.stopPropagation()
        e.preventDefault()
        this.select(a)
        if (this.canMove(a)) this.startMoving(entry, a, e)
      })
      layer.append(g)
    }
    const stroke = this.draft && this.draft.entry.viewer === viewer ? this.draft : null
    if (this.first) {
      const pts = this.first.points.map((p) => viewer.project(p, this.first.plane))
      if (pts.every(Boolean)) layer.append(this.shape('distance', pts, 'longest diameter', 'draft'))
    }
    if (stroke) {
      const pts = [stroke.start, stroke.end].map((p) => viewer.project(p, stroke.plane))
      const kind = this.tool === 'bidimensional' ? 'distance' : this.tool
      if (pts.every(Boolean)) layer.append(this.shape(kind, pts, '', 'draft'))
    }
  }

  shape(kind, pts, label, cls = '') {
    const g = svg('g', { class: cls })
    // each line twice: a dark, wider one under the bright one (legible on any background)
    const line = (a, b) => {
      g.append(svg('line', { x1: a[0], y1: a[1], x2: b[0], y2: b[1], class: 'halo' }))
      g.append(svg('line', { x1: a[0], y1: a[1], x2: b[0], y2: b[1] }))
    }
    let at = pts[pts.length - 1]
    if (kind === 'distance') {
      line(pts[0], pts[1])
      for (const p of pts) g.append(svg('circle', { cx: p[0], cy: p[1], r: 3 }))
    } else if (kind === 'bidimensional') {
      line(pts[0], pts[1])
      line(pts[2], pts[3])
      at = pts[1]
    } else if (kind === 'roi' || kind === 'ellipse') {
      const [x0, x1] = [Math.min(pts[0][0], pts[1][0]), Math.max(pts[0][0], pts[1][0])]
      const [y0, y1] = [Math.min(pts[0][1], pts[1][1]), Math.max(pts[0][1], pts[1][1])]
      for (const c of ['halo', '']) {
        const attrs = { class: c || null }
        if (kind === 'roi') g.append(svg('rect', { x: x0, y: y0, width: x1 - x0, height: y1 - y0, ...attrs }))
        else g.append(svg('ellipse', { cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, rx: (x1 - x0) / 2, ry: (y1 - y0) / 2, ...attrs }))
      }
      at = [x1, y0]
    } else {
      g.append(svg('circle', { cx: pts[0][0], cy: pts[0][1], r: 4 }))
      at = pts[0]
    }
    if (label) g.append(svg('text', { x: at[0] + 6, y: at[1] - 6, class: 'label' }, label))
    return g
  }
}
