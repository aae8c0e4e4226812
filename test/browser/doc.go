// Package browser holds the tests that need heavy dependencies procmesh's
// own module does not carry: the status page loaded in a real headless
// Chromium (github.com/chromedp/chromedp) while traffic runs, and the
// Kubernetes manifests in deploy/ decoded strictly into k8s.io/api types.
// It is a module of its own, like test/spire; `make test` runs it (without
// -race).
package browser
