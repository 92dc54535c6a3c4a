// Builds the web UI into the Python package, where the service serves it (src/neuronav/service/routes/web.py).
import { defineConfig } from 'vite'

export default defineConfig({
  base: '/',
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
