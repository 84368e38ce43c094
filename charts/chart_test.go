// Package charts tests the Helm chart in strom/: it lints the chart like
// `helm lint`, renders it like `helm template` for the default values and
// every ci/*.yaml scenario, compares the manifests with golden files,
// validates them offline against the Kubernetes API types, and checks the
// values documentation and the rendered Strom flags.
//
//	go test ./...            # in charts/ (GOWORK=off until charts joins go.work)
//	go test ./... -rewrite   # after changing the chart: rewrite testdata/ and the README values table
package charts

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	yamlv3 "go.yaml.in/yaml/v3"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the golden files and the README values table")

const (
	chartDir    = "strom"
	releaseName = "strom"
	namespace   = "strom"
)

// kubeVersion is the Kubernetes version the chart is linted and rendered
// for (helm's --kube-version); the chart needs 1.30 or later.
const kubeVersion = "v1.34.0"

// requiredValues are the settings the chart cannot default: the "default"
// scenario is values.yaml plus these alone.
const requiredValues = `
catalog:
  postgres:
    url: postgres://strom:secret@postgres:5432/strom
objstore:
  s3:
    bucket: strom
`

// scenario is one set of user values: the defaults plus the required
// settings, or a ci/*.yaml file.
type scenario struct {
	name   string
	values map[string]any
}

func scenarios(t *testing.T) []scenario {
	t.Helper()
	req, err := chartutil.ReadValues([]byte(requiredValues))
	if err != nil {
		t.Fatal(err)
	}
	out := []scenario{{name: "default", values: req}}
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no ci/*.yaml scenarios")
	}
	for _, f := range files {
		vals, err := chartutil.ReadValuesFile(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, scenario{name: strings.TrimSuffix(filepath.Base(f), ".yaml"), values: vals})
	}
	return out
}

func TestLint(t *testing.T) {
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range scenarios(t) {
		t.Run(sc.name, func(t *testing.T) {
			res := lint.AllWithKubeVersion(chartDir, sc.values, namespace, kv)
			for _, m := range res.Messages {
				if m.Severity >= support.WarningSev {
					t.Error(m)
				} else {
					t.Log(m)
				}
			}
		})
	}
}

// render renders the chart like `helm template strom strom/ -n strom`:
// the manifests of every template that produced one, by template path.
func render(t *testing.T, vals map[string]any) (map[string]string, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	return renderChart(t, ch, vals)
}

func renderChart(t *testing.T, ch *chart.Chart, vals map[string]any) (map[string]string, error) {
	t.Helper()
	caps := chartutil.DefaultCapabilities.Copy()
	kv, err := chartutil.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	caps.KubeVersion = *kv
	if err := chartutil.ProcessDependenciesWithMerge(ch, vals); err != nil {
		t.Fatal(err)
	}
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{
		Name: releaseName, Namespace: namespace, Revision: 1, IsInstall: true,
	}, caps)
	if err != nil {
		return nil, err
	}
	out, err := engine.Render(ch, rv)
	if err != nil {
		return nil, err
	}
	for name, s := range out {
		if strings.HasSuffix(name, "NOTES.txt") || strings.TrimSpace(s) == "" {
			delete(out, name)
		}
	}
	return out, nil
}

// manifest is one rendered document.
type manifest struct {
	source string // template path
	doc    string
}

// documents splits rendered templates into documents, ordered by template path.
func documents(rendered map[string]string) []manifest {
	names := make([]string, 0, len(rendered))
	for n := range rendered {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []manifest
	for _, n := range names {
		for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(rendered[n], -1) {
			if strings.TrimSpace(d) != "" {
				out = append(out, manifest{source: n, doc: strings.Trim(d, "\n") + "\n"})
			}
		}
	}
	return out
}

// TestRender renders every scenario, compares the manifests with
// testdata/<scenario>.yaml and validates them.
func TestRender(t *testing.T) {
	for _, sc := range scenarios(t) {
		t.Run(sc.name, func(t *testing.T) {
			rendered, err := render(t, sc.values)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			docs := documents(rendered)
			var b strings.Builder
			for _, d := range docs {
				fmt.Fprintf(&b, "---\n# Source: %s\n%s", d.source, d.doc)
			}
			golden(t, filepath.Join("testdata", sc.name+".yaml"), b.String())
			objs := decodeStrict(t, docs)
			validate(t, objs)
			checkStromArgs(t, objs)
		})
	}
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *rewrite {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -rewrite to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from the rendered chart (run with -rewrite and review the diff):\n%s", path, lineDiff(string(want), got))
	}
}

// lineDiff reports the first differing lines, enough to see what changed.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return fmt.Sprintf("line %d:\n- %s\n+ %s", i+1, a, b)
		}
	}
	return ""
}

// objects are the rendered manifests decoded into their API types.
type objects struct {
	configMaps      []*corev1.ConfigMap
	secrets         []*corev1.Secret
	services        []*corev1.Service
	serviceAccounts []*corev1.ServiceAccount
	statefulSets    []*appsv1.StatefulSet
	deployments     []*appsv1.Deployment
	hpas            []*autoscalingv2.HorizontalPodAutoscaler
	pdbs            []*policyv1.PodDisruptionBudget
	serviceMonitors []*monitoringv1.ServiceMonitor
}

// decodeStrict decodes every document into the Go type of its apiVersion
// and kind; unknown fields, wrong types and unknown kinds are errors. This
// is the offline schema check: the types are those the API server decodes.
func decodeStrict(t *testing.T, docs []manifest) objects {
	t.Helper()
	var o objects
	for _, d := range docs {
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(d.doc), &meta); err != nil {
			t.Errorf("%s: %v", d.source, err)
			continue
		}
		var obj any
		switch meta.APIVersion + "/" + meta.Kind {
		case "v1/ConfigMap":
			o.configMaps = append(o.configMaps, new(corev1.ConfigMap))
			obj = o.configMaps[len(o.configMaps)-1]
		case "v1/Secret":
			o.secrets = append(o.secrets, new(corev1.Secret))
			obj = o.secrets[len(o.secrets)-1]
		case "v1/Service":
			o.services = append(o.services, new(corev1.Service))
			obj = o.services[len(o.services)-1]
		case "v1/ServiceAccount":
			o.serviceAccounts = append(o.serviceAccounts, new(corev1.ServiceAccount))
			obj = o.serviceAccounts[len(o.serviceAccounts)-1]
		case "apps/v1/StatefulSet":
			o.statefulSets = append(o.statefulSets, new(appsv1.StatefulSet))
			obj = o.statefulSets[len(o.statefulSets)-1]
		case "apps/v1/Deployment":
			o.deployments = append(o.deployments, new(appsv1.Deployment))
			obj = o.deployments[len(o.deployments)-1]
		case "autoscaling/v2/HorizontalPodAutoscaler":
			o.hpas = append(o.hpas, new(autoscalingv2.HorizontalPodAutoscaler))
			obj = o.hpas[len(o.hpas)-1]
		case "policy/v1/PodDisruptionBudget":
			o.pdbs = append(o.pdbs, new(policyv1.PodDisruptionBudget))
			obj = o.pdbs[len(o.pdbs)-1]
		case "monitoring.coreos.com/v1/ServiceMonitor":
			o.serviceMonitors = append(o.serviceMonitors, new(monitoringv1.ServiceMonitor))
			obj = o.serviceMonitors[len(o.serviceMonitors)-1]
		default:
			t.Errorf("%s: no schema for %s %s: add its type to decodeStrict", d.source, meta.APIVersion, meta.Kind)
			continue
		}
		if err := yaml.UnmarshalStrict([]byte(d.doc), obj); err != nil {
			t.Errorf("%s: %s %s: %v", d.source, meta.APIVersion, meta.Kind, err)
		}
	}
	return o
}

// workload is a StatefulSet or Deployment, reduced to what the checks need.
type workload struct {
	kind, name string
	selector   map[string]string
	pod        corev1.PodTemplateSpec
}

func (o objects) workloads() []workload {
	var w []workload
	for _, s := range o.statefulSets {
		w = append(w, workload{"StatefulSet", s.Name, s.Spec.Selector.MatchLabels, s.Spec.Template})
	}
	for _, d := range o.deployments {
		w = append(w, workload{"Deployment", d.Name, d.Spec.Selector.MatchLabels, d.Spec.Template})
	}
	return w
}

// validate checks what the API server or the controllers would reject or
// silently ignore: names and labels, selectors that select nothing,
// references to ports, volumes, Secrets and Services that do not exist.
func validate(t *testing.T, o objects) {
	t.Helper()
	type named struct {
		kind string
		meta interface {
			GetName() string
			GetNamespace() string
			GetLabels() map[string]string
		}
	}
	var all []named
	for _, x := range o.configMaps {
		all = append(all, named{"ConfigMap", x})
	}
	for _, x := range o.secrets {
		all = append(all, named{"Secret", x})
	}
	for _, x := range o.services {
		all = append(all, named{"Service", x})
		for _, e := range validation.IsDNS1035Label(x.Name) {
			t.Errorf("Service %s: name: %s", x.Name, e)
		}
	}
	for _, x := range o.serviceAccounts {
		all = append(all, named{"ServiceAccount", x})
	}
	for _, x := range o.statefulSets {
		all = append(all, named{"StatefulSet", x})
	}
	for _, x := range o.deployments {
		all = append(all, named{"Deployment", x})
	}
	for _, x := range o.hpas {
		all = append(all, named{"HorizontalPodAutoscaler", x})
	}
	for _, x := range o.pdbs {
		all = append(all, named{"PodDisruptionBudget", x})
	}
	for _, x := range o.serviceMonitors {
		all = append(all, named{"ServiceMonitor", x})
	}
	seen := map[string]bool{}
	for _, n := range all {
		id := n.kind + "/" + n.meta.GetName()
		if seen[id] {
			t.Errorf("%s rendered twice", id)
		}
		seen[id] = true
		for _, e := range validation.IsDNS1123Subdomain(n.meta.GetName()) {
			t.Errorf("%s: name: %s", id, e)
		}
		if n.meta.GetNamespace() != namespace {
			t.Errorf("%s: namespace %q, want the release namespace %q", id, n.meta.GetNamespace(), namespace)
		}
		checkLabels(t, id, n.meta.GetLabels())
	}

	secretKeys := map[string]map[string]bool{}
	for _, s := range o.secrets {
		secretKeys[s.Name] = map[string]bool{}
		for k := range s.Data {
			secretKeys[s.Name][k] = true
		}
	}
	configMaps := map[string]bool{}
	for _, c := range o.configMaps {
		configMaps[c.Name] = true
	}
	for _, w := range o.workloads() {
		id := w.kind + "/" + w.name
		checkLabels(t, id+" pod template", w.pod.Labels)
		if len(w.selector) == 0 || !labels.SelectorFromSet(w.selector).Matches(labels.Set(w.pod.Labels)) {
			t.Errorf("%s: selector %v does not match the pod template labels %v", id, w.selector, w.pod.Labels)
		}
		pod := w.pod.Spec
		if pod.ServiceAccountName != "" && pod.ServiceAccountName != "default" {
			found := false
			for _, sa := range o.serviceAccounts {
				found = found || sa.Name == pod.ServiceAccountName
			}
			if !found {
				t.Errorf("%s: service account %q is not rendered", id, pod.ServiceAccountName)
			}
		}
		volumes := map[string]corev1.Volume{}
		for _, v := range pod.Volumes {
			volumes[v.Name] = v
			if v.ConfigMap != nil && !configMaps[v.ConfigMap.Name] {
				t.Errorf("%s: volume %s: ConfigMap %q is not rendered", id, v.Name, v.ConfigMap.Name)
			}
			if v.Secret != nil {
				keys, rendered := secretKeys[v.Secret.SecretName]
				if !rendered && (v.Secret.SecretName == releaseName || v.Secret.SecretName == releaseName+"-auth") {
					t.Errorf("%s: volume %s: the chart's Secret %s is not rendered", id, v.Name, v.Secret.SecretName)
				}
				for _, it := range v.Secret.Items {
					if rendered && !keys[it.Key] {
						t.Errorf("%s: volume %s: Secret %s has no key %q", id, v.Name, v.Secret.SecretName, it.Key)
					}
				}
			}
		}
		for _, c := range o.statefulSets {
			if c.Name == w.name {
				for _, pvc := range c.Spec.VolumeClaimTemplates {
					volumes[pvc.Name] = corev1.Volume{Name: pvc.Name}
				}
			}
		}
		if len(pod.Containers) == 0 {
			t.Errorf("%s: no containers", id)
		}
		for _, c := range pod.Containers {
			cid := id + " container " + c.Name
			if c.Name == "" || c.Image == "" {
				t.Errorf("%s: name and image are required", cid)
			}
			ports := map[string]bool{}
			for _, p := range c.Ports {
				for _, e := range validation.IsValidPortName(p.Name) {
					t.Errorf("%s: port %q: %s", cid, p.Name, e)
				}
				ports[p.Name] = true
			}
			for _, pr := range []*corev1.Probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
				if pr == nil || pr.HTTPGet == nil {
					t.Errorf("%s: every probe must be an HTTP GET", cid)
					continue
				}
				if p := pr.HTTPGet.Port.String(); !ports[p] {
					t.Errorf("%s: probe %s: port %q is not a container port", cid, pr.HTTPGet.Path, p)
				}
			}
			for _, m := range c.VolumeMounts {
				if _, ok := volumes[m.Name]; !ok {
					t.Errorf("%s: volume mount %q names no volume", cid, m.Name)
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
					continue
				}
				ref := e.ValueFrom.SecretKeyRef
				if keys, ok := secretKeys[ref.Name]; ok && !keys[ref.Key] {
					t.Errorf("%s: env %s: Secret %s has no key %q", cid, e.Name, ref.Name, ref.Key)
				}
				if ref.Name == releaseName && secretKeys[ref.Name] == nil {
					t.Errorf("%s: env %s: the chart's Secret %s is not rendered", cid, e.Name, ref.Name)
				}
			}
			if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s: want a read-only root file system and no privilege escalation", cid)
			}
			if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Errorf("%s: want memory requests and limits", cid)
			}
		}
		if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
			t.Errorf("%s: want runAsNonRoot", id)
		}
		for _, c := range pod.TopologySpreadConstraints {
			if c.LabelSelector == nil || len(c.LabelSelector.MatchLabels) == 0 ||
				!labels.SelectorFromSet(c.LabelSelector.MatchLabels).Matches(labels.Set(w.pod.Labels)) {
				t.Errorf("%s: topology spread constraint on %s: its label selector does not select the pods", id, c.TopologyKey)
			}
		}
		if pod.TerminationGracePeriodSeconds == nil {
			t.Errorf("%s: want terminationGracePeriodSeconds", id)
		}
	}
	// A StatefulSet's serviceName must name a headless Service that selects its pods.
	for _, s := range o.statefulSets {
		found := false
		for _, svc := range o.services {
			if svc.Name == s.Spec.ServiceName {
				found = true
				if svc.Spec.ClusterIP != corev1.ClusterIPNone {
					t.Errorf("StatefulSet/%s: Service %s is not headless", s.Name, svc.Name)
				}
			}
		}
		if !found {
			t.Errorf("StatefulSet/%s: serviceName %q names no rendered Service", s.Name, s.Spec.ServiceName)
		}
	}
	// Every Service selects pods of some workload, on ports they have.
	for _, svc := range o.services {
		matched := false
		for _, w := range o.workloads() {
			if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(w.pod.Labels)) {
				continue
			}
			matched = true
			for _, p := range svc.Spec.Ports {
				if !hasContainerPort(w.pod.Spec, p.TargetPort.String()) {
					t.Errorf("Service/%s: port %s: target port %q is not a port of %s/%s", svc.Name, p.Name, p.TargetPort.String(), w.kind, w.name)
				}
			}
		}
		if !matched {
			t.Errorf("Service/%s: selector %v selects no rendered pods", svc.Name, svc.Spec.Selector)
		}
	}
	for _, h := range o.hpas {
		ref := h.Spec.ScaleTargetRef
		found := false
		for _, d := range o.deployments {
			if ref.Kind == "Deployment" && ref.APIVersion == "apps/v1" && ref.Name == d.Name {
				found = true
				if d.Spec.Replicas != nil {
					t.Errorf("Deployment/%s: sets replicas although HorizontalPodAutoscaler/%s scales it", d.Name, h.Name)
				}
			}
		}
		if !found {
			t.Errorf("HorizontalPodAutoscaler/%s: scaleTargetRef %v names no rendered Deployment", h.Name, ref)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas > h.Spec.MaxReplicas || len(h.Spec.Metrics) == 0 {
			t.Errorf("HorizontalPodAutoscaler/%s: want 1 <= minReplicas <= maxReplicas and a metric", h.Name)
		}
	}
	for _, p := range o.pdbs {
		if (p.Spec.MinAvailable == nil) == (p.Spec.MaxUnavailable == nil) {
			t.Errorf("PodDisruptionBudget/%s: set exactly one of minAvailable and maxUnavailable", p.Name)
		}
		if !selectsWorkload(o, p.Spec.Selector.MatchLabels) {
			t.Errorf("PodDisruptionBudget/%s: selector selects no rendered pods", p.Name)
		}
	}
	for _, sm := range o.serviceMonitors {
		n := 0
		for _, svc := range o.services {
			if !labels.SelectorFromSet(sm.Spec.Selector.MatchLabels).Matches(labels.Set(svc.Labels)) {
				continue
			}
			n++
			for _, ep := range sm.Spec.Endpoints {
				found := false
				for _, p := range svc.Spec.Ports {
					found = found || p.Name == ep.Port
				}
				if !found {
					t.Errorf("ServiceMonitor/%s: Service %s has no port %q", sm.Name, svc.Name, ep.Port)
				}
			}
		}
		if n == 0 {
			t.Errorf("ServiceMonitor/%s: selects no rendered Service", sm.Name)
		}
	}
}

func checkLabels(t *testing.T, id string, l map[string]string) {
	t.Helper()
	for k, v := range l {
		for _, e := range validation.IsQualifiedName(k) {
			t.Errorf("%s: label key %q: %s", id, k, e)
		}
		for _, e := range validation.IsValidLabelValue(v) {
			t.Errorf("%s: label %s value %q: %s", id, k, v, e)
		}
	}
}

func hasContainerPort(pod corev1.PodSpec, name string) bool {
	for _, c := range pod.Containers {
		for _, p := range c.Ports {
			if p.Name == name {
				return true
			}
		}
	}
	return false
}

func selectsWorkload(o objects, sel map[string]string) bool {
	for _, w := range o.workloads() {
		if len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(w.pod.Labels)) {
			return true
		}
	}
	return false
}

// TestRequiredValues checks that missing or contradictory settings fail the
// render with a message naming the value to set.
func TestRequiredValues(t *testing.T) {
	tests := []struct {
		name   string
		values string
		want   string
	}{
		{"defaults alone", ``, "objstore.s3.bucket is required"},
		{"no catalog", "objstore: {s3: {bucket: b}}", "catalog.postgres.url or catalog.postgres.existingSecret is required"},
		{"catalog twice", "objstore: {s3: {bucket: b}}\ncatalog: {postgres: {url: postgres://db/strom, existingSecret: pg}}",
			"set either catalog.postgres.url or catalog.postgres.existingSecret, not both"},
		{"half a key pair", requiredValues + "\n    accessKeyId: AKIA", "objstore.s3.accessKeyId and objstore.s3.secretAccessKey go together"},
		{"keys twice", requiredValues + "\n    accessKeyId: a\n    secretAccessKey: s\n    existingSecret: s3", "not both"},
		{"tls without a secret", requiredValues + "\ntls: {enabled: true}", "tls.secretName is required with tls.enabled"},
		{"no write frontends", requiredValues + "\nwrite: {replicas: 0}", "write.replicas must be at least 1"},
		{"hpa min above max", requiredValues + "\nread: {autoscaling: {minReplicas: 5, maxReplicas: 2}}", "minReplicas must not exceed"},
		{"auth without tokens", requiredValues + "\nauth: {enabled: true, internalToken: {existingSecret: it}}", "auth.tokens.file or auth.tokens.existingSecret is required"},
		{"tokens twice", requiredValues + "\nauth: {enabled: true, tokens: {file: 'tokens: []', existingSecret: t}, internalToken: {existingSecret: it}}",
			"set either auth.tokens.file or auth.tokens.existingSecret, not both"},
		{"auth without an internal secret", requiredValues + "\nauth: {enabled: true, tokens: {existingSecret: t}}", "auth.internalToken.value or auth.internalToken.existingSecret is required"},
		{"tokens with auth off", requiredValues + "\nauth: {tokens: {existingSecret: t}}", "auth.enabled is false"},
		{"internal secret twice", requiredValues + "\nauth: {internalToken: {value: 0123456789abcdef0123, existingSecret: it}}", "not both"},
		{"short internal secret", requiredValues + "\nauth: {internalToken: {value: short}}", "at least 16 bytes"},
		{"internal secret with a space", requiredValues + "\nauth: {internalToken: {value: 0123456789 abcdef0123}}", "without white space"},
		{"negative rate limit", requiredValues + "\nserver: {rateLimit: -1}", "server.rateLimit must not be negative"},
		{"watermark above the volume", requiredValues + "\nwrite: {persistence: {size: 512Mi}}", "wal.minFreeBytes (536870912) must be below write.persistence.size (512Mi)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vals, err := chartutil.ReadValues([]byte(tt.values))
			if err != nil {
				t.Fatal(err)
			}
			_, err = render(t, vals)
			if err == nil {
				t.Fatalf("rendered; want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "strom: ") {
				t.Fatalf("error %q; want one containing %q", err, tt.want)
			}
		})
	}
}

// reference is Strom's configuration reference, parsed from
// docs/configuration.md (generated from the real flag set by
// TestConfigReference in services/server), so the chart is checked
// against the flags without importing the services module.
type reference struct {
	flags    map[string]string // flag name without the dash -> default
	yamlKeys map[string]bool   // dotted YAML keys
}

func loadReference(t *testing.T) reference {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	ref := reference{flags: map[string]string{}, yamlKeys: map[string]bool{}}
	row := regexp.MustCompile("^\\| `-([a-z0-9.-]+)` \\| (?:`([a-z0-9_.]+)`)? *\\| (?:`([^`]*)`)? *\\|")
	for _, line := range strings.Split(string(raw), "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		ref.flags[m[1]] = m[3]
		if m[2] != "" {
			ref.yamlKeys[m[2]] = true
		}
	}
	if len(ref.flags) < 20 || !ref.yamlKeys["objstore.s3.bucket"] {
		t.Fatalf("docs/configuration.md: parsed %d flags; has its table format changed?", len(ref.flags))
	}
	return ref
}

// checkStromArgs checks that every Strom container runs `strom server` with
// flags Strom knows (values given with "=", bare flags only for booleans),
// and that its configuration file holds only known YAML keys.
func checkStromArgs(t *testing.T, o objects) {
	t.Helper()
	ref := loadReference(t)
	for _, w := range o.workloads() {
		for _, c := range w.pod.Spec.Containers {
			id := w.kind + "/" + w.name + " container " + c.Name
			if len(c.Args) == 0 || c.Args[0] != "server" {
				t.Errorf("%s: args %q: want `server` first", id, c.Args)
				continue
			}
			for _, a := range c.Args[1:] {
				name, value, hasValue := strings.Cut(strings.TrimPrefix(a, "-"), "=")
				def, known := ref.flags[name]
				switch {
				case !strings.HasPrefix(a, "-") || strings.HasPrefix(a, "--"):
					t.Errorf("%s: argument %q: want -flag or -flag=value", id, a)
				case !known:
					t.Errorf("%s: argument %q: strom server has no flag -%s (see docs/configuration.md)", id, a, name)
				case !hasValue && def != "false" && def != "true":
					t.Errorf("%s: argument %q: -%s takes a value: write -%s=VALUE", id, a, name, name)
				case name == "roles":
					for _, r := range strings.Split(value, ",") {
						if r != "write" && r != "read" && r != "tiering" && r != "all" {
							t.Errorf("%s: -roles: unknown role %q", id, r)
						}
					}
				}
			}
		}
	}
	for _, cm := range o.configMaps {
		raw, ok := cm.Data["strom.yaml"]
		if !ok {
			t.Errorf("ConfigMap/%s: no strom.yaml", cm.Name)
			continue
		}
		var cfg map[string]any
		if err := yaml.Unmarshal([]byte(raw), &cfg); err != nil {
			t.Errorf("ConfigMap/%s: strom.yaml: %v", cm.Name, err)
			continue
		}
		for _, k := range leafKeys("", cfg) {
			if !ref.yamlKeys[k] {
				t.Errorf("ConfigMap/%s: strom.yaml: %s is not a key of Strom's configuration (see docs/configuration.md)", cm.Name, k)
			}
		}
	}
}

func leafKeys(prefix string, m map[string]any) []string {
	var out []string
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
			out = append(out, leafKeys(prefix+k+".", sub)...)
		} else {
			out = append(out, prefix+k)
		}
	}
	sort.Strings(out)
	return out
}

// valueDoc is one documented key of values.yaml.
type valueDoc struct {
	key, def, description string
}

// valueDocs reads the `# --` comments of values.yaml. A mapping whose
// children carry `# --` comments is a section: each of its keys must be
// documented too, and the table lists them; any other value (a scalar, a
// list, a mapping passed through as a whole such as resources) is one row.
// Undocumented keys are reported as errors.
func valueDocs(t *testing.T) []valueDoc {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yamlv3.MappingNode {
		t.Fatal("values.yaml: want a mapping")
	}
	var out []valueDoc
	var walk func(prefix string, m *yamlv3.Node)
	walk = func(prefix string, m *yamlv3.Node) {
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			key := prefix + k.Value
			desc := docComment(k.HeadComment)
			if desc == "" {
				t.Errorf("values.yaml:%d: %s has no `# --` comment", k.Line, key)
			}
			if v.Kind == yamlv3.MappingNode && isSection(v) {
				walk(key+".", v)
				continue
			}
			var val any
			if err := v.Decode(&val); err != nil {
				t.Fatalf("values.yaml: %s: %v", key, err)
			}
			def, err := json.Marshal(val)
			if err != nil {
				t.Fatalf("values.yaml: %s: %v", key, err)
			}
			out = append(out, valueDoc{key: key, def: string(def), description: desc})
		}
	}
	walk("", doc.Content[0])
	return out
}

func isSection(m *yamlv3.Node) bool {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if docComment(m.Content[i].HeadComment) != "" {
			return true
		}
	}
	return false
}

// docComment is the description in the last comment paragraph above a key
// that starts with `# --`, its continuation lines joined.
func docComment(head string) string {
	paras := strings.Split(strings.TrimSpace(head), "\n\n")
	lines := strings.Split(paras[len(paras)-1], "\n")
	for i, l := range lines {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), "# --"); ok {
			parts := []string{strings.TrimSpace(rest)}
			for _, c := range lines[i+1:] {
				parts = append(parts, strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(c), "#")))
			}
			return strings.TrimSpace(strings.Join(parts, " "))
		}
	}
	return ""
}

const (
	tableBegin = "<!-- values table: generated from values.yaml by TestReadmeValues (go test -run TestReadmeValues -rewrite) -->"
	tableEnd   = "<!-- end of values table -->"
)

// TestReadmeValues checks that every key of values.yaml has a `# --`
// comment and a row in the README's values table, which it generates.
func TestReadmeValues(t *testing.T) {
	docs := valueDocs(t)
	var b strings.Builder
	b.WriteString(tableBegin + "\n\n| Key | Default | Description |\n| --- | --- | --- |\n")
	esc := strings.NewReplacer("|", `\|`)
	for _, d := range docs {
		fmt.Fprintf(&b, "| `%s` | `%s` | %s |\n", d.key, esc.Replace(d.def), esc.Replace(d.description))
	}
	b.WriteString("\n" + tableEnd)
	path := filepath.Join(chartDir, "README.md")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	start, end := strings.Index(readme, tableBegin), strings.Index(readme, tableEnd)
	if start < 0 || end < start {
		t.Fatalf("%s: no values table between %q and %q", path, tableBegin, tableEnd)
	}
	want := readme[:start] + b.String() + readme[end+len(tableEnd):]
	if *rewrite {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	table := readme[start:end]
	for _, d := range docs {
		if !strings.Contains(table, "| `"+d.key+"` |") {
			t.Errorf("%s: values key %s is missing from the values table", path, d.key)
		}
	}
	if readme != want {
		t.Errorf("%s: the values table is stale (run go test -run TestReadmeValues -rewrite):\n%s", path, lineDiff(readme, want))
	}
}
