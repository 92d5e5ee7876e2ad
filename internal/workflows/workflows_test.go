package workflows

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"
)

// repoRoot is the repository's root, two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// lint runs actionlint (without shellcheck or pyflakes, which CI machines may
// lack) on the workflow files, with the repository's .github/actionlint.yaml
// (the self-hosted runner's labels).
func lint(t *testing.T, root string, files ...string) []*actionlint.Error {
	t.Helper()
	l, err := actionlint.NewLinter(io.Discard, &actionlint.LinterOptions{
		ConfigFile: filepath.Join(root, ".github", "actionlint.yaml"),
		WorkingDir: root,
	})
	if err != nil {
		t.Fatal(err)
	}
	errs, err := l.LintFiles(files, nil)
	if err != nil {
		t.Fatal(err)
	}
	return errs
}

// TestWorkflowsPassActionlint checks that both workflows exist, pass
// actionlint, and do what they are for: the CPU one runs make test, the CUDA
// one runs on the self-hosted GPU runner and runs make test and make test-cuda.
func TestWorkflowsPassActionlint(t *testing.T) {
	root := repoRoot(t)
	dir := filepath.Join(root, ".github", "workflows")
	want := map[string][]string{
		"ci.yml":   {"make test"},
		"cuda.yml": {"self-hosted", "gpu", "make build TORCH_PREFIX", "make test TORCH_PREFIX", "make test-cuda"},
	}
	var files []string
	for name, needles := range want {
		path := filepath.Join(dir, name)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("workflow %s: %v", name, err)
			continue
		}
		for _, n := range needles {
			if !strings.Contains(string(b), n) {
				t.Errorf("workflow %s does not mention %q", name, n)
			}
		}
		files = append(files, path)
	}
	for _, e := range lint(t, root, files...) {
		t.Errorf("actionlint: %s", e)
	}
}

// TestActionlintCatchesMistakes: the check above can fail. A workflow with an
// unknown runner label, a misspelt input of a known action and an undefined
// expression context gets an error for each.
func TestActionlintCatchesMistakes(t *testing.T) {
	root := repoRoot(t)
	bad := filepath.Join(t.TempDir(), "bad.yml")
	err := os.WriteFile(bad, []byte(`name: bad
on: push
jobs:
  j:
    runs-on: [self-hosted, tpu]
    steps:
      - uses: actions/setup-go@v5
        with:
          go-versoin: "1.26"
      - run: echo ${{ nothing.here }}
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	errs := lint(t, root, bad)
	var all []string
	for _, e := range errs {
		all = append(all, e.Error())
	}
	text := strings.Join(all, "\n")
	for _, want := range []string{"tpu", "go-versoin", "nothing"} {
		if !strings.Contains(text, want) {
			t.Errorf("actionlint did not flag %q; it said:\n%s", want, text)
		}
	}
}
