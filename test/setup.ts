// libp2p needs Promise.withResolvers on Node 20; load the polyfill before any test module.
import '../shared/polyfill.ts'
