package stitch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"modelstitch/experiments/evaluate"
	"modelstitch/experiments/invalid"
	"modelstitch/experiments/loop"
	"modelstitch/experiments/models"
	"modelstitch/experiments/progress"
	"modelstitch/experiments/results"
	"modelstitch/torch"
	"modelstitch/torch/nn"
	"modelstitch/torch/vision/data"
	"modelstitch/torch/vision/datasets"
)

// Init names how the stitching layer starts.
const (
	InitDefault      = "default"       // PyTorch's default initialisation
	InitLeastSquares = "least-squares" // direct matching (Csiszárik et al. 2021)
)

// Config is one stitching experiment's settings.
type Config struct {
	// Cuts is a cut name, a comma list, or "all", in the top's names.
	Cuts string
	// BottomCuts, when set, lists the bottom's cut for each of Cuts, one for
	// one (networks of different depths); unset, networks of different
	// depths are paired at their stages' ends (pairCuts).
	BottomCuts string
	Epochs     int
	BatchSize  int
	LR         float64
	Seed       int64
	FitSamples int // 0: the whole training split
	// FitAugment crops and flips the fitting images (data.StandardAugment,
	// drawn afresh every epoch), as the paper does; the least-squares start,
	// the scores and CKA always see the images as they are.
	FitAugment bool
	KernelSize int64
	Init       string
	// FrozenBN is "eval" (frozen halves use running statistics) or "train"
	// (batch statistics while fitting, as in the paper authors' scripts).
	FrozenBN   string
	CKASamples int
	// LSSamples caps the training images the least-squares start is solved
	// on (every pixel is a sample, so a few thousand images are plenty); 0: all
	// the fitting images.
	LSSamples int
	// ValSamples holds out a class-balanced part of the training split,
	// disjoint from the fitting images, on which the fit converges (FitConfig:
	// the start and every CheckEvery steps are scored, the best is kept, the
	// rate is cut by LRCutFactor after Patience checks without improvement and
	// the fit stops at the plateau after LRCuts cuts, or at the cap of Epochs).
	// 0: no validation, a cosine decay over Epochs, and the end is kept.
	ValSamples int
	CheckEvery int // steps between validation checks (0: once per epoch)
	Patience   int // checks without improvement before a cut (0: 1)
	LRCuts     int // learning-rate cuts before the fit stops at a plateau
	Data       string
	Device     torch.Device
	// Progress receives progress events (nil: none).
	Progress progress.Func
	// Speed switches the shared path's optimisations (speed hook: see runall.go).
	Speed Speed
}

// Defaults returns the converged CPU recipe (RecipeCPU): the stitching layer
// starts from the least-squares (direct) match on 2,000 training images, then
// Adam, batch 128, fits it on every training image but 2,500 held out for
// validation, scored there at the start and every 25 steps; the most
// accurate layer is kept, the rate (1e-2) is cut tenfold after 2 checks in
// which neither the accuracy nor the loss improved, and the fit stops at the
// next such plateau, or after 4 epochs. So the fit can never end below its
// start on the held-out images, and a fit that stopped at a plateau is the
// same with any larger cap (docs/method.md).
//
// The paper starts from PyTorch's default initialisation and trains for many
// epochs at LR 1e-3 (Paper). In a CPU-sized budget that does not converge:
// stitching the shipped seed-2 model into seed 1 at layer1.0 (2,000 test
// images) lost 10.2 points from the default init (2 epochs, LR 1e-2; worse at
// 1e-3), but 1.2 points from the least-squares init after one epoch.
func Defaults() Config {
	return Config{Cuts: "all", Epochs: 4, BatchSize: 128, LR: 1e-2, Seed: 0, FitSamples: 0,
		KernelSize: 1, Init: InitLeastSquares, FrozenBN: "eval", CKASamples: 500, LSSamples: 2000, Data: "fashion-mnist",
		ValSamples: 2500, CheckEvery: 25, Patience: 2, LRCuts: 1, Device: torch.CPU}
}

// Quick returns the one-epoch recipe of earlier versions, for smoke tests
// (RecipeQuick): the least-squares start, then one epoch of Adam (LR 1e-2,
// cosine decay) over 6,000 training images, no validation, the end kept. It
// is not converged: at some cuts it ends below its own start.
func Quick() Config {
	c := Defaults()
	c.Epochs, c.FitSamples, c.ValSamples, c.CheckEvery, c.Patience, c.LRCuts = 1, 6000, 0, 0, 0, 0
	return c
}

// Validate checks the settings; a bad one is an *invalid.Setting naming its
// field ("epochs", "batch size", "learning rate", "fit samples", "init",
// "frozen bn", "cka samples", "ls samples").
func (c Config) Validate() error {
	switch {
	case c.Epochs < 1:
		return invalid.Errorf("epochs", "must be at least 1, got %d", c.Epochs)
	case c.Epochs > loop.MaxEpochs:
		return loop.CheckEpochs(c.Epochs)
	case c.BatchSize < 2:
		return invalid.Errorf("batch size", "must be at least 2 (batch norm needs a batch), got %d", c.BatchSize)
	case !(c.LR > 0):
		return invalid.Errorf("learning rate", "must be positive, got %g", c.LR)
	case c.FitSamples < 0:
		return invalid.Errorf("fit samples", "must be ≥ 0, got %d", c.FitSamples)
	case c.Init != InitDefault && c.Init != InitLeastSquares:
		return invalid.Errorf("init", "must be %q or %q, got %q", InitDefault, InitLeastSquares, c.Init)
	case c.FrozenBN != "eval" && c.FrozenBN != "train":
		return invalid.Errorf("frozen bn", "must be eval or train, got %q", c.FrozenBN)
	case c.CKASamples < 0:
		return invalid.Errorf("cka samples", "must be ≥ 0, got %d", c.CKASamples)
	case c.LSSamples < 0:
		return invalid.Errorf("ls samples", "must be ≥ 0, got %d", c.LSSamples)
	case c.ValSamples < 0:
		return invalid.Errorf("val samples", "must be ≥ 0, got %d", c.ValSamples)
	case c.CheckEvery < 0:
		return invalid.Errorf("check every", "must be ≥ 0, got %d", c.CheckEvery)
	case c.Patience < 0:
		return invalid.Errorf("patience", "must be ≥ 0, got %d", c.Patience)
	case c.LRCuts < 0:
		return invalid.Errorf("lr cuts", "must be ≥ 0, got %d", c.LRCuts)
	}
	return nil
}

// RowStore keeps the rows a Runner makes and tells which are done:
// *results.Store (a results file) satisfies it.
type RowStore interface {
	// Done returns the kept row with the same key as row (results.Row.Key),
	// if there is one.
	Done(row results.Row) (results.Row, bool)
	// Append keeps one finished row.
	Append(row results.Row) error
	// Update replaces kept rows by the given ones with the same keys
	// (completing rows written before a value was known).
	Update(rows []results.Row) error
}

// Runner stitches Bottom into Top at each requested cut and records results.
type Runner struct {
	Bottom, Top *models.Model
	Train, Test *datasets.Dataset
	Config      Config
	// Store keeps the rows; cuts it holds already are skipped. Nil keeps
	// nothing: every cut is stitched, and the rows reach the caller only
	// through Run's result and OnRow.
	Store RowStore
	// OnRow is called after each cut finishes (e.g. to print it). The
	// shared path reads the bottom's accuracy at the last cut to do, so the
	// rows handed over before then have no BottomAcc (Store gets it later;
	// the rows Run returns have it), unless CompleteRows is set.
	OnRow func(results.Row)
	// CompleteRows makes the shared path read the bottom's accuracy at the
	// first cut to do (a longer pass through the bottom) so that every row
	// handed to OnRow is complete: for callers that keep the rows elsewhere
	// than Store.
	CompleteRows bool

	// BottomNorm and TopNorm, when set, are the halves' input
	// normalisations, over what their checkpoints record (Norms).
	BottomNorm, TopNorm *results.Norm
	// Control first stitches the top onto itself at every cut with the same
	// recipe (its rows are written too) and gives each row of the pair the
	// control's penalty (SelfPenalty) and the pair's excess over it.
	Control bool
	// OnControlRow, if set, is called after each control cut finishes.
	OnControlRow func(results.Row)

	topInput    func(*torch.Tensor) *torch.Tensor // set during Run when the halves' normalisations differ
	bottomCutOf map[string]string                 // the bottom's cut for each of the top's (prepare)
	selfPenalty map[string]float64                // the control's penalties by cut, during Run
}

// checkTop refuses a top that cannot score the data: no classifier, or
// another number of classes than the data set has.
func (r *Runner) checkTop() error {
	if !r.Top.Net.HasClassifier() {
		return fmt.Errorf("top model %s has no classifier (%s): fit a linear probe on it first (train.Probe)", r.Top.Path, r.Top.Description)
	}
	if r.Top.Meta.Classes != r.Test.Classes {
		return fmt.Errorf("top model %s has %d classes but the data set %s has %d: its accuracy and the stitched accuracy would compare labels it was not trained on (fit a linear probe on it for this data first)",
			r.Top.Path, r.Top.Meta.Classes, r.Config.Data, r.Test.Classes)
	}
	return nil
}

// prepare checks that the two models and the data fit together at the
// configured cuts, freezes both halves (eval mode, no gradients) and returns
// the cuts with each model's activation shapes by cut. Both of Run's paths
// share it.
func (r *Runner) prepare() (cuts []string, bottomShapes, topShapes map[string][]int64, err error) {
	cfg := r.Config
	if err := r.checkTop(); err != nil {
		return nil, nil, nil, err
	}
	cuts, bottomCuts, err := pairCuts(r.Bottom.Net, r.Top.Net, cfg.Cuts, cfg.BottomCuts)
	if err != nil {
		return nil, nil, nil, err
	}
	r.bottomCutOf = map[string]string{}
	for i, c := range cuts {
		r.bottomCutOf[c] = bottomCuts[i]
	}
	for _, g := range []struct {
		field string
		norm  *results.Norm
	}{{"bottom norm", r.BottomNorm}, {"top norm", r.TopNorm}} {
		if err := checkNorm(g.norm, r.Test.C); err != nil {
			return nil, nil, nil, invalid.Wrap(g.field, err)
		}
	}
	input := []int64{int64(r.Test.C), int64(r.Test.H), int64(r.Test.W)}
	if int64(r.Top.Meta.InChannels) != input[0] || int64(r.Bottom.Meta.InChannels) != input[0] {
		return nil, nil, nil, fmt.Errorf("data set %s has %d channels but the bottom takes %d and the top %d", cfg.Data, input[0], r.Bottom.Meta.InChannels, r.Top.Meta.InChannels)
	}
	if bottomShapes, err = shapesByName(r.Bottom, input); err != nil {
		return nil, nil, nil, err
	}
	if topShapes, err = shapesByName(r.Top, input); err != nil {
		return nil, nil, nil, err
	}
	for _, cut := range cuts { // a stitching layer that cannot be built is refused before any work
		if err := CheckLayer(bottomShapes[r.bottomCut(cut)], topShapes[cut], cfg.KernelSize); err != nil {
			return nil, nil, nil, fmt.Errorf("cut %s: %w", cut, err)
		}
	}
	for _, m := range []nn.Module{r.Bottom.Net, r.Top.Net} {
		nn.Eval(m)
		if err := nn.Freeze(m); err != nil {
			return nil, nil, nil, err
		}
	}
	return cuts, bottomShapes, topShapes, nil
}

// Run fits and scores a stitching layer at every cut, skipping cuts the store
// already holds, and returns the rows in cut order: with Control, after the
// top stitched onto itself (whose rows the store holds too). It shares the
// frozen halves' work between cuts (runAll; Speed) unless Speed.Plain is set
// or the frozen halves use batch statistics, which take the plain path, one
// cut at a time (runOneByOne). ctx is checked before each cut is started:
// once it is done, Run returns the rows finished so far and ctx's error (a
// cut in progress finishes first).
func (r *Runner) Run(ctx context.Context) ([]results.Row, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if r.Control && r.selfPenalty == nil && r.Bottom != r.Top {
		self, err := r.runControl(ctx)
		if err != nil {
			return nil, fmt.Errorf("self-stitch control: %w", err)
		}
		r.selfPenalty = self
		defer func() { r.selfPenalty = nil }()
	}
	if !r.Config.Speed.Plain {
		return r.runAll(ctx)
	}
	return r.runOneByOne(ctx)
}

// runControl stitches the top onto itself at the run's cuts with the same
// recipe and returns the penalties by cut.
func (r *Runner) runControl(ctx context.Context) (map[string]float64, error) {
	c := *r
	c.Bottom, c.BottomNorm, c.Control, c.OnRow, c.OnControlRow = r.Top, r.TopNorm, false, r.OnControlRow, nil
	rows, err := c.Run(ctx)
	if err != nil {
		return nil, err
	}
	self := map[string]float64{}
	for _, row := range rows {
		self[row.Cut] = row.Penalty
	}
	return self, nil
}

// finishRow fills in what the row knows once it is scored: the
// normalisations, the control's penalty and the warnings.
func (r *Runner) finishRow(row *results.Row) {
	bn, tn := r.Norms()
	row.BottomNorm, row.TopNorm = &bn, &tn
	if p, ok := r.selfPenalty[row.Cut]; ok {
		ex := row.Penalty - p
		row.SelfPenalty, row.ExcessPenalty = &p, &ex
	}
	row.Warnings = r.warnings(*row)
}

// Warning thresholds (results.Warn*).
const (
	// NearChance: a top within this factor of chance accuracy.
	NearChance = 1.5
	// BelowRecorded: points a top may score below its recorded test
	// accuracy before the row says so.
	BelowRecorded = 5.0
	// SelfGainLimit: points the top may gain stitched onto itself.
	SelfGainLimit = 1.0
)

// warnings returns what may make row's numbers mean less than they seem.
func (r *Runner) warnings(row results.Row) []string {
	var w []string
	if classes := r.Test.Classes; classes > 0 && row.TopAcc < NearChance*100/float64(classes) {
		w = append(w, results.WarnTopNearChance)
	}
	if rec := r.Top.Meta.TestAccuracy; rec != nil && row.TopAcc < *rec-BelowRecorded {
		w = append(w, results.WarnTopBelowRecorded)
	}
	if row.SelfPenalty != nil && *row.SelfPenalty < -SelfGainLimit {
		w = append(w, results.WarnSelfGain)
	}
	if row.BottomNorm != nil && row.BottomNorm.Source == NormGuessed {
		w = append(w, results.WarnBottomNormGuessed)
	}
	if row.TopNorm != nil && row.TopNorm.Source == NormGuessed {
		w = append(w, results.WarnTopNormGuessed)
	}
	return w
}

// runOneByOne is Run's plain path: one cut at a time, nothing shared.
func (r *Runner) runOneByOne(ctx context.Context) ([]results.Row, error) {
	cfg := r.Config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cuts, bottomShapes, topShapes, err := r.prepare()
	if err != nil {
		return nil, err
	}
	fitSet, valSet, err := r.selectData()
	if err != nil {
		return nil, err
	}
	bottomNorm, topNorm := r.norms()
	renorm, err := renormalise(bottomNorm, topNorm, cfg.Device)
	if err != nil {
		return nil, err
	}
	if renorm != nil {
		defer renorm.free()
		r.topInput = renorm.apply
	}
	defer func() { r.topInput = nil }()
	l, err := r.plainLoaders(fitSet, valSet, bottomNorm, topNorm)
	if err != nil {
		return nil, err
	}
	lsN := 0
	if cfg.Init == InitLeastSquares {
		lsN = l.lsFit.Dataset().N
	}
	rowFor, err := r.rowMaker(fitSet.N, lsN)
	if err != nil {
		return nil, err
	}
	var topAcc float64
	var bottomAcc *float64
	haveAcc := false
	ownAccs := func() error { // once, before the first cut to do
		if haveAcc {
			return nil
		}
		var err error
		topAcc, bottomAcc, err = r.ownAccuracies(l.testTop, l.testBottom)
		haveAcc = err == nil
		return err
	}
	return r.eachCut(ctx, cuts, rowFor, ownAccs, func(i int, cut string, row *results.Row, _ []results.Row) error {
		row.TopAcc, row.BottomAcc = topAcc, bottomAcc
		if err := r.stitchCut(row, cut, bottomShapes[r.bottomCut(cut)], topShapes[cut], l.fit, l.lsFit, l.val, l.testBottom, fmt.Sprintf("[%d/%d]", i+1, len(cuts))); err != nil {
			return fmt.Errorf("cut %s: %w", cut, err)
		}
		if err := r.ckaRow(row, cut, l.testBottom); err != nil {
			return fmt.Errorf("cut %s: cka: %w", cut, err)
		}
		return nil
	})
}

// plainLoaders are the plain path's loaders: the fitting images (fit), those
// the least-squares start is solved on (lsFit, un-augmented), the held-out
// validation images (val; nil: no validation) and the test images as each
// half is normalised.
type plainLoaders struct {
	fit, lsFit, val     *data.Loader
	testBottom, testTop *data.Loader
}

// plainLoaders makes the plain path's loaders of the fitting images fitSet,
// the validation images valSet (nil: none) and the test images.
func (r *Runner) plainLoaders(fitSet, valSet *datasets.Dataset, bottomNorm, topNorm [2][]float64) (l plainLoaders, err error) {
	cfg := r.Config
	if l.testBottom, err = r.loader(r.Test, bottomNorm, false); err != nil {
		return l, err
	}
	if l.testTop, err = r.loader(r.Test, topNorm, false); err != nil {
		return l, err
	}
	if l.fit, err = r.fitLoader(fitSet, bottomNorm); err != nil {
		return l, err
	}
	if valSet != nil {
		if l.val, err = r.loader(valSet, bottomNorm, false); err != nil {
			return l, err
		}
	}
	l.lsFit = l.fit
	if cfg.Init == InitLeastSquares && cfg.FitAugment {
		// The least-squares start sees the fitting images as they are.
		if l.lsFit, err = r.loader(fitSet, bottomNorm, false); err != nil {
			return l, err
		}
	}
	if cfg.Init == InitLeastSquares && cfg.LSSamples > 0 && cfg.LSSamples < fitSet.N {
		lsSet, err := fitSet.Subset(cfg.LSSamples, cfg.Seed)
		if err != nil {
			return l, invalid.Wrap("ls samples", err)
		}
		if l.lsFit, err = r.loader(lsSet, bottomNorm, false); err != nil {
			return l, err
		}
	}
	return l, nil
}

// ownAccuracies scores the top on its test images, and the bottom on its
// own when its classes are the data's (nil otherwise: its own accuracy
// means nothing then).
func (r *Runner) ownAccuracies(testTop, testBottom *data.Loader) (top float64, bottom *float64, err error) {
	report := r.Config.Progress
	if top, err = evaluate.Accuracy(r.Top.Net.Forward, testTop, report, "top model accuracy"); err != nil {
		return 0, nil, fmt.Errorf("top model accuracy: %w", err)
	}
	if r.Bottom.Net.HasClassifier() && r.Bottom.Meta.Classes == r.Test.Classes {
		a, err := evaluate.Accuracy(r.Bottom.Net.Forward, testBottom, report, "bottom model accuracy")
		if err != nil {
			return 0, nil, fmt.Errorf("bottom model accuracy: %w", err)
		}
		bottom = &a
	}
	return top, bottom, nil
}

// rowMaker returns newRow for this run's fitN fitting and lsN least-squares
// images: rows are keyed by the checkpoints' contents (their digests).
func (r *Runner) rowMaker(fitN, lsN int) (func(cut string) results.Row, error) {
	bottomSum, topSum, err := results.Digests(r.Bottom.Path, r.Top.Path)
	if err != nil {
		return nil, err
	}
	return func(cut string) results.Row { return r.newRow(cut, fitN, lsN, bottomSum, topSum) }, nil
}

// todo returns the cuts whose rows the store does not hold.
func (r *Runner) todo(cuts []string, rowFor func(string) results.Row) []string {
	var todo []string
	for _, cut := range cuts {
		if _, ok := r.done(rowFor(cut)); !ok {
			todo = append(todo, cut)
		}
	}
	return todo
}

// eachCut makes the rows of cuts in order, as both of Run's paths do. A cut
// the store holds gives its stored row. For any other, once ctx is done
// eachCut returns the rows so far and ctx's error; else it runs before
// (nil: nothing), then stitch, timed, which gets the cut's row (keyed, the
// run's settings filled in) and the rows so far (which it may complete),
// and then finishes the row, keeps it and hands it to OnRow.
func (r *Runner) eachCut(ctx context.Context, cuts []string, rowFor func(string) results.Row, before func() error,
	stitch func(i int, cut string, row *results.Row, rows []results.Row) error) ([]results.Row, error) {
	var rows []results.Row
	for i, cut := range cuts {
		row := rowFor(cut)
		if done, ok := r.done(row); ok {
			rows = append(rows, done)
			r.Config.Progress.Notef("cut %s: already in results, skipped", cut)
			continue
		}
		if err := ctx.Err(); err != nil {
			return rows, err
		}
		if before != nil {
			if err := before(); err != nil {
				return rows, err
			}
		}
		start := time.Now()
		if err := stitch(i, cut, &row, rows); err != nil {
			return rows, err
		}
		row.Seconds = time.Since(start).Seconds()
		row.Time = time.Now().UTC().Format(time.RFC3339)
		r.finishRow(&row)
		if err := r.keep(row); err != nil {
			return rows, fmt.Errorf("writing results: %w", err)
		}
		rows = append(rows, row)
		if r.OnRow != nil {
			r.OnRow(row)
		}
	}
	return rows, nil
}

// done returns the stored row with row's key, if the Store holds one.
func (r *Runner) done(row results.Row) (results.Row, bool) {
	if r.Store == nil {
		return results.Row{}, false
	}
	return r.Store.Done(row)
}

// keep appends row to the Store, if there is one.
func (r *Runner) keep(row results.Row) error {
	if r.Store == nil {
		return nil
	}
	return r.Store.Append(row)
}

// update replaces rows in the Store, if there is one.
func (r *Runner) update(rows []results.Row) error {
	if r.Store == nil {
		return nil
	}
	return r.Store.Update(rows)
}

// bottomCut returns the bottom's cut paired with the top's cut.
func (r *Runner) bottomCut(cut string) string {
	if bc, ok := r.bottomCutOf[cut]; ok {
		return bc
	}
	return cut
}

// newRow returns the row of cut with the run's settings filled in: fitN
// fitting images, lsN least-squares images, the checkpoints' digests.
func (r *Runner) newRow(cut string, fitN, lsN int, bottomSum, topSum string) results.Row {
	cfg := r.Config
	row := results.Row{Bottom: r.Bottom.Name, Top: r.Top.Name, Cut: cut, CutIndex: cutIndex(r.Top, cut),
		Init: cfg.Init, Epochs: cfg.Epochs, Seed: cfg.Seed, LR: cfg.LR, BatchSize: cfg.BatchSize,
		FitSamples: fitN, FitAugment: cfg.FitAugment, LSSamples: lsN, TestSamples: r.Test.N, CKASamples: min(cfg.CKASamples, r.Test.N),
		KernelSize: cfg.KernelSize, FrozenBN: cfg.FrozenBN, Data: cfg.Data,
		Device: cfg.Device.String(), BottomPath: r.Bottom.Path, TopPath: r.Top.Path, BottomSHA256: bottomSum, TopSHA256: topSum}
	if bc := r.bottomCut(cut); bc != cut {
		row.BottomCut = bc
	}
	if cfg.ValSamples > 0 {
		row.ValSamples, row.CheckEvery, row.Patience, row.LRCuts = cfg.ValSamples, cfg.CheckEvery, max(1, cfg.Patience), cfg.LRCuts
	}
	return row
}

// fitConfig is the fit's recipe (without its validation function): with
// validation, the learning rate scaled to the kernel (KernelLR).
func (r *Runner) fitConfig() FitConfig {
	cfg := r.Config
	fc := FitConfig{Epochs: cfg.Epochs, LR: cfg.LR, CheckEvery: cfg.CheckEvery, Patience: cfg.Patience, LRCuts: cfg.LRCuts}
	if cfg.ValSamples > 0 {
		// The validated recipes scale the rate to the kernel; the unvalidated
		// ones keep the rate their rows were keyed by.
		fc.LR = KernelLR(cfg.LR, cfg.KernelSize)
	}
	return fc
}

// setFit records what the fit did in row.
func setFit(row *results.Row, o FitOutcome) {
	row.FitSteps = o.Steps
	if o.Validated {
		start, acc, best := o.StartValAcc, o.ValAcc, o.BestStep
		row.StartValAcc, row.ValAcc, row.BestStep, row.Stop = &start, &acc, &best, o.Stop
	}
}

// stitchCut builds, initialises, fits and scores the stitching layer at one cut.
// With batch statistics it puts the frozen halves' buffers back afterwards; a
// failed restore is returned with any other error.
func (r *Runner) stitchCut(row *results.Row, cut string, in, out []int64, fit, lsFit, val, test *data.Loader, tag string) (err error) {
	cfg := r.Config
	if err := torch.ManualSeed(uint64(cfg.Seed)); err != nil {
		return err
	}
	layer, err := NewLayer(in, out, cfg.KernelSize)
	if err != nil {
		return err
	}
	defer nn.Free(layer)
	if err := nn.ToDevice(layer, cfg.Device); err != nil {
		return err
	}
	m := &Model{Bottom: r.Bottom.Net, Top: r.Top.Net, Cut: cut, BottomCut: r.bottomCut(cut), Layer: layer, BatchStats: cfg.FrozenBN == "train", TopInput: r.topInput}
	var restore func() error
	if m.BatchStats {
		// Batch statistics move the frozen halves' running averages; put them back
		// after this cut so every cut starts from the same models.
		if restore, err = snapshotBuffers(r.Bottom.Net, r.Top.Net); err != nil {
			return err
		}
		defer func() {
			if rerr := restore(); rerr != nil {
				err = errors.Join(err, fmt.Errorf("restoring the frozen halves' batch-norm statistics: %w", rerr))
			}
		}()
	}
	if cfg.Init == InitLeastSquares {
		// The least-squares start sees the halves as the fit will (batch
		// statistics with frozen bn "train"); the buffers are restored after the cut.
		m.SetFitting(true)
		if err := LeastSquaresInit(m, lsFit, cfg.Progress, tag+" "+cut+" least squares"); err != nil {
			return err
		}
		m.SetFitting(false)
		acc, err := evaluate.Accuracy(m.Forward, test, cfg.Progress, tag+" "+cut+" direct match")
		if err != nil {
			return err
		}
		row.DirectAcc = &acc
	}
	fc := r.fitConfig()
	if val != nil {
		fc.Validate = func() (float64, float64, error) { return evaluate.AccuracyAndLoss(m.Forward, val) }
	}
	outcome, err := Fit(m, fit, fc, cfg.Progress, tag+" "+cut+" fit")
	if err != nil {
		return err
	}
	setFit(row, outcome)
	m.SetFitting(false)
	if row.StitchedAcc, err = evaluate.Accuracy(m.Forward, test, cfg.Progress, tag+" "+cut+" test"); err != nil {
		return err
	}
	row.Penalty = row.TopAcc - row.StitchedAcc
	return nil
}

// ckaRow fills row's CKA fields at cut. It runs after the cut's fit, once the
// frozen halves' buffers are restored; with batch statistics (frozen bn
// "train") it compares activations under batch statistics, as the fit saw
// them, and puts the buffers back again afterwards.
func (r *Runner) ckaRow(row *results.Row, cut string, test *data.Loader) (err error) {
	if r.Config.CKASamples == 0 {
		return nil
	}
	if r.Config.FrozenBN == "train" {
		restore, err := snapshotBuffers(r.Bottom.Net, r.Top.Net)
		if err != nil {
			return err
		}
		nn.SetTraining(r.Bottom.Net, true)
		nn.SetTraining(r.Top.Net, true)
		defer func() {
			nn.Eval(r.Bottom.Net)
			nn.Eval(r.Top.Net)
			if rerr := restore(); rerr != nil {
				err = errors.Join(err, fmt.Errorf("restoring the frozen halves' batch-norm statistics: %w", rerr))
			}
		}()
	}
	b, u, err := r.cka(cut, test)
	if err != nil {
		return err
	}
	row.CKA, row.CKAUnbiased = &b, u
	return nil
}

// cka compares the bottom's and the top's own activations at cut on the first
// CKASamples test images.
func (r *Runner) cka(cut string, test *data.Loader) (float64, *float64, error) {
	var xs, ys []*torch.Tensor
	defer func() { torch.FreeAll(xs...); torch.FreeAll(ys...) }()
	n := 0
	err := torch.NoGrad(func() error {
		for b, err := range test.Batches(0) {
			if err != nil {
				return err
			}
			x := b.X
			size, err := x.Size(0)
			if err != nil {
				b.Close()
				return err
			}
			if take := int64(r.Config.CKASamples - n); take < size {
				x, size = x.Narrow(0, 0, take), take
			}
			bx := b.Scope.Keep(r.Bottom.Net.ForwardTo(x, r.bottomCut(cut)).Flatten(1, -1))
			tx := x
			if r.topInput != nil {
				tx = r.topInput(x)
			}
			ty := b.Scope.Keep(r.Top.Net.ForwardTo(tx, cut).Flatten(1, -1))
			n += int(size)
			b.Close()
			xs, ys = append(xs, bx), append(ys, ty)
			if err := torch.FirstError(bx, ty); err != nil || n >= r.Config.CKASamples {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	if len(xs) == 0 {
		return 0, nil, fmt.Errorf("cka: no test samples")
	}
	x, y := torch.Cat(xs, 0), torch.Cat(ys, 0)
	defer torch.FreeAll(x, y)
	return CKAs(x, y)
}

func (r *Runner) loader(ds *datasets.Dataset, norm [2][]float64, shuffle bool) (*data.Loader, error) {
	return data.NewLoader(ds, data.Config{BatchSize: r.Config.BatchSize, Shuffle: shuffle, Seed: r.Config.Seed,
		DropLast: shuffle && ds.N > r.Config.BatchSize, Device: r.Config.Device, Mean: norm[0], Std: norm[1]})
}

// normOf returns the input normalisation a model was trained with, or the data set's.
func normOf(m *models.Model, ds *datasets.Dataset) [2][]float64 {
	if len(m.Meta.Mean) == ds.C && len(m.Meta.Std) == ds.C {
		return [2][]float64{m.Meta.Mean, m.Meta.Std}
	}
	return [2][]float64{ds.Mean, ds.Std}
}

func shapesByName(m *models.Model, input []int64) (map[string][]int64, error) {
	cs, err := m.Net.CutShapes(input)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", m.Path, err)
	}
	out := map[string][]int64{}
	for _, c := range cs {
		out[c.Name] = c.Shape
	}
	return out, nil
}

func cutIndex(m *models.Model, cut string) int {
	for i, c := range m.Net.CutPoints() {
		if c == cut {
			return i
		}
	}
	return -1
}

// snapshotBuffers copies the buffers of the given modules and returns a
// function that writes the copies back.
func snapshotBuffers(ms ...nn.Module) (func() error, error) {
	type saved struct{ dst, copy *torch.Tensor }
	var all []saved
	for _, m := range ms {
		for _, b := range nn.NamedBuffers(m) {
			c := b.Tensor.Clone()
			if err := c.Err(); err != nil {
				return nil, err
			}
			all = append(all, saved{b.Tensor, c})
		}
	}
	return func() error {
		return torch.NoGrad(func() error {
			var err error
			for _, s := range all {
				if e := s.dst.CopyFrom(s.copy); e != nil && err == nil {
					err = e
				}
				s.copy.Free()
			}
			return err
		})
	}, nil
}

// renorm maps images normalised one way to the same images normalised another:
// x·scale + shift per channel.
type renorm struct{ scale, shift *torch.Tensor }

// renormalise returns the map from inputs normalised by from (mean, std) to
// inputs normalised by to, or nil when the two are the same.
func renormalise(from, to [2][]float64, dev torch.Device) (*renorm, error) {
	same := len(from[0]) == len(to[0])
	for i := range from[0] {
		same = same && from[0][i] == to[0][i] && from[1][i] == to[1][i]
	}
	if same {
		return nil, nil
	}
	c := len(from[0])
	scale, shift := make([]float32, c), make([]float32, c)
	for i := range c {
		// pixel p = x·σf + μf;  x' = (p − μt)/σt
		scale[i] = float32(from[1][i] / to[1][i])
		shift[i] = float32((from[0][i] - to[0][i]) / to[1][i])
	}
	s := torch.FromSlice(scale, 1, int64(c), 1, 1)
	sh := torch.FromSlice(shift, 1, int64(c), 1, 1)
	r := &renorm{scale: s.ToDevice(dev), shift: sh.ToDevice(dev)}
	torch.FreeAll(s, sh)
	if err := torch.FirstError(r.scale, r.shift); err != nil {
		r.free()
		return nil, err
	}
	return r, nil
}

func (r *renorm) apply(x *torch.Tensor) *torch.Tensor { return x.Mul(r.scale).Add(r.shift) }

func (r *renorm) free() { torch.FreeAll(r.scale, r.shift) }
