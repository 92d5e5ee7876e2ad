package cluster

import (
	"fmt"
	"math"
	"os"
	"path"
	"path/filepath"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"modelstitch/experiments/invalid"
	"modelstitch/internal/atomicfile"
)

// GPUResource is the extended resource name of an NVIDIA GPU (the NVIDIA
// device plugin's).
const GPUResource corev1.ResourceName = "nvidia.com/gpu"

// CompletionIndexEnv is the variable that holds an Indexed Job pod's index.
const CompletionIndexEnv = "JOB_COMPLETION_INDEX"

// completionIndexAnnotation is where the Job controller writes a pod's index.
const completionIndexAnnotation = "batch.kubernetes.io/job-completion-index"

// specMountDir is where the spec's ConfigMap is mounted in the pods.
const specMountDir = "/etc/stitch-grid"

// K8sOptions describes the Kubernetes objects of one grid.
type K8sOptions struct {
	// Grid's Bin is the executable in the image; Spec is the local spec file,
	// which goes into a ConfigMap; Out is the output directory in the pod and
	// must lie under MountPath.
	Grid Grid

	Dir         string // where the manifests are written
	Name        string // name prefix of every object (a DNS label)
	Namespace   string // "" for the default namespace
	Image       string // the container image that holds Grid.Bin
	PullPolicy  string // Always, IfNotPresent, Never or "" (the cluster's default)
	Shards      int    // indexes per phase, one shard each
	Parallelism int    // pods of a phase at once (0: Shards)
	Retries     int    // retries of each index (backoffLimitPerIndex)

	GPUs   int    // nvidia.com/gpu per pod (0: none)
	CPU    string // CPU request, e.g. 4 ("": none)
	Memory string // memory request and limit, e.g. 16Gi ("": none)

	Claim        string // an existing PersistentVolumeClaim; "" creates NAME-data
	Storage      string // size of the claim created (e.g. 50Gi)
	StorageClass string // its storage class ("": the cluster's default)
	MountPath    string // where the claim is mounted (e.g. /data)

	NodeSelector map[string]string // node labels the pods need
}

// K8sManifests are the files WriteK8s wrote.
type K8sManifests struct {
	Dir       string            // the folder holding them
	ConfigMap string            // the spec as a ConfigMap
	Claim     string            // the PersistentVolumeClaim ("" when an existing one is used)
	Phases    map[string]string // phase → its Indexed Job
	Report    string            // the merge-and-report Job
	Run       string            // run.sh: applies them in order
}

// Kubernetes' own limits on a Job's sizes (the API server refuses more;
// k8s.io/kubernetes pkg/apis/batch/validation).
const (
	// MaxIndexedCompletions is the most shards a phase may have here: an
	// Indexed Job's completions and parallelism are int32, and the API caps
	// an Indexed Job's parallelism at 100000 (more completions than that
	// need a smaller parallelism with backoffLimitPerIndex, which these
	// Jobs use).
	MaxIndexedCompletions = 100_000
	// MaxBackoffLimit is the most retries: backoffLimitPerIndex and
	// backoffLimit are int32.
	MaxBackoffLimit = math.MaxInt32
)

func (o *K8sOptions) check() error {
	if err := o.Grid.check(); err != nil {
		return err
	}
	if o.Dir == "" {
		return invalid.Errorf("dir", "is empty: give the folder for the manifests")
	}
	// Job names end up in pod labels: they must be DNS labels, 63 characters
	// at most, with room for the suffixes added here and by the controller.
	for _, suffix := range []string{"-stitch", "-report", "-data"} {
		if errs := validation.IsDNS1123Label(o.Name + suffix); len(errs) > 0 {
			return invalid.Errorf("name", "%q: %s", o.Name, strings.Join(errs, "; "))
		}
	}
	if len(o.Name) > 40 {
		return invalid.Errorf("name", "%q: at most 40 characters (pod names add suffixes)", o.Name)
	}
	if o.Namespace != "" {
		if errs := validation.IsDNS1123Label(o.Namespace); len(errs) > 0 {
			return invalid.Errorf("namespace", "%q: %s", o.Namespace, strings.Join(errs, "; "))
		}
	}
	if o.Claim != "" {
		if errs := validation.IsDNS1123Subdomain(o.Claim); len(errs) > 0 {
			return invalid.Errorf("claim", "%q: %s", o.Claim, strings.Join(errs, "; "))
		}
	}
	if o.Image == "" {
		return invalid.Errorf("image", "is empty: give the container image that holds stitch")
	}
	switch o.PullPolicy {
	case "", string(corev1.PullAlways), string(corev1.PullIfNotPresent), string(corev1.PullNever):
	default:
		return invalid.Errorf("pull policy", "%q: want Always, IfNotPresent or Never", o.PullPolicy)
	}
	if o.Shards < 1 || o.Shards > MaxIndexedCompletions {
		return invalid.Errorf("shards", "must be in 1..%d (an Indexed Job's completions), got %d", MaxIndexedCompletions, o.Shards)
	}
	if o.Parallelism < 0 || o.Parallelism > MaxIndexedCompletions {
		return invalid.Errorf("parallelism", "must be in 0..%d (an Indexed Job's parallelism; 0: all shards), got %d", MaxIndexedCompletions, o.Parallelism)
	}
	if o.Retries < 0 || o.Retries > MaxBackoffLimit {
		return invalid.Errorf("retries", "must be in 0..%d (a Job's backoff limit), got %d", MaxBackoffLimit, o.Retries)
	}
	if o.GPUs < 0 {
		return invalid.Errorf("gpus", "may not be negative, got %d", o.GPUs)
	}
	if !path.IsAbs(o.MountPath) {
		return invalid.Errorf("mount", "%q: need an absolute path in the pod", o.MountPath)
	}
	if rel := strings.TrimPrefix(path.Clean(o.Grid.Out), path.Clean(o.MountPath)); rel == path.Clean(o.Grid.Out) || (rel != "" && !strings.HasPrefix(rel, "/")) {
		return invalid.Errorf("out", "%q: must lie under the claim's mount %s, or the shards' results are lost with their pods", o.Grid.Out, o.MountPath)
	}
	return nil
}

// quantity parses a resource quantity; a bad one is an invalid setting of field.
func quantity(field, v string) (resource.Quantity, error) {
	q, err := resource.ParseQuantity(v)
	if err != nil {
		return q, invalid.Errorf(field, "%q: %v", v, err)
	}
	return q, nil
}

// k8sArgs renders a command line for a container: ShardWord becomes the
// pod's index, and every literal "$" is doubled, so that Kubernetes neither
// expands a "$(NAME)" in a value nor turns its "$$" into "$".
func (o *K8sOptions) k8sArgs(argv []string) []string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a == ShardWord {
			out[i] = fmt.Sprintf("$(%s)/%d", CompletionIndexEnv, o.Shards)
		} else {
			out[i] = strings.ReplaceAll(a, "$", "$$")
		}
	}
	return out
}

// K8sObjects are the grid's Kubernetes objects.
type K8sObjects struct {
	ConfigMap *corev1.ConfigMap
	Claim     *corev1.PersistentVolumeClaim // nil when an existing claim is used
	Phases    map[string]*batchv1.Job
	Report    *batchv1.Job
}

// BuildK8s builds the grid's objects: a ConfigMap holding the spec (specText
// under the name of Grid.Spec), the claim unless o.Claim names one, an
// Indexed Job per phase and the merge-and-report Job.
func BuildK8s(o K8sOptions, specText []byte) (K8sObjects, error) {
	if err := o.check(); err != nil {
		return K8sObjects{}, fmt.Errorf("k8s: %w", err)
	}
	specKey := filepath.Base(o.Grid.Spec)
	if errs := validation.IsConfigMapKey(specKey); len(errs) > 0 {
		return K8sObjects{}, fmt.Errorf("k8s: %w", invalid.Errorf("spec", "file name %q is not a ConfigMap key: %s", specKey, strings.Join(errs, "; ")))
	}
	var objs K8sObjects
	objs.ConfigMap = &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: o.meta(o.Name+"-spec", "spec"),
		Data:       map[string]string{specKey: string(specText)},
	}
	claim, pvc, err := o.dataClaim()
	if err != nil {
		return K8sObjects{}, fmt.Errorf("k8s: %w", err)
	}
	objs.Claim = pvc
	res, err := o.resources()
	if err != nil {
		return K8sObjects{}, fmt.Errorf("k8s: %w", err)
	}
	pods := o.newPods(claim, objs.ConfigMap.Name)
	g := o.Grid
	g.Spec = path.Join(specMountDir, specKey)
	objs.Phases = o.phaseJobs(pods, g, res)
	objs.Report = o.reportJob(pods, g)
	return objs, nil
}

// meta is the metadata of the grid's object name, labelled with the grid
// and the object's component.
func (o *K8sOptions) meta(name, component string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:      name,
		Namespace: o.Namespace,
		Labels: map[string]string{
			"app.kubernetes.io/name":      "stitch-grid",
			"app.kubernetes.io/instance":  o.Name,
			"app.kubernetes.io/component": component,
		},
	}
}

// dataClaim returns the name of the claim the pods write to and, when no
// Claim is given, the claim to make (nil: Claim names an existing one).
func (o *K8sOptions) dataClaim() (string, *corev1.PersistentVolumeClaim, error) {
	if o.Claim != "" {
		return o.Claim, nil, nil
	}
	claim := o.Name + "-data"
	size, err := quantity("storage", o.Storage)
	if err != nil {
		return "", nil, err
	}
	pvc := &corev1.PersistentVolumeClaim{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
		ObjectMeta: o.meta(claim, "data"),
		Spec: corev1.PersistentVolumeClaimSpec{
			// Pods of one phase run on several nodes and all write here.
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
		},
	}
	if o.StorageClass != "" {
		sc := o.StorageClass
		pvc.Spec.StorageClassName = &sc
	}
	return claim, pvc, nil
}

// resources is what a phase's pod asks for: CPU, memory (also its limit)
// and GPUs, each only when set.
func (o *K8sOptions) resources() (corev1.ResourceRequirements, error) {
	res := corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	if o.CPU != "" {
		q, err := quantity("cpu", o.CPU)
		if err != nil {
			return res, err
		}
		res.Requests[corev1.ResourceCPU] = q
	}
	if o.Memory != "" {
		q, err := quantity("memory", o.Memory)
		if err != nil {
			return res, err
		}
		res.Requests[corev1.ResourceMemory] = q
		res.Limits[corev1.ResourceMemory] = q
	}
	if o.GPUs > 0 {
		q := *resource.NewQuantity(int64(o.GPUs), resource.DecimalSI)
		res.Requests[GPUResource] = q
		res.Limits[GPUResource] = q
	}
	return res, nil
}

// pods makes the grid's containers and pod templates: every container
// mounts the data claim and the spec's ConfigMap.
type pods struct {
	o           *K8sOptions
	mounts      []corev1.VolumeMount
	volumes     []corev1.Volume
	tolerations []corev1.Toleration
}

// newPods returns the pods that mount claim and the ConfigMap configMap.
func (o *K8sOptions) newPods(claim, configMap string) pods {
	p := pods{o: o,
		mounts: []corev1.VolumeMount{
			{Name: "data", MountPath: o.MountPath},
			{Name: "spec", MountPath: specMountDir, ReadOnly: true},
		},
		volumes: []corev1.Volume{
			{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}},
			{Name: "spec", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: configMap}}}},
		},
	}
	if o.GPUs > 0 {
		// GPU nodes are commonly tainted so that only pods asking for GPUs land there.
		p.tolerations = []corev1.Toleration{{Key: string(GPUResource), Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
	}
	return p
}

// container runs argv in the image with the mounts and resources r.
func (p pods) container(name string, argv []string, r corev1.ResourceRequirements) corev1.Container {
	return corev1.Container{
		Name:            name,
		Image:           p.o.Image,
		ImagePullPolicy: corev1.PullPolicy(p.o.PullPolicy),
		Command:         p.o.k8sArgs(argv[:1]),
		Args:            p.o.k8sArgs(argv[1:]),
		VolumeMounts:    p.mounts,
		Resources:       r,
	}
}

// template is the pod template of containers cs after init, never restarted.
func (p pods) template(cs []corev1.Container, init []corev1.Container) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app.kubernetes.io/name": "stitch-grid", "app.kubernetes.io/instance": p.o.Name}},
		Spec: corev1.PodSpec{
			RestartPolicy:  corev1.RestartPolicyNever,
			InitContainers: init,
			Containers:     cs,
			Volumes:        p.volumes,
			NodeSelector:   p.o.NodeSelector,
			Tolerations:    p.tolerations,
		},
	}
}

// phaseJobs returns one Indexed Job per phase, a pod per shard, each
// running g's phase with its completion index as the shard.
func (o *K8sOptions) phaseJobs(p pods, g Grid, res corev1.ResourceRequirements) map[string]*batchv1.Job {
	// check bounded every size to int32.
	shards := int32(o.Shards)
	par := int32(o.Parallelism)
	if par == 0 || par > shards {
		par = shards
	}
	retries := int32(o.Retries)
	indexed := batchv1.IndexedCompletion
	// A replacement pod starts only once the failed one has stopped, so two
	// pods never write one shard's file at once.
	replace := batchv1.Failed
	jobs := map[string]*batchv1.Job{}
	for _, ph := range Phases {
		c := p.container(ph, g.RunArgv(ph), res)
		c.Env = []corev1.EnvVar{{
			Name: CompletionIndexEnv,
			ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{
				FieldPath: "metadata.annotations['" + completionIndexAnnotation + "']",
			}},
		}}
		job := &batchv1.Job{
			TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
			ObjectMeta: o.meta(o.Name+"-"+ph, ph),
			Spec: batchv1.JobSpec{
				CompletionMode:       &indexed,
				Completions:          &shards,
				Parallelism:          &par,
				BackoffLimitPerIndex: &retries,
				PodReplacementPolicy: &replace,
				Template:             p.template([]corev1.Container{c}, nil),
			},
		}
		job.Spec.Template.Labels["app.kubernetes.io/component"] = ph
		jobs[ph] = job
	}
	return jobs
}

// reportJob returns the Job that merges the shards' rows (an init
// container) and then writes g's report; it asks for no GPU.
func (o *K8sOptions) reportJob(p pods, g Grid) *batchv1.Job {
	one := int32(1)
	backoff := int32(o.Retries)
	replace := batchv1.Failed // as the phases' jobs
	small := corev1.ResourceRequirements{}
	job := &batchv1.Job{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: o.meta(o.Name+"-report", "report"),
		Spec: batchv1.JobSpec{
			Completions:          &one,
			Parallelism:          &one,
			BackoffLimit:         &backoff,
			PodReplacementPolicy: &replace,
			Template: p.template(
				[]corev1.Container{p.container("report", g.ReportArgv(), small)},
				[]corev1.Container{p.container("merge", g.MergeArgv(), small)},
			),
		},
	}
	job.Spec.Template.Labels["app.kubernetes.io/component"] = "report"
	job.Spec.Template.Spec.Tolerations = nil // it asks for no GPU
	return job
}

// runScript applies the objects phase after phase.
func (o *K8sOptions) runScript(m K8sManifests) string {
	var b strings.Builder
	ns := ""
	if o.Namespace != "" {
		ns = " -n " + shellQuote(o.Namespace)
	}
	b.WriteString(`#!/bin/bash
# Runs the grid on Kubernetes: applies the spec and the claim, then each
# phase's Indexed Job once the one before it has completed, then the
# merge-and-report Job. Written by ` + "`stitch grid k8s`" + `.
# Running it again is safe: applying an unchanged Job changes nothing, and a
# complete Job is passed at once. To re-run a failed phase, delete its Job
# (kubectl delete job NAME) and run this again; the grid resumes each shard
# from the files on the claim.
set -euo pipefail
cd "$(dirname "$0")"
`)
	fmt.Fprintf(&b, "KUBECTL=(kubectl%s)\n", ns)
	b.WriteString(`# wait_job NAME: wait until the Job completes (exit 0) or fails (exit 1).
wait_job() {
	"${KUBECTL[@]}" wait --for=condition=complete --timeout=-1s "job/$1" & local done=$!
	"${KUBECTL[@]}" wait --for=condition=failed --timeout=-1s "job/$1" & local failed=$!
	local status=0
	wait -n "$done" "$failed" || status=$?
	if kill -0 "$done" 2>/dev/null; then
		kill "$done" 2>/dev/null || true
		echo "job $1 failed: kubectl describe job/$1" >&2
		return 1
	fi
	kill "$failed" 2>/dev/null || true
	return "$status"
}
`)
	files := []string{shellQuote(filepath.Base(m.ConfigMap))}
	if m.Claim != "" {
		files = append(files, shellQuote(filepath.Base(m.Claim)))
	}
	fmt.Fprintf(&b, "\"${KUBECTL[@]}\" apply -f %s\n", strings.Join(files, " -f "))
	steps := append(append([]string{}, Phases...), "report")
	for _, p := range steps {
		file := m.Report
		if p != "report" {
			file = m.Phases[p]
		}
		fmt.Fprintf(&b, "\"${KUBECTL[@]}\" apply -f %s\n", shellQuote(filepath.Base(file)))
		fmt.Fprintf(&b, "wait_job %s\n", shellQuote(o.Name+"-"+p))
	}
	fmt.Fprintf(&b, "echo 'grid done: results and report in' %s 'on the claim'\n", shellQuote(o.Grid.Out))
	return b.String()
}

// WriteK8s builds the grid's objects (see BuildK8s), reading the spec from
// o.Grid.Spec, and writes each as YAML into o.Dir, with run.sh.
func WriteK8s(o K8sOptions) (K8sManifests, error) {
	spec, err := os.ReadFile(o.Grid.Spec)
	if err != nil {
		return K8sManifests{}, fmt.Errorf("k8s: grid spec: %w", err)
	}
	objs, err := BuildK8s(o, spec)
	if err != nil {
		return K8sManifests{}, err
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return K8sManifests{}, fmt.Errorf("k8s: %w", err)
	}
	m := K8sManifests{Dir: o.Dir, Phases: map[string]string{}}
	write := func(name string, obj any) (string, error) {
		data, err := yaml.Marshal(obj)
		if err != nil {
			return "", fmt.Errorf("k8s: %s: %w", name, err)
		}
		p := filepath.Join(o.Dir, name)
		if err := atomicfile.WriteFile(p, data, 0o644); err != nil {
			return "", fmt.Errorf("k8s: %w", err)
		}
		return p, nil
	}
	if m.ConfigMap, err = write("spec-configmap.yaml", objs.ConfigMap); err != nil {
		return m, err
	}
	if objs.Claim != nil {
		if m.Claim, err = write("pvc.yaml", objs.Claim); err != nil {
			return m, err
		}
	}
	for _, p := range Phases {
		if m.Phases[p], err = write("job-"+p+".yaml", objs.Phases[p]); err != nil {
			return m, err
		}
	}
	if m.Report, err = write("job-report.yaml", objs.Report); err != nil {
		return m, err
	}
	m.Run = filepath.Join(o.Dir, "run.sh")
	if err := atomicfile.WriteFile(m.Run, []byte(o.runScript(m)), 0o755); err != nil {
		return m, fmt.Errorf("k8s: %w", err)
	}
	return m, nil
}
