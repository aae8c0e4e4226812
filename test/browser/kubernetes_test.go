package browser

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

// neededCaps are the capabilities procmesh uses; deploy/deploy_test.go
// checks the systemd unit bounds procmesh to the same set.
var neededCaps = []string{"BPF", "PERFMON", "NET_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH", "CHOWN"}

// TestKubernetesManifests decodes every document of
// deploy/kubernetes/procmesh.yaml strictly (an unknown or misspelt field
// fails) into its k8s.io/api type, checks what procmesh needs of the
// DaemonSet (host PID namespace, the socket directory as a hostPath, the
// admin port for the probes, only the capabilities procmesh uses), and runs
// `procmesh check` on the ConfigMap's config.
func TestKubernetesManifests(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "kubernetes", "procmesh.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ds *appsv1.DaemonSet
	var cm *corev1.ConfigMap
	kinds := map[string]bool{}
	for _, doc := range bytes.Split(b, []byte("\n---\n")) {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		var obj any
		switch meta.Kind {
		case "Namespace":
			obj = &corev1.Namespace{}
		case "ConfigMap":
			cm = &corev1.ConfigMap{}
			obj = cm
		case "DaemonSet":
			ds = &appsv1.DaemonSet{}
			obj = ds
		case "NetworkPolicy":
			obj = &networkingv1.NetworkPolicy{}
		default:
			t.Fatalf("unexpected kind %q", meta.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Fatalf("%s: %v", meta.Kind, err)
		}
		kinds[meta.Kind] = true
	}
	if ds == nil || cm == nil || len(kinds) != 4 {
		t.Fatalf("documents: %v", kinds)
	}

	spec := ds.Spec.Template.Spec
	if !spec.HostPID {
		t.Error("hostPID is not set: procmesh could not see the pods' processes")
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers", len(spec.Containers))
	}
	c := spec.Containers[0]
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" ||
		c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Error("the probes are not /healthz and /readyz")
	}
	if len(c.Ports) != 1 || c.Ports[0].Name != "admin" || c.Ports[0].ContainerPort != 9902 {
		t.Errorf("ports %+v; want admin 9902", c.Ports)
	}
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil || sc.Privileged == nil || *sc.Privileged ||
		!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Fatalf("security context: %+v", sc)
	}
	var added []string
	for _, c := range sc.Capabilities.Add {
		added = append(added, string(c))
	}
	if !slices.Equal(slices.Sorted(slices.Values(added)), slices.Sorted(slices.Values(neededCaps))) {
		t.Errorf("capabilities added %v; want exactly %v", added, neededCaps)
	}
	var socketDir bool
	for _, v := range spec.Volumes {
		if v.HostPath != nil && v.HostPath.Path == "/run/procmesh" {
			socketDir = true
		}
	}
	if !socketDir {
		t.Error("no hostPath volume /run/procmesh: pods could not reach the socket")
	}

	conf, ok := cm.Data["procmesh.yaml"]
	if !ok || !strings.Contains(conf, "listen: 0.0.0.0:9902") || !strings.Contains(conf, `mode: "0666"`) {
		t.Fatalf("ConfigMap procmesh.yaml:\n%s", conf)
	}
	path := filepath.Join(t.TempDir(), "procmesh.yaml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := buildProcmesh(t)
	if out, err := exec.Command(filepath.Join(bin, "procmesh"), "check", "-config", path).CombinedOutput(); err != nil {
		t.Fatalf("procmesh check on the ConfigMap's config: %v\n%s", err, out)
	}
}
