// Package deploy holds the files to deploy procmesh with (a systemd unit,
// Kubernetes manifests, a Prometheus scrape config and a Grafana
// dashboard) and the tests that check them with the tools that read them.
// The Kubernetes manifests are decoded strictly into k8s.io/api types in
// test/browser, a module of its own, so that procmesh's module does not
// carry k8s.io/api.
package deploy
