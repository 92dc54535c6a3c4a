// Builds the web UI into the Python package, where the service serves it (src/neuronav/service/routes/web.py).
import { defineConfig } from 'vite'

// NiiVue computes a gradient texture of the background volume (a blur and a Sobel pass over every
// voxel) each time its layers change; only the 3D render uses it. Without a graphics card (software
// WebGL) those two passes are most of the time a 2D view takes to appear, four times over in the 2×2
// hanging protocol. With `nv.opts.lazyGradient` set the pass is skipped (the texture is dropped), and
// viewer.js makes it (nv.gradientGL, NiiVue's own method) when a layout shows the 3D render.
// The build fails when NiiVue's code no longer has the statement patched here: check it on upgrades.
const GRADIENT_CALL = 'this.volumeTexture = outTexture;\n      this.gradientTexture = gradientGL({'
function niivueLazyGradient() {
  return {
    name: 'niivue-lazy-gradient',
    transform(code, id) {
      if (!/@niivue[\\/]niivue[\\/](dist|build[\\/]niivue)[\\/]index\.js$/.test(id)) return null
      if (!code.includes(GRADIENT_CALL)) this.error('NiiVue changed: the lazy gradient patch (vite.config.js) no longer applies')
      return code.replace(
        GRADIENT_CALL,
        'this.volumeTexture = outTexture;\n      if (this.opts.lazyGradient) { if (this.gradientTexture) this.gl.deleteTexture(this.gradientTexture); this.gradientTexture = null } else this.gradientTexture = gradientGL({',
      )
    },
  }
}

export default defineConfig({
  base: '/',
  plugins: [niivueLazyGradient()],
  // `npx vite`: the UI with hot reload, the API of a `neuronav serve` on port 8000 behind it
  server: { proxy: { '/api': 'http://127.0.0.1:8000' } },
  build: {
    outDir: '../src/neuronav/service/webui',
    emptyOutDir: true,
    assetsDir: 'assets',
    chunkSizeWarningLimit: 4000,
    sourcemap: false,
  },
})
